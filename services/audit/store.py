"""The audit store: an append-only, hash-chained table of safety events (SQLite or PostgreSQL).

    store = open_store("sqlite:///runs/audit.db")
    store.append(event)            # idempotent by event id: a redelivery adds nothing
    store.verify().ok              # recompute the whole chain
    store.query(AuditFilter(severity="critical"))

One write transaction reads the chain head and inserts the new row while holding the
database's write lock (SQLite BEGIN IMMEDIATE; PostgreSQL a self-exclusive table lock), so
writers in several processes append one after another and the chain never forks. The
hash chain itself is defined in services/audit/chain.py.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from services.audit.backends import (
    TABLE,
    AuditStoreError,
    AuditUrlError,
    Backend,
    open_backend,
)
from services.audit.chain import GENESIS, AuditRow, VerifyResult, canonical_json, row_hash, verify_rows
from services.messages import SafetyEvent

__all__ = ["AuditFilter", "AuditStore", "AuditStoreError", "AuditUrlError", "Outcome",
           "open_store"]

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
    """The audit trail in one database; safe to share between threads of one process."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.RLock()

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
                    digest = row_hash(prev, fields, event_json)
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
        return outcomes

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

    def verify(self) -> VerifyResult:
        """Recompute the whole chain: OK, or the first bad row (seq, event id, why).

        Raises AuditStoreError when the database fails.
        """
        return verify_rows(self.iter_rows())

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self.backend.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str, *, create: bool = True, busy_timeout_s: float = 30.0) -> AuditStore:
    """Open the audit trail an URL names (see services/audit/backends.open_backend).

    With `create` the schema is created when missing; without it, a database that holds no
    audit trail raises AuditStoreError (and a missing SQLite file FileNotFoundError), so the
    read-only commands never create or change anything.
    """
    backend = open_backend(url, create=create, busy_timeout_s=busy_timeout_s)
    try:
        if create:
            backend.ensure_schema()
        elif not backend.has_table():
            raise AuditStoreError(f"{backend.url} holds no audit trail (no {TABLE} table)")
    except backend.errors as exc:
        backend.close()
        raise AuditStoreError(f"audit database {backend.url}: {type(exc).__name__}: {exc}",
                              transient=isinstance(exc, backend.transient)) from exc
    except BaseException:
        backend.close()
        raise
    return AuditStore(backend)
