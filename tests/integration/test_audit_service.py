"""The audit service against the embedded broker: redeliveries, conflicts, SIGKILL mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.audit.service import build
from services.audit.settings import AuditSettings
from services.audit.store import AuditFilter, AuditStore, AuditStoreError, open_store
from services.audit.trail import open_trail
from services.messages import SafetyEvent, Severity
from services.runtime.events import safety_event
from services.settings import Settings
from tests.kafka_helpers import collect, header, produce

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def events(vehicle: str, n: int, *, type_: str = "stale_input") -> list[SafetyEvent]:
    return [safety_event(source="monitor", type_=type_, severity=Severity.WARNING,
                         vehicle_id=vehicle, details={"i": i}) for i in range(n)]


def messages(evs: list[SafetyEvent]) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    return [(e.vehicle_id.encode(), e.encode(), []) for e in evs]


def open_reader(url: str) -> AuditStore:
    """A read-only store with the key and anchors the service keeps beside a SQLite trail."""
    return open_trail(AuditSettings(url=url), create=False)


async def wait_for_rows(url: str, where: AuditFilter, want: int, timeout_s: float) -> int:
    """Poll the database (as a separate reader) until `want` rows match; return the count."""
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        try:
            with open_store(url, create=False) as reader:
                count = reader.count(where)
        except (FileNotFoundError, AuditStoreError):
            count = 0  # the service has not created the database yet
        if count >= want:
            return count
        await asyncio.sleep(0.1)
    return count


@pytest.fixture
async def audit_url(kafka_bootstrap: str, unique: str, tmp_path: Path) -> AsyncIterator[str]:
    """An in-process audit service writing to a fresh SQLite file."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    service = build(Settings(group_prefix=f"t{unique}"), kafka_bootstrap,
                    options=AuditSettings(url=url)).service
    await service.start()
    try:
        yield url
    finally:
        await service.stop()


async def test_each_event_is_stored_once_though_delivered_twice(
        kafka_bootstrap: str, audit_url: str, unique: str) -> None:
    vehicle = f"dup-{unique}"
    evs = events(vehicle, 10)
    last = events(vehicle, 1, type_="sentinel")
    # every event twice, then a sentinel: one key is one partition, so once the sentinel is
    # stored every earlier message of this vehicle has been handled
    await produce(kafka_bootstrap, "safety.events",
                  messages(evs) + messages(evs) + [(vehicle.encode(), b"{not an event", [])]
                  + messages(last))
    assert await wait_for_rows(audit_url, AuditFilter(type="sentinel", vehicle_id=vehicle), 1,
                               timeout_s=30) == 1
    # the malformed value went to the DLQ, and the frame's dead_letter event is audited too
    dead = await collect(kafka_bootstrap, "safety.events.dlq",
                         lambda r: r.key == vehicle.encode(), 1)
    assert [r.value for r in dead] == [b"{not an event"]
    letters = AuditFilter(type="dead_letter", vehicle_id=vehicle)
    assert await wait_for_rows(audit_url, letters, 1, timeout_s=30) == 1
    with open_reader(audit_url) as store:
        rows = store.query(AuditFilter(vehicle_id=vehicle))
        assert [r.event_id for r in rows if r.type != "dead_letter"] == \
            [str(e.event_id) for e in evs + last]
        [letter] = store.query(letters)
        assert letter.event()["references"]["offset"] == \
            int(header(dead[0], "dlq-source-offset") or -1)
        assert store.verify().ok


async def test_same_id_with_other_content_is_reported_not_stored(
        kafka_bootstrap: str, audit_url: str, unique: str) -> None:
    vehicle = f"conflict-{unique}"
    [original] = events(vehicle, 1)
    forged = original.model_copy(update={"severity": Severity.INFO})
    await produce(kafka_bootstrap, "safety.events", messages([original, forged]))
    # the audit raises its own event about the conflict, which it then audits too
    where = AuditFilter(type="audit_conflict", vehicle_id=vehicle)
    assert await wait_for_rows(audit_url, where, 1, timeout_s=30) == 1
    with open_reader(audit_url) as store:
        stored = store.get(str(original.event_id))
        assert stored is not None
        assert stored.severity == "warning"
        [report] = store.query(where)
        assert report.event()["details"]["event_id"] == str(original.event_id)
        assert store.count(AuditFilter(vehicle_id=vehicle)) == 2


async def test_unavailable_database_delays_the_event_but_never_drops_it(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    service = build(Settings(group_prefix=f"t{unique}"), kafka_bootstrap,
                    options=AuditSettings(url=url, busy_timeout_s=0.2, retry_backoff_s=0.2)
                    ).service
    vehicle = f"locked-{unique}"
    [ev] = events(vehicle, 1)
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    await service.start()
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: appends time out
        await produce(kafka_bootstrap, "safety.events", messages([ev]))
        failures = "roadstream_audit_store_failures_total"
        for _ in range(300):
            if (service.registry.get_sample_value(failures) or 0) >= 2:
                break
            await asyncio.sleep(0.1)
        assert (service.registry.get_sample_value(failures) or 0) >= 2  # tried, not committed
        blocker.execute("ROLLBACK")
        stored = AuditFilter(vehicle_id=vehicle, type=ev.type)
        assert await wait_for_rows(url, stored, 1, timeout_s=30) == 1
    finally:
        blocker.close()
        await service.stop()
    # it was redelivered, never dead-lettered
    assert await collect(kafka_bootstrap, "safety.events.dlq",
                         lambda r: r.key == vehicle.encode(), 1, timeout_s=2) == []


def _serve(bootstrap: str, group_prefix: str, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ROADSTREAM_BOOTSTRAP_SERVERS": bootstrap,
           "ROADSTREAM_GROUP_PREFIX": group_prefix, "ROADSTREAM_AUDIT_URL": url}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.cli.main", "serve", "audit"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_killed_service_restarts_without_losing_an_event(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    vehicle = f"kill-{unique}"
    n = 1500
    evs = events(vehicle, n)
    await produce(kafka_bootstrap, "safety.events", messages(evs))
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    where = AuditFilter(vehicle_id=vehicle)
    group, log = f"k{unique}", tmp_path / "serve.log"

    proc = _serve(kafka_bootstrap, group, url, log)
    try:
        before = await wait_for_rows(url, where, 50, timeout_s=60)
        proc.send_signal(signal.SIGKILL)  # no chance to commit offsets or close the database
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = await wait_for_rows(url, where, n, timeout_s=0.5)
    assert 0 < before < n, f"not killed mid-stream ({before} of {n} stored); log:\n" \
                           f"{log.read_text(errors='replace')[-3000:]}"

    proc = _serve(kafka_bootstrap, group, url, log)
    try:
        after = await wait_for_rows(url, where, n, timeout_s=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert after == n, log.read_text(errors="replace")[-3000:]
    with open_reader(url) as store:
        assert_exactly_once(store, where, evs)
        # the SIGTERM'd service anchored its head on the way out
        assert store.verify().anchored_rows == store.count(), log.read_text(errors="replace")


def assert_exactly_once(store: AuditStore, where: AuditFilter, evs: list[SafetyEvent]) -> None:
    rows = store.query(where)
    ids = [r.event_id for r in rows]
    assert len(ids) == len(set(ids)) == len(evs)
    assert set(ids) == {str(e.event_id) for e in evs}
    result = store.verify()
    assert result.ok, result.describe()
