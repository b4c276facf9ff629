"""Open the audit trail the settings name: its database, its key and its anchor file.

Where the audit key lives (docs/audit.md, "Key and anchors"):

- `ROADSTREAM_AUDIT_KEY_FILE` (or `ROADSTREAM_AUDIT_KEY`) when set: a secret store's mount,
  readable by the audit service and the auditors, not by the database's other users;
- otherwise, for a SQLite trail, `<database>.key` beside the database (audit.db → audit.key).
  The writer generates it — 32 random bytes as hex, mode 0600 — when it creates the trail,
  and reads it afterwards, so every `roadstream run` gets its own key in its run folder with
  no set-up. It keeps the database alone from being rewritten (edited with sqlite3, or
  copied without the key); whoever holds the whole folder holds the key too.

There is no built-in key: a PostgreSQL trail without a configured key does not start, and a
reader never generates one. The anchor file follows the same rule (`<database>.anchors`
beside a SQLite database, `ROADSTREAM_AUDIT_ANCHOR_FILE` otherwise).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from services.audit.anchor import AnchorLog
from services.audit.backends import AuditKeyError, AuditStoreError, redact, sqlite_path
from services.audit.settings import MIN_KEY_CHARS, AuditSettings
from services.audit.store import AuditStore, UnkeyedTrailError, open_store
from services.settings import SettingsError


def _beside_database(options: AuditSettings, suffix: str) -> Path | None:
    path = sqlite_path(options.url)
    if path is None or path == ":memory:":
        return None
    return Path(path).with_suffix(suffix)


def key_path(options: AuditSettings) -> Path | None:
    """The key file: `key_file`, else `<database>.key` beside a SQLite database, else None."""
    return options.key_file or _beside_database(options, ".key")


def anchor_log(options: AuditSettings) -> AnchorLog:
    """The anchor file: `anchor_file`, else `<database>.anchors` beside a SQLite database.

    Raises SettingsError when there is neither (a PostgreSQL trail names its anchor file).
    """
    path = options.anchor_file or _beside_database(options, ".anchors")
    if path is None:
        raise SettingsError(f"no anchor file for the audit trail at {redact(options.url)}: set "
                            "ROADSTREAM_AUDIT_ANCHOR_FILE to a file the database's users "
                            "cannot write")
    return AnchorLog(path, every_rows=options.anchor_every_rows, every_s=options.anchor_every_s)


def load_key(options: AuditSettings, *, create: bool) -> bytes:
    """The audit key (its text as UTF-8 bytes).

    With `create`, a missing default key file beside a SQLite database that does not exist
    yet is generated (0600). Raises AuditKeyError naming the file and what is wrong.
    """
    if options.key is not None:
        return options.key.get_secret_value().encode("utf-8")
    path = key_path(options)
    if path is None:
        raise AuditKeyError(f"no audit key for {redact(options.url)}: set "
                            "ROADSTREAM_AUDIT_KEY_FILE (or ROADSTREAM_AUDIT_KEY); there is no "
                            "built-in key")
    database = sqlite_path(options.url)
    if create and options.key_file is None and database is not None and not path.exists() \
            and not (Path(database).is_file() and Path(database).stat().st_size > 0):
        _generate(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        where = "" if options.key_file else (
            " (the key this database was written with is kept there; set "
            "ROADSTREAM_AUDIT_KEY_FILE if it was moved)")
        raise AuditKeyError(f"no audit key: {path} does not exist{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditKeyError(f"audit key file {path}: cannot read it: {exc}") from None
    key = lines[0].strip() if lines else ""
    if len(key) < MIN_KEY_CHARS:
        raise AuditKeyError(f"audit key file {path}: the key has {len(key)} characters, at "
                            f"least {MIN_KEY_CHARS} are needed (e.g. `openssl rand -hex 32`)")
    return key.encode("utf-8")


def _generate(path: Path) -> None:
    """Write a new random key to `path` (0600) unless another writer got there first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() creates the name only if it is free, with the whole key already in it: a
        # concurrent writer reads either no file or the complete one.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()


def open_trail(options: AuditSettings, *, create: bool) -> AuditStore:
    """The audit store with its key and anchor file, as the settings name them.

    `create`: the writer (the audit service): the schema is created when missing, the key
    generated as the module docstring says, and anchors are written. Without: a reader for
    `verify`: nothing is created or written; a schema v1 (unkeyed) trail opens without a key.
    Raises SettingsError (AuditKeyError, AuditUrlError) for the configuration,
    UnkeyedTrailError for a v1 trail opened to write, AuditStoreError for the database.
    """
    if not create:
        store = open_store(options.url, create=False, busy_timeout_s=options.busy_timeout_s)
        try:
            if store.schema_version != 1:
                store.key = load_key(options, create=False)
                store.anchors = anchor_log(options)
        except BaseException:
            store.close()
            raise
        return store
    try:
        key = load_key(options, create=True)
    except AuditKeyError:
        _raise_if_unkeyed(options)  # an old trail has no key: say that instead
        raise
    return open_store(options.url, key=key, anchors=anchor_log(options), create=True,
                      busy_timeout_s=options.busy_timeout_s)


def _raise_if_unkeyed(options: AuditSettings) -> None:
    try:
        store = open_store(options.url, create=False, busy_timeout_s=options.busy_timeout_s)
    except (FileNotFoundError, AuditStoreError):
        return
    with store:
        if store.schema_version == 1 and store.count() > 0:
            raise UnkeyedTrailError(store.unkeyed_reason())
