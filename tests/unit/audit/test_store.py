"""The audit store on real databases: chain, idempotency, tamper detection, concurrency."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import uuid
from typing import Any

import pytest

from services.audit.chain import GENESIS, AuditRow, row_hash
from services.audit.store import (
    AuditFilter,
    AuditStore,
    AuditStoreError,
    AuditUrlError,
    Outcome,
    open_store,
)
from services.messages import SafetyEvent, Severity
from services.runtime.events import safety_event
from tests.postgres_server import PostgresServer
from tests.unit.audit.conftest import KEY, drop_guards, raw_sql

T0 = 1_780_000_000_000_000_000  # [ns] a fixed moment in 2026


def event(i: int, *, type_: str = "stale_input", severity: Severity = Severity.WARNING,
          vehicle: str = "ego-1", source: str = "monitor") -> SafetyEvent:
    return safety_event(source=source, type_=type_, severity=severity, vehicle_id=vehicle,
                        details={"i": i, "note": "café ✓"}, stamp_ns=T0 + i * 1_000_000)


def auditor_hash(row: AuditRow) -> str:
    """The row MAC as docs/audit.md defines it, written independently of services.audit."""
    doc = {"seq": row.seq, "event_id": row.event_id, "stamp_ns": row.stamp_ns,
           "vehicle_id": row.vehicle_id, "source": row.source, "type": row.type,
           "severity": row.severity, "event": json.loads(row.event_json)}
    text = row.prev_hash + json.dumps(doc, sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False)
    return hmac.new(KEY, b"roadstream-audit-row-v2\n" + text.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def fill(store: AuditStore, n: int) -> list[SafetyEvent]:
    events = [event(i) for i in range(n)]
    assert [store.append(e) for e in events] == [Outcome.INSERTED] * n
    return events


def test_appends_form_a_chain_from_genesis(store: AuditStore) -> None:
    events = fill(store, 5)
    rows = store.query()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert [r.event_id for r in rows] == [str(e.event_id) for e in events]
    assert rows[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.row_hash
    for row, ev in zip(rows, events, strict=True):
        assert row.row_hash == auditor_hash(row)
        assert SafetyEvent.model_validate(row.event()) == ev
        assert (row.stamp_ns, row.vehicle_id, row.source, row.type, row.severity) == (
            ev.stamp_ns, ev.vehicle_id, ev.source, ev.type, ev.severity.value)
    result = store.verify()
    assert result.ok, result.describe()
    assert (result.rows, result.head_hash) == (5, rows[-1].row_hash)
    assert store.head() == (5, rows[-1].row_hash)
    assert result.describe() == f"chain OK: 5 rows (head {rows[-1].row_hash})"


def test_empty_trail_verifies(store: AuditStore) -> None:
    result = store.verify()
    assert result.ok
    assert (result.rows, result.head_hash) == (0, GENESIS)


def test_redelivery_adds_no_row(store: AuditStore) -> None:
    events = fill(store, 4)
    head = store.head()
    assert [store.append(e) for e in events] == [Outcome.DUPLICATE] * 4
    new = event(99)
    again = store.append_many([(events[1], None), (new, None), (new, None)])
    assert again == [Outcome.DUPLICATE, Outcome.INSERTED, Outcome.DUPLICATE]
    assert store.count() == 5
    assert store.head()[0] == head[0] + 1
    assert store.verify().ok


def test_same_id_with_other_content_keeps_the_first(store: AuditStore) -> None:
    [first] = fill(store, 1)
    forged = first.model_copy(update={"severity": Severity.INFO})
    assert store.append(forged) is Outcome.CONFLICT
    stored = store.get(str(first.event_id))
    assert stored is not None
    assert stored.severity == "warning"
    assert store.count() == 1


def test_received_document_is_kept_whole(store: AuditStore) -> None:
    ev = event(1)
    document: dict[str, Any] = {**json.loads(ev.encode()), "added_later": {"x": [1, 2.5]}}
    assert store.append(ev, document) is Outcome.INSERTED
    row = store.get(str(ev.event_id))
    assert row is not None
    assert row.event()["added_later"] == {"x": [1, 2.5]}
    assert store.verify().ok


def test_document_json_cannot_carry_is_refused(store: AuditStore) -> None:
    ev = event(1)
    with pytest.raises(ValueError, match="JSON compliant"):
        store.append(ev, {**json.loads(ev.encode()), "bad": float("nan")})
    with pytest.raises(ValueError, match="64-bit"):
        store.append(ev.model_copy(update={"stamp_ns": 1 << 63}))
    assert store.count() == 0


def test_database_refuses_update_and_delete(store: AuditStore, store_url: str) -> None:
    fill(store, 2)
    with pytest.raises(Exception, match="append-only"):
        raw_sql(store_url, "UPDATE audit_events SET severity = 'info' WHERE seq = 1")
    with pytest.raises(Exception, match="append-only"):
        raw_sql(store_url, "DELETE FROM audit_events WHERE seq = 2")
    assert store.verify().ok


@pytest.mark.parametrize("edit", [
    "severity = 'info'",
    "stamp_ns = stamp_ns + 1",
    "vehicle_id = 'someone-else'",
    "event_json = replace(event_json, 'stale_input', 'nothing_to_see')",
])
def test_edited_row_is_named(store: AuditStore, store_url: str, edit: str) -> None:
    events = fill(store, 6)
    raw_sql(store_url, *drop_guards(store_url), f"UPDATE audit_events SET {edit} WHERE seq = 3")
    result = store.verify()
    assert not result.ok
    assert (result.bad_seq, result.bad_event_id, result.problem) == (
        3, str(events[2].event_id), "hash mismatch")
    assert result.rows == 2
    assert f"seq 3 (event {events[2].event_id})" in result.describe()


def test_edit_with_a_recomputed_hash_breaks_the_next_link(store: AuditStore,
                                                          store_url: str) -> None:
    events = fill(store, 5)
    row = store.query(AuditFilter(), limit=3)[2]
    forged = row.event_json.replace('"warning"', '"info"')
    fields = {"seq": row.seq, "event_id": row.event_id, "stamp_ns": row.stamp_ns,
              "vehicle_id": row.vehicle_id, "source": row.source, "type": row.type,
              "severity": "info"}
    digest = row_hash(KEY, row.prev_hash, fields, forged)
    raw_sql(store_url, *drop_guards(store_url),
            f"UPDATE audit_events SET severity = 'info', event_json = '{forged}', "
            f"row_hash = '{digest}' WHERE seq = 3")
    result = store.verify()
    assert (result.bad_seq, result.bad_event_id, result.problem) == (
        4, str(events[3].event_id), "broken link")


@pytest.mark.parametrize(("deleted", "named"), [(3, 4), (1, 2)])
def test_deleted_row_is_detected(store: AuditStore, store_url: str, deleted: int,
                                 named: int) -> None:
    events = fill(store, 5)
    raw_sql(store_url, *drop_guards(store_url), f"DELETE FROM audit_events WHERE seq = {deleted}")
    result = store.verify()
    assert (result.bad_seq, result.bad_event_id, result.problem) == (
        named, str(events[named - 1].event_id), "gap")


def test_chain_continues_after_reopening(store_url: str) -> None:
    with open_store(store_url, key=KEY) as first:
        fill(first, 3)
        head = first.head()
    with open_store(store_url, key=KEY) as second:
        assert second.head() == head
        assert second.append(event(10)) is Outcome.INSERTED
        assert second.query(newest_first=True, limit=1)[0].prev_hash == head[1]
        assert second.verify().rows == 4


def test_concurrent_writers_append_one_chain(store_url: str) -> None:
    open_store(store_url, key=KEY).close()  # schema first, as the service does at start-up
    writers, per_writer = 4, 15
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            with open_store(store_url, key=KEY) as mine:
                for i in range(per_writer):
                    mine.append(event(w * 1000 + i, vehicle=f"ego-{w}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    with open_store(store_url, key=KEY) as check:
        result = check.verify()
        assert result.ok, result.describe()
        assert result.rows == writers * per_writer
        for w in range(writers):
            assert check.count(AuditFilter(vehicle_id=f"ego-{w}")) == per_writer


def test_query_filters(store: AuditStore) -> None:
    specs = [("stale_input", Severity.WARNING, "ego-1", "monitor"),
             ("collision_risk", Severity.CRITICAL, "ego-2", "planning"),
             ("dead_letter", Severity.WARNING, "ego-1", "perception"),
             ("command_rejected", Severity.CRITICAL, "ego-1", "vehicle-client"),
             ("stale_input", Severity.INFO, "ego-2", "monitor")]
    events = [event(i, type_=t, severity=s, vehicle=v, source=src)
              for i, (t, s, v, src) in enumerate(specs)]
    store.append_many([(e, None) for e in events])

    def ids(where: AuditFilter, **kw: Any) -> list[int]:
        return [r.seq for r in store.query(where, **kw)]

    assert ids(AuditFilter(severity="critical")) == [2, 4]
    assert ids(AuditFilter(type="stale_input")) == [1, 5]
    assert ids(AuditFilter(vehicle_id="ego-1", severity="warning")) == [1, 3]
    assert ids(AuditFilter(source="vehicle-client")) == [4]
    # since inclusive, until exclusive
    assert ids(AuditFilter(since_ns=T0 + 1_000_000, until_ns=T0 + 3_000_000)) == [2, 3]
    assert ids(AuditFilter(), limit=2) == [1, 2]
    assert ids(AuditFilter(), limit=2, newest_first=True) == [5, 4]
    assert store.count(AuditFilter(vehicle_id="ego-2")) == 2
    assert ids(AuditFilter(type="no_such_type")) == []


def test_read_only_open_creates_nothing(store_url: str) -> None:
    with pytest.raises((FileNotFoundError, AuditStoreError)):
        open_store(store_url, create=False)
    with open_store(store_url, key=KEY) as created:
        fill(created, 1)
    with open_store(store_url, create=False, key=KEY) as reader:
        assert reader.verify().rows == 1


def test_bad_urls_are_settings_errors() -> None:
    with pytest.raises(AuditUrlError, match="postgresql://"):
        open_store("mysql://user:pw@host/db")
    with pytest.raises(AuditUrlError, match="sqlite:///relative"):
        open_store("sqlite://relative.db")
    with pytest.raises(AuditStoreError, match=r"\*\*\*"):
        # the password never appears in the message
        open_store("postgresql://me:s3cret@127.0.0.1:1/db", busy_timeout_s=1)


def test_lost_postgres_connection_is_transient_and_reconnects(postgres: PostgresServer) -> None:
    url = postgres.create_database(f"audit_{uuid.uuid4().hex[:12]}")
    with open_store(url, key=KEY) as store:
        fill(store, 2)
        raw_sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        lost = event(50)
        with pytest.raises(AuditStoreError) as failure:
            store.append(lost)
        assert failure.value.transient  # the service redelivers instead of dead-lettering
        assert store.append(lost) is Outcome.INSERTED  # a fresh connection
        assert store.verify().rows == 3
