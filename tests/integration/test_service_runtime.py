"""The service runtime against the embedded broker: DLQ (a too-large dead letter included),
keeps serving, survives a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.messages import VEHICLE_STATE, SafetyEvent, VehicleState
from services.messages.examples import vehicle_state
from services.runtime.deadletter import record_size
from services.runtime.delivery import Record
from services.runtime.service import ServiceRuntime
from services.settings import Settings
from tests.echo_service import ECHO_OUT, build_echo
from tests.kafka_helpers import collect, header, produce

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def state(run_id: str, i: int) -> bytes:
    return vehicle_state().model_copy(update={"run_id": run_id, "stamp_ns": i}).encode()


@pytest.fixture
async def echo(kafka_bootstrap: str, unique: str) -> AsyncIterator[str]:
    # a short event window, so the aggregated dead-letter event comes while the test waits
    runtime = build_echo(Settings(group_prefix=f"t{unique}", dead_letter_window_s=1.0),
                         kafka_bootstrap)
    await runtime.start()
    try:
        yield unique
    finally:
        await runtime.stop()


async def test_malformed_message_goes_to_dlq_and_service_keeps_serving(
        kafka_bootstrap: str, echo: str) -> None:
    run = echo
    key = f"ego-{run}".encode()
    bad = b'{"vehicle_id": "ego", "speed_mps": "fast"}'
    await produce(kafka_bootstrap, "vehicle.state", [
        (key, state(run, 1), []),
        (key, bad, [("origin", b"test")]),
        (key, b"\x00not json at all", []),
        (key, state(run, 2), []),
    ])

    dlq = await collect(kafka_bootstrap, "vehicle.state.dlq", lambda r: r.key == key, 2)
    echoed = await collect(kafka_bootstrap, ECHO_OUT.name, lambda r: r.key == key, 2)
    # one event for both: same source, same error class, same window
    events = await collect(kafka_bootstrap, "safety.events",
                           lambda r: b'"dead_letter"' in r.value and key in r.value, 1)

    assert [r.value for r in dlq] == [bad, b"\x00not json at all"]
    first = dlq[0]
    assert header(first, "dlq-source-topic") == "vehicle.state"
    assert header(first, "dlq-source-offset") is not None
    assert int(header(first, "dlq-source-partition") or -1) >= 0
    assert header(first, "dlq-error-class") == "MessageError"
    assert "speed_mps" in (header(first, "dlq-error-message") or "")
    assert header(first, "origin") == "test"  # original headers are kept
    # the service kept serving: both valid messages came out, in order
    assert [VehicleState.decode(r.value).stamp_ns for r in echoed] == [1, 2]
    event = SafetyEvent.decode(events[0].value)
    assert event.references.topic == "vehicle.state"
    assert event.references.offset == int(header(first, "dlq-source-offset") or -1)
    assert event.details["count"] == 2
    assert event.details["last"]["offset"] == int(header(dlq[1], "dlq-source-offset") or -1)


async def test_a_binary_header_reaches_handlers_byte_for_byte(kafka_bootstrap: str,
                                                              unique: str) -> None:
    """Header values are bytes: one that is not UTF-8 (a signature, say) is no reason to fail."""
    key = f"bin-{unique}".encode()
    signature = b"\x8a\x01\xfe"
    await produce(kafka_bootstrap, "vehicle.state", [
        (key, state(unique, 1), [("sig-mac", signature)]),
        (key, state(unique, 2), [("origin", b"test")]),
    ])
    runtime = ServiceRuntime("binary", Settings(group_prefix=f"b{unique}"), kafka_bootstrap)
    one: list[Record] = []
    many: list[Record] = []

    @runtime.consume(VEHICLE_STATE)
    async def on_one(record: Record) -> None:
        if record.key == key:
            one.append(record)

    @runtime.consume_batch(VEHICLE_STATE, max_records=8, max_wait_ms=20, group_id=f"b{unique}.batch")
    async def on_many(records: list[Record]) -> None:
        many.extend(r for r in records if r.key == key)

    await runtime.start()
    try:
        for _ in range(300):
            if len(one) >= 2 and len(many) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        await runtime.stop()
    for got in (one, many):
        assert [VehicleState.decode(r.value).stamp_ns for r in got] == [1, 2]
        assert ("sig-mac", signature) in got[0].headers  # the exact bytes, not a replacement
        assert ("origin", b"test") in got[1].headers
    dlq = await collect(kafka_bootstrap, "vehicle.state.dlq", lambda r: r.key == key, 1,
                        timeout_s=2)
    assert dlq == []


async def test_healthz_names_the_partitions_the_replica_holds(kafka_bootstrap: str,
                                                              unique: str) -> None:
    runtime = build_echo(Settings(group_prefix=f"h{unique}"), kafka_bootstrap)
    await runtime.start()
    try:
        assert await runtime.wait_assigned(60)
        url = f"http://127.0.0.1:{runtime.ops.port}/healthz"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    finally:
        await runtime.stop()
    health = json.loads(body)
    assert health["status"] == "ok"
    # The only member of its group holds every partition of its one input topic.
    held = health["partitions"]
    assert list(held) == ["vehicle.state"]
    assert held["vehicle.state"] == list(range(len(held["vehicle.state"])))
    assert held["vehicle.state"]


async def _wait_for_outputs(bootstrap: str, key: bytes, n: int, timeout_s: float) -> set[int]:
    got = await collect(bootstrap, ECHO_OUT.name, lambda r: r.key == key, n, timeout_s=timeout_s)
    return {json.loads(r.value)["stamp_ns"] for r in got}


def _spawn(bootstrap: str, group_prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.echo_service", "--bootstrap", bootstrap,
                             "--group-prefix", group_prefix, "--delay-s", "0.02"], cwd=ROOT)


async def test_killed_consumer_restarts_without_losing_committed_work(
        kafka_bootstrap: str, unique: str) -> None:
    key = f"kill-{unique}".encode()
    n = 150
    await produce(kafka_bootstrap, "vehicle.state", [(key, state(unique, i), []) for i in range(n)])
    group = f"k{unique}"
    proc = _spawn(kafka_bootstrap, group)
    try:
        # let it get part-way, then kill it without any chance to commit or clean up
        for _ in range(200):
            done = await _wait_for_outputs(kafka_bootstrap, key, n, timeout_s=0.3)
            if len(done) >= 20:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        before = await _wait_for_outputs(kafka_bootstrap, key, n, timeout_s=1)
        assert 0 < len(before) < n, "the consumer should have been killed mid-stream"
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _spawn(kafka_bootstrap, group)
    try:
        after: set[int] = set()
        for _ in range(60):
            after = await _wait_for_outputs(kafka_bootstrap, key, n, timeout_s=1)
            if len(after) == n:
                break
            await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert after == set(range(n))  # every input has its output: nothing lost
    assert before <= after


async def test_a_record_whose_dead_letter_is_too_large_is_truncated_and_passed(
        own_kafka_bootstrap: str, unique: str) -> None:
    """Poison is not an outage: the DLQ copy of a record just under the service's message
    limit is over it (the error headers are added), the producer refuses it, and the service
    must still serve what follows, with the poison record's offset committed.

    On a broker of its own: it reads four topics from their starts, and on the session's
    broker that is behind every earlier test's records (the embedded broker slows as its log
    grows)."""
    kafka_bootstrap = own_kafka_bootstrap
    limit = 1 << 20
    key = f"poison-{unique}".encode()
    # 64 bytes under the limit as it is; its dead letter (error headers added) is over it
    room = limit - 64 - record_size(key, b"", {"origin": "test"})
    poison = (bytes(range(256)) * (room // 256 + 1))[:room]
    assert record_size(key, poison, {"origin": "test"}) <= limit - 60
    settings = Settings(group_prefix=f"p{unique}", max_message_bytes=limit,
                        dead_letter_window_s=1.0)
    runtime = build_echo(settings, kafka_bootstrap)
    await runtime.start()
    try:
        assert await runtime.wait_assigned(60)
        await produce(kafka_bootstrap, "vehicle.state", [
            (key, state(unique, 1), []), (key, poison, [("origin", b"test")]),
            (key, state(unique, 2), [])])
        echoed = await collect(kafka_bootstrap, ECHO_OUT.name, lambda r: r.key == key, 2,
                               timeout_s=60)
        # Read from the topics' starts (few records here); not the default 20 s on a loaded
        # machine.
        dlq = await collect(kafka_bootstrap, "vehicle.state.dlq", lambda r: r.key == key, 1,
                            timeout_s=60)
        events = await collect(kafka_bootstrap, "safety.events",
                               lambda r: b'"dead_letter"' in r.value and key in r.value, 1,
                               timeout_s=60)
        offset = int(header(dlq[0], "dlq-source-offset") or -1)
        committed = await committed_offset(kafka_bootstrap, runtime.topic_group(VEHICLE_STATE),
                                           "vehicle.state",
                                           int(header(dlq[0], "dlq-source-partition") or -1))
    finally:
        await runtime.stop()
    # the records after the poison one were served, in order
    assert [VehicleState.decode(r.value).stamp_ns for r in echoed] == [1, 2]
    [copy] = dlq
    assert header(copy, "dlq-truncated") == "true"
    assert header(copy, "dlq-original-bytes") == str(len(poison))
    assert (header(copy, "dlq-produce-error") or "").startswith("MessageSizeTooLargeError")
    assert header(copy, "dlq-error-class") == "MessageError"
    assert header(copy, "origin") == "test"
    assert poison.startswith(copy.value)
    assert len(copy.value) < len(poison)
    event = SafetyEvent.decode(events[0].value)
    assert (event.details["count"], event.details["truncated"]) == (1, 1)
    assert committed is not None
    assert committed > offset  # its offset moved on


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int | None:
    """The group's committed offset of one partition, asked without joining the group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        result: int | None = await consumer.committed(TopicPartition(topic, partition))
        return result
    finally:
        await consumer.stop()
