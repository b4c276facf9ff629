"""The safety monitor against the embedded broker: silence, a slow producer, a stopped topic
and a future stamp become events; simulation time slower than the wall clock does not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from services.messages import ControlClock, ControlMode, FrameRef, SafetyEvent, Severity
from services.messages.examples import perception_objects, vehicle_control, vehicle_state
from services.monitor.monitor import Monitor
from services.monitor.service import build_monitor
from services.monitor.settings import MonitorSettings
from services.runtime.events import RUN_FINISHED, safety_event
from services.runtime.service import ServiceRuntime
from services.settings import Settings
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.integration
TICK_NS = 50_000_000  # vehicle.state and vehicle.control: 20 Hz in the registry
RUN_SILENCE_S = 1.0  # the wall-clock rule: a live run silent on every topic this long is stale
SLACK_S = 0.4  # one 100 ms tick plus scheduling on a busy machine


@contextlib.asynccontextmanager
async def running(bootstrap: str, unique: str,
                  options: MonitorSettings) -> AsyncIterator[tuple[ServiceRuntime, Monitor]]:
    frame, mon = build_monitor(Settings(group_prefix=f"m{unique}"), bootstrap, options)
    await frame.start()
    try:
        yield frame, mon
    finally:
        await frame.stop()


@pytest.fixture
async def monitor(kafka_bootstrap: str, unique: str) -> AsyncIterator[tuple[ServiceRuntime, Monitor]]:
    options = MonitorSettings(start_from="latest", lag_interval_s=1.0, run_silence_s=RUN_SILENCE_S,
                              frequency_hysteresis=0.05)
    async with running(kafka_bootstrap, unique, options) as started:
        yield started


def state(vehicle: str, run_id: str, stamp_ns: int | None = None) -> bytes:
    return vehicle_state().model_copy(update={
        "vehicle_id": vehicle, "stamp_ns": stamp_ns or time.time_ns(), "run_id": run_id}).encode()


def control(vehicle: str, run_id: str, seq: int, stamp_ns: int) -> bytes:
    """A command of the lockstep gate: stamped on its inputs' clock."""
    return vehicle_control().model_copy(update={
        "vehicle_id": vehicle, "stamp_ns": stamp_ns, "seq": seq,
        "valid_until_ns": stamp_ns + 4 * TICK_NS, "source": FrameRef(seq=seq, stamp_ns=stamp_ns),
        "clock": ControlClock.SOURCE, "run_id": run_id}).encode()


def received(frame: ServiceRuntime, topic: str) -> float:
    return frame.registry.get_sample_value("roadstream_monitor_messages_total",
                                           {"topic": topic}) or 0


def seen(frame: ServiceRuntime, topic: str) -> bool:
    return received(frame, topic) > 0


async def events_for(bootstrap: str, vehicle: str, wanted: set[str], count: int,
                     timeout_s: float = 10.0) -> list[SafetyEvent]:
    records = await collect(bootstrap, "safety.events",
                            lambda r: r.key == vehicle.encode()
                            and json.loads(r.value)["type"] in wanted, count, timeout_s=timeout_s)
    return [SafetyEvent.decode(r.value) for r in records]


async def test_stale_and_low_frequency_events_with_timing(
        kafka_bootstrap: str, unique: str, monitor: tuple[ServiceRuntime, Monitor]) -> None:
    _, mon = monitor
    vehicle, run_id = f"ego-{unique}", f"run-{unique}"
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
                await producer.send("vehicle.state", state(vehicle, run_id), key=key)
                marks["last_sent_ns"] = time.time_ns()

        # warm up at the registry rate until the monitor has picked the key up
        for _ in range(200):
            await paced(20.0, 0.25)
            if mon.liveness.is_alive("vehicle.state", vehicle, run_id):
                break
        assert mon.liveness.is_alive("vehicle.state", vehicle, run_id), "the monitor never saw it"
        await paced(20.0, 2.5)
        marks["slow_from_ns"] = time.time_ns()
        # 60 % of the expected rate: well below the 90 % floor. Near the floor (80 %) the
        # 100-message window's rate sank past it so slowly that a pause of the producer
        # leaving the window lifted it back over the hysteresis for a moment on a loaded
        # machine (frequency_ok between two frequency_low): right, but not this test's subject.
        await paced(12.0, 4.5)
        await producer.flush()
        marks["stopped_ns"] = marks["last_sent_ns"]
        await asyncio.sleep(RUN_SILENCE_S + 1.0)
    finally:
        await producer.stop()

    found = await events_for(kafka_bootstrap, vehicle, {"topic_alive", "topic_stale",
                                                        "frequency_low", "frequency_ok"}, 2)
    kinds = [(e.type, e.details.get("topic")) for e in found]
    assert kinds == [("frequency_low", "vehicle.state"), ("topic_stale", "vehicle.state")], kinds
    low, stale = found
    assert all(e.source == "monitor" for e in found)
    # the low-rate event comes after the producer slowed down, not during the full-rate phase
    assert marks["slow_from_ns"] < low.stamp_ns < marks["stopped_ns"]
    assert low.details["rate_hz"] < 18.0
    assert low.severity.value == "warning"
    # The run's only topic stopped, so its data clock stopped too: the wall clock tells (real
    # time), not before the run's silence and within it plus one tick of slack.
    silent_s = (stale.stamp_ns - marks["stopped_ns"]) / 1e9
    assert RUN_SILENCE_S - 0.05 <= silent_s <= RUN_SILENCE_S + SLACK_S, silent_s
    assert stale.details["clock"] == "wall"
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
        # Two results seen, not one: the monitor's start may fall between the risky result and
        # the malformed one of an attempt, and then the one it saw is the malformed one. Of any
        # two in a row, one is risky.
        if (received(frame, "perception.objects") >= 2
                and all(seen(frame, t) for t in ("vehicle.control", "vehicle.state.dlq"))):
            break
    # Until each kind is there: one dead letter is produced per attempt, so its events can be
    # several, and the first three events need not be one of each kind.
    wanted = {"collision_risk", "emergency_stop", "dlq_message"}
    found: list[SafetyEvent] = []
    for _ in range(15):
        found = await events_for(kafka_bootstrap, vehicle, wanted, 10**6, timeout_s=2.0)
        if {e.type for e in found} == wanted:
            break
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


async def test_on_simulation_time_a_stopped_topic_and_a_future_stamp_are_events_once(
        kafka_bootstrap: str, unique: str) -> None:
    options = MonitorSettings(start_from="latest", lag_interval_s=0, clock="simulation")
    vehicle, run_id = f"sim-{unique}", f"run-{unique}"
    key = vehicle.encode()
    start_ns, tick = time.time_ns(), 0
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False,
                                acks="all", linger_ms=0)
    async with running(kafka_bootstrap, unique, options) as (_, mon):
        await producer.start()
        try:

            async def step(*, with_control: bool = True) -> None:
                # One tick of simulation time (50 ms) every 100 ms: half the wall clock's pace.
                nonlocal tick
                stamp_ns = start_ns + tick * TICK_NS
                await producer.send("vehicle.state", state(vehicle, run_id, stamp_ns), key=key)
                if with_control:
                    await producer.send("vehicle.control", control(vehicle, run_id, tick, stamp_ns),
                                        key=key)
                tick += 1
                await asyncio.sleep(0.1)

            for _ in range(300):
                await step()
                if (mon.liveness.is_alive("vehicle.state", vehicle, run_id)
                        and mon.liveness.is_alive("vehicle.control", vehicle, run_id)):
                    break
            assert mon.liveness.is_alive("vehicle.control", vehicle, run_id), "never seen"
            for _ in range(30):  # 1.5 s of simulation over 3 s of wall time: at 20 Hz, fresh
                await step()
            for _ in range(25):  # the gate stops; 1.25 s of simulation: control is stale
                await step(with_control=False)
            ahead_ns = start_ns + tick * TICK_NS + 365 * 24 * 3600 * 10**9
            await producer.send("vehicle.state", state(vehicle, run_id, ahead_ns), key=key)
            for _ in range(5):
                await step(with_control=False)
            finished = safety_event(source="simulator", type_=RUN_FINISHED,
                                    severity=Severity.INFO, vehicle_id=vehicle, run_id=run_id)
            await producer.send("safety.events", finished.encode(), key=key)
            await producer.flush()
            await asyncio.sleep(3.0)  # everything stopped: the simulation clock stops with it
        finally:
            await producer.stop()

    wanted = {"topic_alive", "topic_stale", "frequency_low", "frequency_ok", "clock_skew",
              "latency_budget_exceeded"}
    # one more than expected, so an extra event would be seen (the wait is its timeout)
    found = await events_for(kafka_bootstrap, vehicle, wanted, 3, timeout_s=5.0)
    kinds = [(e.type, e.details.get("topic")) for e in found]
    assert kinds == [("topic_stale", "vehicle.control"), ("clock_skew", "vehicle.state")], kinds
    stale, skew = found
    assert stale.severity.value == "critical"
    assert stale.details["clock"] == "data"
    assert stale.run_id == run_id
    assert skew.details["reference"] == "run data clock"
    assert skew.details["ahead_s"] > 364 * 24 * 3600
