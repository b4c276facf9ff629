"""The audit store: an append-only, keyed-chain table of safety events (SQLite or PostgreSQL).

    store = open_store("sqlite:///runs/audit.db", key=key, anchors=AnchorLog(path))
    store.append(event)            # idempotent by event id: a redelivery adds nothing
    store.verify().ok              # recompute the whole chain, check it against the anchors
    store.query(AuditFilter(severity="critical"))

One write transaction reads the chain head and inserts the new row while holding the
database's write lock (SQLite BEGIN IMMEDIATE; PostgreSQL a self-exclusive table lock), so
writers in several processes append one after another and the chain never forks. After it
commits, the writer anchors the head when `anchor_every_rows` rows or `anchor_every_s`
seconds have passed, and again when it closes. The chain and the anchors are defined in
services/audit/chain.py; services/audit/trail.py opens a store from the settings.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from services.audit.anchor import AnchorLog
from services.audit.backends import (
    TABLE,
    AuditKeyError,
    AuditStoreError,
    AuditUrlError,
    Backend,
    open_backend,
)
from services.audit.chain import (
    GENESIS,
    SCHEMA_VERSION,
    AuditRow,
    VerifyResult,
    canonical_json,
    key_check,
    row_hash,
    verify_trail,
)
from services.messages import SafetyEvent

__all__ = ["AuditFilter", "AuditKeyError", "AuditStore", "AuditStoreError", "AuditUrlError",
           "Outcome", "UnkeyedTrailError", "open_store"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
#: Stamps are stored in signed 64-bit columns (SQLite INTEGER, PostgreSQL BIGINT).
MAX_STAMP_NS = 1 << 63
# Literal SQL (table and columns are fixed; every value is a bound parameter).
_SELECT = ("SELECT seq, event_id, stamp_ns, vehicle_id, source, type, severity, event_json, "
           "prev_hash, row_hash FROM audit_events")
_HEAD = "SELECT seq, row_hash FROM audit_events ORDER BY seq DESC LIMIT 1"
_BY_ID = "SELECT event_json FROM audit_events WHERE event_id = ?"
_INSERT = ("INSERT INTO audit_events (seq, event_id, stamp_ns, vehicle_id, source, type, "
           "severity, event_json, prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (event_id) DO NOTHING")
_COUNT = "SELECT count(*) FROM audit_events"


class UnkeyedTrailError(AuditStoreError):
    """A schema v1 trail (plain SHA-256, no key) opened to write: it cannot be continued."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"unkeyed chain (schema v1): {reason}")


class Outcome(StrEnum):
    """What an append did."""

    INSERTED = "inserted"
    DUPLICATE = "duplicate"  # same event id, same document: a redelivery
    CONFLICT = "conflict"  # same event id, different document: the first one is kept


@dataclass(frozen=True)
class AuditFilter:
    """Which rows a query or an export returns; None means any.

    since_ns is inclusive and until_ns exclusive (event stamps [ns since the Unix epoch]).
    """

    since_ns: int | None = None
    until_ns: int | None = None
    type: str | None = None
    severity: str | None = None
    vehicle_id: str | None = None
    source: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The WHERE clause (with `?` placeholders) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (("stamp_ns", ">=", self.since_ns),
                                  ("stamp_ns", "<", self.until_ns),
                                  ("type", "=", self.type), ("severity", "=", self.severity),
                                  ("vehicle_id", "=", self.vehicle_id),
                                  ("source", "=", self.source)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _db_errors(method: Callable[P, T]) -> Callable[P, T]:
    """Turn a driver's exception into AuditStoreError naming the database."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        assert isinstance(store, AuditStore)
        try:
            return method(*args, **kwargs)
        except store.backend.errors as exc:
            raise store.error(exc) from exc

    return wrapper


def event_document(event: SafetyEvent) -> dict[str, Any]:
    """The JSON document of an event as the model writes it (NaN/Infinity become null)."""
    doc: dict[str, Any] = json.loads(event.model_dump_json())
    return doc


class AuditStore:
    """The audit trail in one database; safe to share between threads of one process.

    `key` MACs the rows (needed to append and to verify, not to query); `anchors` is the
    anchor file verify checks, and a `writer` appends to. `meta` holds the trail's
    audit_meta pairs (empty for a schema v1 trail).
    """

    def __init__(self, backend: Backend, *, key: bytes | None = None,
                 anchors: AnchorLog | None = None, writer: bool = False) -> None:
        self.backend = backend
        self.key = key
        self.anchors = anchors
        self.writer = writer
        self.meta = backend.meta()
        self._lock = threading.RLock()

    @property
    def schema_version(self) -> int:
        """1 for an unkeyed trail (no audit_meta), else audit_meta's schema_version."""
        return int(self.meta.get("schema_version", "1"))

    @property
    def trail_id(self) -> str:
        """The id the trail got when it was created (in every anchor); empty for v1."""
        return self.meta.get("trail_id", "")

    @property
    def url(self) -> str:
        """The database URL with the password hidden."""
        return self.backend.url

    def error(self, exc: BaseException) -> AuditStoreError:
        """AuditStoreError for a driver exception, naming the database and whether to retry."""
        return AuditStoreError(f"audit database {self.url}: {type(exc).__name__}: {exc}",
                               transient=isinstance(exc, self.backend.transient))

    @_db_errors
    def append(self, event: SafetyEvent, document: Mapping[str, Any] | None = None) -> Outcome:
        """Append one event unless its id is stored already; see `append_many`."""
        [outcome] = self.append_many([(event, document)])
        return outcome

    @_db_errors
    def append_many(self, items: Iterable[tuple[SafetyEvent, Mapping[str, Any] | None]],
                    ) -> list[Outcome]:
        """Append events in one transaction, in order; return what happened to each.

        `document` is the event's JSON as received (kept whole, so fields a newer producer
        added are audited too); None stores the model's own JSON. Columns come from the
        validated model. The transaction commits before this returns: when it returns, the
        rows are durable. Raises AuditStoreError when the database fails (nothing written)
        and ValueError for a document JSON cannot carry exactly (NaN).
        """
        prepared = [(event, canonical_json(dict(document) if document is not None
                                           else event_document(event)))
                    for event, document in items]
        for event, _ in prepared:
            if event.stamp_ns >= MAX_STAMP_NS:
                raise ValueError(f"event {event.event_id}: stamp_ns {event.stamp_ns} does not "
                                 "fit a signed 64-bit column")
        key = self._key()
        outcomes: list[Outcome] = []
        with self._lock:
            self.backend.reconnect_if_broken()
            with self.backend.write_transaction():
                head = self.backend.execute(_HEAD).fetchone()
                seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
                for event, event_json in prepared:
                    event_id = str(event.event_id)
                    found = self.backend.execute(_BY_ID, (event_id,)).fetchone()
                    if found is not None:
                        outcomes.append(Outcome.DUPLICATE if found[0] == event_json
                                        else Outcome.CONFLICT)
                        continue
                    seq += 1
                    fields = {"seq": seq, "event_id": event_id, "stamp_ns": event.stamp_ns,
                              "vehicle_id": event.vehicle_id, "source": event.source,
                              "type": event.type, "severity": str(event.severity)}
                    digest = row_hash(key, prev, fields, event_json)
                    # The id check above already ran under the write lock; ON CONFLICT keeps
                    # the insert idempotent even so, and a row that was not written must not
                    # become the parent of the next one.
                    cursor = self.backend.execute(
                        _INSERT, (*fields.values(), event_json, prev, digest))
                    if cursor.rowcount != 1:
                        raise AuditStoreError(f"audit database {self.url}: event {event_id} "
                                              "appeared during the write; retrying",
                                              transient=True)
                    prev = digest
                    outcomes.append(Outcome.INSERTED)
            if self.writer and self.anchors is not None and self.anchors.due(seq):
                self.anchors.record(key, self.trail_id, seq, prev)  # committed: durable head
        return outcomes

    def _key(self) -> bytes:
        if self.key is None:
            raise AuditKeyError(f"{self.url}: the audit key is needed to append or verify")
        return self.key

    @_db_errors
    def anchor(self, *, force: bool = False) -> bool:
        """A writer's periodic anchor: write the head to the anchor file if one is due (with
        `force`: if the head moved since this writer's last anchor). True when written."""
        with self._lock:
            if not self.writer or self.anchors is None:
                return False
            seq, head = self.head()
            if self.anchors.due(seq, force=force):
                return self.anchors.record(self._key(), self.trail_id, seq, head)
        return False

    @_db_errors
    def count(self, where: AuditFilter | None = None) -> int:
        """Number of rows (matching the filter)."""
        clause, params = (where or AuditFilter()).where()
        with self._lock:
            row = self.backend.execute(_COUNT + clause, params).fetchone()
        return int(row[0])

    @_db_errors
    def head(self) -> tuple[int, str]:
        """(seq, row_hash) of the last row; (0, GENESIS) when the trail is empty."""
        with self._lock:
            row = self.backend.execute(_HEAD).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    @_db_errors
    def get(self, event_id: str) -> AuditRow | None:
        """The row of one event id, or None."""
        with self._lock:
            row = self.backend.execute(_SELECT + " WHERE event_id = ?", (event_id,)).fetchone()
        return AuditRow(*row) if row else None

    @_db_errors
    def query(self, where: AuditFilter | None = None, *, limit: int | None = None,
              newest_first: bool = False) -> list[AuditRow]:
        """Matching rows in seq order (or newest first), at most `limit` of them."""
        return list(self.iter_rows(where, limit=limit, newest_first=newest_first))

    def iter_rows(self, where: AuditFilter | None = None, *, limit: int | None = None,
                  newest_first: bool = False) -> Iterator[AuditRow]:
        """Stream matching rows in seq order (or newest first) without loading them all.

        Raises AuditStoreError when the database fails.
        """
        clause, params = (where or AuditFilter()).where()
        text = f"{_SELECT}{clause} ORDER BY seq {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            text += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            try:
                for row in self.backend.scan(text, params):
                    yield AuditRow(*row)
            except self.backend.errors as exc:
                raise self.error(exc) from exc

    def unkeyed_reason(self) -> str:
        """Why a schema v1 trail cannot be verified (the text after `unkeyed chain (schema v1): `)."""
        return (f"{self.url} holds {self.count()} rows chained with plain SHA-256, which anyone "
                "who can write the database can recompute, so a rewritten history cannot be "
                "told from the original; keep it as an archive (docs/audit.md re-checks its "
                "links) and let the audit service start a keyed trail in a new database")

    def verify(self) -> VerifyResult:
        """Recompute the whole chain under the key and check it against the anchors.

        OK, or the first problem (the first bad row, a wrong key, a cut-off tail, a bad or
        missing anchor). Without `anchors`, only the rows are checked. Raises AuditKeyError
        without a key, AuditStoreError when the database fails, OSError when the anchor file
        cannot be read.
        """
        if self.schema_version == 1:
            return VerifyResult(rows=0, head_hash=GENESIS, problem="unkeyed chain (schema v1)",
                                reason=self.unkeyed_reason())
        key = self._key()
        # Anchors first, rows second: rows only grow, so a writer busy meanwhile can make
        # the rows outrun the anchors read, never fall behind them.
        reading = self.anchors.read(key, self.trail_id) if self.anchors is not None else None
        return verify_trail(self.iter_rows(), key, self.meta, reading)

    def close(self) -> None:
        """Anchor the head (a writer whose head moved), then close the connection (idempotent)."""
        with self._lock:
            if self.writer and self.anchors is not None and self.key is not None:
                try:
                    self.anchor(force=True)
                except AuditStoreError as exc:
                    log.error("audit: no closing anchor: %s", exc)
                self.writer = False  # once: a second close writes nothing
            self.backend.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str, *, key: bytes | None = None, anchors: AnchorLog | None = None,
               create: bool = True, busy_timeout_s: float = 30.0) -> AuditStore:
    """Open the audit trail an URL names (see services/audit/backends.open_backend).

    With `create` the store is a writer: the schema is created when missing (recording the
    key's check value and a new trail id), and `key` must be the key the trail was written
    with (AuditKeyError otherwise); a schema v1 trail with rows raises UnkeyedTrailError.
    Without it, a database that holds no audit trail raises AuditStoreError (and a missing
    SQLite file FileNotFoundError), so the read-only commands never create or change anything.
    """
    backend = open_backend(url, create=create, busy_timeout_s=busy_timeout_s)
    try:
        version = backend.schema_version()
        if version is None and not create:
            raise AuditStoreError(f"{backend.url} holds no audit trail (no {TABLE} table)")
        if version is not None and version > SCHEMA_VERSION:
            raise AuditStoreError(f"{backend.url}: audit schema v{version} is newer than this "
                                  f"roadstream knows (v{SCHEMA_VERSION})")
        if create:
            if key is None:
                raise AuditKeyError(f"{backend.url}: writing the audit trail needs the audit key")
            if version == 1 and backend.row_count() > 0:
                raise UnkeyedTrailError(AuditStore(backend).unkeyed_reason())
            check = key_check(key)
            backend.ensure_schema({"schema_version": str(SCHEMA_VERSION),
                                   "trail_id": uuid.uuid4().hex, "key_check": check})
            stored = backend.meta().get("key_check")
            if stored != check:
                raise AuditKeyError(f"{backend.url}: the configured audit key (check {check}) "
                                    f"is not the one this trail was written with (check "
                                    f"{stored}); appending would break the chain")
        return AuditStore(backend, key=key, anchors=anchors, writer=create)
    except backend.errors as exc:
        backend.close()
        raise AuditStoreError(f"audit database {backend.url}: {type(exc).__name__}: {exc}",
                              transient=isinstance(exc, backend.transient)) from exc
    except BaseException:
        backend.close()
        raise
