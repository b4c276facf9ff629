"""Database back-ends of the audit store: SQLite (a file) and PostgreSQL (psycopg 3).

A back-end owns one connection and knows its dialect: how to open it, create the schema,
take the chain-head lock for a write transaction, and stream a large result. The store
(services/audit/store.py) writes the SQL once with `?` placeholders.

Schema v2 (keyed) has two tables: `audit_events`, the chain, and `audit_meta`, name/value
pairs written once when the trail is created (schema_version, trail_id, key_check). A
database with `audit_events` but no `audit_meta` is a schema v1 (unkeyed) trail.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from services.settings import SettingsError

TABLE = "audit_events"
META = "audit_meta"
#: Columns people filter on; each gets an index.
INDEXED = ("stamp_ns", "type", "severity", "vehicle_id", "source")
SCAN_BATCH = 2000


class AuditUrlError(SettingsError):
    """An audit URL that names no supported database, or a driver that is missing."""


class AuditKeyError(SettingsError):
    """The audit key is missing or unreadable, or it is not the key the trail was written with."""


class AuditStoreError(RuntimeError):
    """The audit database failed or does not hold an audit trail; the message says which.

    `transient` is True for failures that a later retry may not meet (the server is
    unreachable, the file is locked or the disk is full), False for a statement the database
    refuses whatever the moment (a value out of range).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def _table_ddl(int_type: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        seq        {int_type} PRIMARY KEY,
        event_id   TEXT NOT NULL UNIQUE,
        stamp_ns   {int_type} NOT NULL,
        vehicle_id TEXT NOT NULL,
        source     TEXT NOT NULL,
        type       TEXT NOT NULL,
        severity   TEXT NOT NULL,
        event_json TEXT NOT NULL,
        prev_hash  TEXT NOT NULL UNIQUE,
        row_hash   TEXT NOT NULL
    )"""
# prev_hash is UNIQUE: two rows can never hang off the same parent, so even a writer that
# bypassed the head lock could not fork the chain; it would fail its insert instead.


_META_DDL = "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
_META_INSERT = "INSERT INTO audit_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"


def _index_ddl() -> list[str]:
    return [f"CREATE INDEX IF NOT EXISTS {TABLE}_{c} ON {TABLE} ({c})" for c in INDEXED]


def redact(url: str) -> str:
    """The URL with any password replaced by `***` (safe to log or print)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Backend:
    """One connection to an audit database."""

    dialect = ""
    errors: tuple[type[BaseException], ...] = ()
    #: The subset of `errors` worth retrying (DB-API OperationalError and InterfaceError).
    transient: tuple[type[BaseException], ...] = ()

    def __init__(self, url: str) -> None:
        self.url = redact(url)

    def sql(self, text: str) -> str:
        """The statement in this driver's placeholder style (written with `?`)."""
        return text

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return the driver's cursor."""
        raise NotImplementedError

    def write_transaction(self) -> contextlib.AbstractContextManager[None]:
        """A transaction that holds the exclusive write lock on the chain head until it ends."""
        raise NotImplementedError

    def scan(self, text: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Stream the rows of a query without loading them all (one consistent snapshot)."""
        raise NotImplementedError

    def has_table(self, name: str = TABLE) -> bool:
        """True when the table (default: the audit table) exists."""
        raise NotImplementedError

    def ensure_schema(self, meta: Mapping[str, str]) -> None:
        """Create the tables, indexes and append-only triggers when missing, then store the
        `meta` pairs that are not stored yet (the first creator's values win)."""
        raise NotImplementedError

    def meta(self) -> dict[str, str]:
        """The audit_meta pairs; empty when there is no such table (schema v1, or no trail)."""
        if not self.has_table(META):
            return {}
        return {str(n): str(v) for n, v in self.execute("SELECT name, value FROM audit_meta")}

    def schema_version(self) -> int | None:
        """None: no audit trail here; 1: an unkeyed (v1) trail; else audit_meta's version.

        Raises AuditStoreError when audit_meta holds no readable version.
        """
        if not self.has_table():
            return None
        meta = self.meta()
        if not meta:
            return 1
        version = meta.get("schema_version", "")
        if not version.isdigit():
            raise AuditStoreError(f"audit database {self.url}: {META} holds no readable "
                                  f"schema_version ({version!r})")
        return int(version)

    def row_count(self) -> int:
        """Rows in the audit table."""
        return int(self.execute("SELECT count(*) FROM audit_events").fetchone()[0])

    def reconnect_if_broken(self) -> None:
        """Open a fresh connection when the server dropped the old one."""

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError


class SqliteBackend(Backend):
    """A SQLite file in WAL mode (readers never block the writer), fsync on every commit."""

    dialect = "sqlite"
    errors = (sqlite3.Error,)
    transient = (sqlite3.OperationalError, sqlite3.InterfaceError)

    def __init__(self, url: str, path: str, *, create: bool, busy_timeout_s: float) -> None:
        super().__init__(url)
        self.path = path
        if path != ":memory:":
            file = Path(path)
            if not create and not file.is_file():
                raise FileNotFoundError(f"no audit database at {path}")
            file.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
        # check_same_thread=False: the service writes from a worker thread; the store's lock
        # serialises every use of the connection.
        try:
            self.conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                                        check_same_thread=False)
            if create:
                self.conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the consumer offset is committed to Kafka.
            self.conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise AuditStoreError(f"audit database {path}: cannot open: {exc}",
                                  transient=True) from exc

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(text, tuple(params))

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock at BEGIN, before the head is read: two writers can
        # never both read the same head and append two children to it.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def scan(self, text: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        cursor = self.conn.execute(text, tuple(params))
        try:
            while batch := cursor.fetchmany(SCAN_BATCH):
                yield from batch
        finally:
            cursor.close()

    def has_table(self, name: str = TABLE) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)).fetchone()
        return row is not None

    def ensure_schema(self, meta: Mapping[str, str]) -> None:
        statements = [_table_ddl("INTEGER"), *_index_ddl(), _META_DDL]
        statements += [f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()}
                           BEFORE {op} ON {table}
                           BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
                       for table in (TABLE, META) for op in ("UPDATE", "DELETE")]
        with self.write_transaction():
            for statement in statements:
                self.conn.execute(statement)
            for pair in meta.items():
                self.conn.execute(_META_INSERT, pair)

    def close(self) -> None:
        self.conn.close()


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3; writers serialise on a table lock that readers ignore."""

    dialect = "postgresql"
    #: pg_advisory_xact_lock key that serialises schema creation by concurrent first starts.
    SCHEMA_LOCK = 0x726F6164_61756474  # "roadaudt"

    def __init__(self, url: str, *, connect_timeout_s: float) -> None:
        super().__init__(url)
        try:
            import psycopg
        except ImportError:
            raise AuditUrlError("a postgresql:// audit URL needs psycopg 3: "
                                "pip install 'psycopg[binary]'") from None
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self.transient = (psycopg.OperationalError, psycopg.InterfaceError)
        self._dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._timeout = max(1, round(connect_timeout_s))
        self.conn = self._connect()

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self._dsn, autocommit=True,
                                         connect_timeout=self._timeout)
        except self._psycopg.Error as exc:
            raise AuditStoreError(f"audit database {self.url}: cannot connect: {exc}",
                                  transient=True) from exc

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self.sql(text), tuple(params))

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            # SHARE ROW EXCLUSIVE conflicts with itself (one chain writer at a time) but not
            # with the ACCESS SHARE of plain SELECTs, so queries and verify keep running.
            self.conn.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
            yield

    def scan(self, text: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        # A named (server-side) cursor streams the rows; it lives inside a transaction.
        with self.conn.transaction(), self.conn.cursor(name="audit_scan") as cursor:
            cursor.itersize = SCAN_BATCH
            cursor.execute(self.sql(text), tuple(params))
            yield from cursor

    def has_table(self, name: str = TABLE) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])

    def ensure_schema(self, meta: Mapping[str, str]) -> None:
        # Only what is missing is created, so a service role that may INSERT and SELECT but
        # not own the tables (the DBA created them) starts fine.
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.SCHEMA_LOCK,))
            if not self.has_table():
                self.conn.execute(_table_ddl("BIGINT"))
                for statement in _index_ddl():
                    self.conn.execute(statement)
            if not self.has_table(META):
                self.conn.execute(_META_DDL)
            missing: dict[str, str] = {}
            for table in (TABLE, META):
                names = {r[0] for r in self.conn.execute(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", (table,))}
                wanted = {f"{table}_no_change": f"BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW",
                          f"{table}_no_truncate": f"BEFORE TRUNCATE ON {table} FOR EACH STATEMENT"}
                missing |= {n: w for n, w in wanted.items() if n not in names}
            if missing:
                # One function for both tables; TG_TABLE_NAME names the table refused.
                self.conn.execute(f"""CREATE OR REPLACE FUNCTION {TABLE}_append_only()
                    RETURNS trigger LANGUAGE plpgsql AS
                    $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$""")
            for name, when in missing.items():
                self.conn.execute(f"CREATE TRIGGER {name} {when} "
                                  f"EXECUTE FUNCTION {TABLE}_append_only()")
            for pair in meta.items():
                self.execute(_META_INSERT, pair)

    def reconnect_if_broken(self) -> None:
        if self.conn.closed or self.conn.broken:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = self._connect()

    def close(self) -> None:
        self.conn.close()


def sqlite_path(url: str) -> str | None:
    """The SQLite file an audit URL names, or None for a PostgreSQL URL.

    `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or a bare file path.
    AuditUrlError for a malformed SQLite URL or an unsupported scheme.
    """
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path.startswith("/"):
            raise AuditUrlError(f"audit URL {url!r}: write sqlite:///relative.db or "
                                "sqlite:////absolute.db")
        if not path[1:]:
            raise AuditUrlError(f"audit URL {url!r} names no file")
        return path[1:]
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return None
    if "://" in url or not url:
        raise AuditUrlError(f"audit URL {redact(url)!r}: use sqlite:///PATH, a file path, or "
                            "postgresql://USER:PASSWORD@HOST:PORT/DB")
    return url


def open_backend(url: str, *, create: bool, busy_timeout_s: float = 30.0) -> Backend:
    """Connect to the audit database an URL names.

    `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, a bare file path, or
    `postgresql://user:password@host:port/dbname` (also `postgres://`). With `create` False a
    missing SQLite file raises FileNotFoundError instead of being created. AuditUrlError for
    an unsupported scheme or a missing driver.
    """
    path = sqlite_path(url)
    if path is None:
        return PostgresBackend(url, connect_timeout_s=busy_timeout_s)
    return SqliteBackend(url, path, create=create, busy_timeout_s=busy_timeout_s)
