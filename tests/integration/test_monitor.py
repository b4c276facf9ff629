"""The safety monitor against the embedded broker: silence and a slow producer become events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from services.runtime.service import ServiceRuntime
from services.messages import ControlMode, SafetyEvent
from services.messages.examples import perception_objects, vehicle_control, vehicle_state
from services.monitor.monitor import Monitor
from services.monitor.service import build_monitor
from services.monitor.settings import MonitorSettings
from services.settings import Settings
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.integration
PERIOD_S = 0.05  # vehicle.state: 20 Hz in the registry
STALE_AFTER_S = 10 * PERIOD_S
SLACK_S = 0.4  # one 100 ms tick plus scheduling on a busy machine


@pytest.fixture
async def monitor(kafka_bootstrap: str, unique: str) -> AsyncIterator[tuple[ServiceRuntime, Monitor]]:
    options = MonitorSettings(start_from="latest", lag_interval_s=1.0)
    frame, mon = build_monitor(Settings(group_prefix=f"m{unique}"), kafka_bootstrap, options)
    await frame.start()
    try:
        yield frame, mon
    finally:
        await frame.stop()


def state(vehicle: str) -> bytes:
    return vehicle_state().model_copy(update={"vehicle_id": vehicle, "stamp_ns": time.time_ns(),
                                              "run_id": "monitor-test"}).encode()


def seen(frame: ServiceRuntime, topic: str) -> bool:
    return (frame.registry.get_sample_value("roadstream_monitor_messages_total",
                                            {"topic": topic}) or 0) > 0


async def events_for(bootstrap: str, vehicle: str, wanted: set[str], count: int,
                     timeout_s: float = 10.0) -> list[SafetyEvent]:
    records = await collect(bootstrap, "safety.events",
                            lambda r: r.key == vehicle.encode()
                            and json.loads(r.value)["type"] in wanted, count, timeout_s=timeout_s)
    return [SafetyEvent.decode(r.value) for r in records]


async def test_stale_and_low_frequency_events_with_timing(
        kafka_bootstrap: str, unique: str, monitor: tuple[ServiceRuntime, Monitor]) -> None:
    _, mon = monitor
    vehicle = f"ego-{unique}"
    key = vehicle.encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False,
                                acks="all", linger_ms=0)
    await producer.start()
    marks: dict[str, int] = {}
    try:

        async def paced(rate_hz: float, seconds: float) -> None:
            start = time.monotonic()
            for k in range(round(rate_hz * seconds)):
                # absolute pacing: a late send does not slow the average rate
                await asyncio.sleep(max(0.0, start + k / rate_hz - time.monotonic()))
                await producer.send("vehicle.state", state(vehicle), key=key)
                marks["last_sent_ns"] = time.time_ns()

        # warm up at the registry rate until the monitor has picked the key up
        for _ in range(200):
            await paced(20.0, 0.25)
            if mon.liveness.is_alive("vehicle.state", vehicle):
                break
        assert mon.liveness.is_alive("vehicle.state", vehicle), "the monitor never saw the key"
        await paced(20.0, 2.5)
        marks["slow_from_ns"] = time.time_ns()
        await paced(16.0, 4.5)  # 80 % of the expected rate
        await producer.flush()
        marks["stopped_ns"] = marks["last_sent_ns"]
        await asyncio.sleep(STALE_AFTER_S + 1.0)
    finally:
        await producer.stop()

    found = await events_for(kafka_bootstrap, vehicle, {"topic_alive", "topic_stale",
                                                        "frequency_low", "frequency_ok"}, 3)
    kinds = [(e.type, e.details.get("topic")) for e in found]
    assert kinds == [("topic_alive", "vehicle.state"), ("frequency_low", "vehicle.state"),
                     ("topic_stale", "vehicle.state")], kinds
    alive, low, stale = found
    assert alive.details["first_seen"] is True
    assert all(e.source == "monitor" for e in found)
    # the low-rate event comes after the producer slowed down, not during the full-rate phase
    assert marks["slow_from_ns"] < low.stamp_ns < marks["stopped_ns"]
    assert low.details["rate_hz"] < 18.0
    assert low.severity.value == "warning"
    # stale: not before 10 expected periods of silence, and within them plus one tick of slack
    silent_s = (stale.stamp_ns - marks["stopped_ns"]) / 1e9
    assert STALE_AFTER_S - 0.05 <= silent_s <= STALE_AFTER_S + SLACK_S, silent_s
    assert stale.severity.value == "critical"
    assert stale.references.topic == "vehicle.state"
    assert stale.references.offset is not None


async def test_content_events_and_no_dead_letters_from_the_monitor(
        kafka_bootstrap: str, unique: str, monitor: tuple[ServiceRuntime, Monitor]) -> None:
    frame, _ = monitor
    vehicle = f"veh-{unique}"
    now = time.time_ns()
    objects = perception_objects()
    close_car = objects.objects[0].model_copy(update={"ttc_s": 0.9})
    risky = objects.model_copy(update={"vehicle_id": vehicle, "objects": [close_car],
                                       "stamp_ns": now, "source": objects.source.model_copy(
                                           update={"stamp_ns": now - 30_000_000})})
    estop = vehicle_control().model_copy(update={"vehicle_id": vehicle, "stamp_ns": now,
                                                 "mode": ControlMode.EMERGENCY_STOP})
    # Produce until the monitor is assigned (it starts at the latest offsets).
    for attempt in range(60):
        await produce(kafka_bootstrap, "perception.objects", [
            (f"{vehicle}/front".encode(), risky.encode(), []),
            (f"{vehicle}/front".encode(), b"\x00 not json", [])])
        await produce(kafka_bootstrap, "vehicle.control", [
            (vehicle.encode(), estop.model_copy(update={"seq": attempt}).encode(), [])])
        await produce(kafka_bootstrap, "vehicle.state.dlq", [
            (vehicle.encode(), b"{bad", [("dlq-source-topic", b"vehicle.state"),
                                          ("dlq-error-class", b"MessageError")])])
        await asyncio.sleep(0.25)
        if all(seen(frame, t) for t in ("perception.objects", "vehicle.control", "vehicle.state.dlq")):
            break
    found = await events_for(kafka_bootstrap, vehicle, {"collision_risk", "emergency_stop",
                                                        "dlq_message"}, 3)
    by_type = {e.type: e for e in found}
    assert set(by_type) == {"collision_risk", "emergency_stop", "dlq_message"}
    assert by_type["collision_risk"].severity.value == "critical"
    assert by_type["collision_risk"].references.frame_seq == objects.source.seq
    assert by_type["emergency_stop"].references.command_seq is not None
    assert by_type["dlq_message"].details["source_topic"] == "vehicle.state"
    # the garbage value was counted, not dead-lettered by the monitor
    assert (frame.registry.get_sample_value("roadstream_monitor_unparsed_messages_total",
                                            {"topic": "perception.objects"}) or 0) >= 1
    assert frame.registry.get_sample_value(
        "roadstream_dead_letters_total",
        {"service": "monitor", "topic": "perception.objects", "error": "MessageError"}) is None
    # the lag probe works on the embedded broker (explicit-partition OffsetFetch)
    for _ in range(50):
        if frame.registry.get_sample_value("roadstream_monitor_lag_probe_up") == 1.0:
            break
        await asyncio.sleep(0.1)
    assert frame.registry.get_sample_value("roadstream_monitor_lag_probe_up") == 1.0
