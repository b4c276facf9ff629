"""The planning service and its gate against the embedded broker: signed commands, stale input.

Timing is read on the gate's own clock: a command's stamp is the time of the gate tick that
made it, and a gate event is timed by the command it refers to (``command_seq``) — never by
when the test or the event publisher got round to it. The promise checked: measured from the
last perception message, the minimal-risk stop and its events are in force within the
perception timeout + 500 ms. Planning runs with one torch thread, as on a shared machine:
torch's default of one thread per core spins against the other processes' threads and can
stall the service's event loop, and so its control ticks, for a second.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer

from planning.gate import GateConfig
from services.control.client import CommandVerifier
from services.control.settings import ControlSettings
from services.messages import (
    DetectedObject,
    FrameRef,
    LaneContext,
    PerceptionObjects,
    Pose2D,
    SafetyEvent,
    Vec2,
    Vec3,
    VehicleControl,
    VehicleState,
)
from services.planning.convert import stack_config
from services.planning.service import build
from services.planning.settings import PlanningSettings
from services.settings import Settings
from tests.kafka_helpers import collect

pytestmark = pytest.mark.integration

SPEED_MPS = 10.0
BUDGET_NS = 500_000_000  # beyond the perception timeout, for the stop and its events
PERIOD_S = 0.05  # the test's input rate: 20 Hz, the registry's


def state(vehicle: str, stamp_ns: int) -> VehicleState:
    return VehicleState(vehicle_id=vehicle, stamp_ns=stamp_ns, pose=Pose2D(x_m=0, y_m=0, yaw_rad=0),
                        speed_mps=SPEED_MPS, run_id=vehicle,
                        lane=LaneContext(lane_index=0, n_lanes=2, lane_width_m=3.5,
                                         lateral_offset_m=0.0, heading_rel_rad=0.0,
                                         speed_limit_mps=13.9))


def objects(vehicle: str, seq: int, stamp_ns: int, car_at_m: float) -> PerceptionObjects:
    # A stopped car: relative to the ego it comes closer at the ego's speed.
    car = DetectedObject(track_id=1, object_class="car", score=0.9, box=(300, 170, 340, 200),
                         position_m=Vec3(x=car_at_m, y=0.0, z=0.7),
                         velocity_mps=Vec2(x=-SPEED_MPS, y=0))
    return PerceptionObjects(vehicle_id=vehicle, camera_id="front",
                             source=FrameRef(seq=seq, stamp_ns=stamp_ns), stamp_ns=stamp_ns,
                             model_version="test", objects=[car], run_id=vehicle)


@dataclass
class GateRun:
    """What the service published for one vehicle, commands in counter order."""

    commands: list[VehicleControl]
    events: list[SafetyEvent]
    last_perception_ns: int
    gate: GateConfig

    def command_stamp(self, event: SafetyEvent) -> int:
        """The gate-clock time of an event: the stamp of the command it came with."""
        (command,) = [c for c in self.commands if c.seq == event.references.command_seq]
        return command.stamp_ns

    def gate_events(self, kind: str, inp: str | None = None) -> list[SafetyEvent]:
        return [e for e in self.events if e.source == "gate" and e.type == kind
                and (inp is None or e.details.get("input") == inp)]


async def run_gate(kafka_bootstrap: str, unique: str, car_at_m: float) -> GateRun:
    """2.5 s of fresh states and perception at 20 Hz, then 1.5 s of states alone."""
    vehicle = f"gate-{unique}"
    control = ControlSettings.ephemeral()
    # From the topics' ends: a backlog left by earlier tests would arrive stale and be skipped.
    runtime = build(Settings(group_prefix=f"p{unique}", torch_threads=1), kafka_bootstrap,
                    control=control, start_from="latest").runtime
    await runtime.start()
    assert await runtime.wait_assigned()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    last_perception_ns = 0
    try:
        for i in range(80):
            now = time.time_ns()  # the gate's clock: the service stamps its ticks with it
            await producer.send("vehicle.state", state(vehicle, now).encode(), key=vehicle.encode())
            if i < 50:
                await producer.send("perception.objects",
                                    objects(vehicle, i, now, car_at_m).encode(),
                                    key=f"{vehicle}/front".encode())
                last_perception_ns = now
            await asyncio.sleep(PERIOD_S)
        await producer.flush()
    finally:
        await producer.stop()
        await runtime.stop()

    records = await collect(kafka_bootstrap, "vehicle.control", lambda r: r.key == vehicle.encode(),
                            10_000, timeout_s=3)
    verifier = CommandVerifier(control.keyring(), vehicle)
    commands = [verifier.check(r.headers, r.value, now_ns=VehicleControl.decode(r.value).stamp_ns)
                for r in records]  # every command is signed, in counter order, fresh
    assert [c.seq for c in commands] == list(range(1, len(commands) + 1))  # none missing
    events = await collect(kafka_bootstrap, "safety.events",
                           lambda r: vehicle.encode() in r.value, 10_000, timeout_s=3)
    return GateRun(commands, [SafetyEvent.decode(r.value) for r in events], last_perception_ns,
                   stack_config(PlanningSettings(), control).gate)


def check_stop_in_time(run: GateRun, mode: str) -> list[VehicleControl]:
    """The stop is in force, with its events, within timeout + 500 ms of the last perception;
    returns the commands of that stop episode."""
    last = run.last_perception_ns
    deadline = last + run.gate.perception_timeout_ns
    commands = run.commands
    assert any(c.mode == "normal" for c in commands)
    # Normal is never published past the deadline, on the gate's clock.
    assert all(c.mode != "normal" for c in commands if c.stamp_ns > deadline)
    first = next(c for c in commands if c.stamp_ns > last and c.mode != "normal")
    assert first.stamp_ns - last <= run.gate.perception_timeout_ns + BUDGET_NS
    assert first.target_speed_mps == 0.0
    # The episode in force then (it may have begun earlier if an input was late on a busy
    # machine): its first command carries the minimal_risk_stop event.
    start = first.seq
    while start > 1 and commands[start - 2].mode != "normal":
        start -= 1
    episode = commands[start - 1:]
    assert {c.mode for c in episode if c.stamp_ns > deadline} == {mode}
    stop_events = [e for e in run.gate_events("minimal_risk_stop")
                   if e.references.command_seq == start]
    assert len(stop_events) == 1
    assert run.command_stamp(stop_events[0]) <= first.stamp_ns
    # Perception is reported stale by then, and not fresh again after.
    stale = run.gate_events("stale_input", "perception")
    assert stale
    assert run.command_stamp(stale[-1]) <= last + run.gate.perception_timeout_ns + BUDGET_NS
    fresh_after = [e for e in run.gate_events("input_fresh", "perception")
                   if run.command_stamp(e) > run.command_stamp(stale[-1])]
    assert not fresh_after
    return episode


@pytest.mark.faults
async def test_stale_perception_gives_a_comfortable_stop_and_event_within_the_budget(
        kafka_bootstrap: str, unique: str) -> None:
    run = await run_gate(kafka_bootstrap, unique, car_at_m=120.0)  # 120 m: no emergency
    episode = check_stop_in_time(run, "comfortable_stop")
    (event,) = [e for e in run.gate_events("minimal_risk_stop")
                if e.references.command_seq == episode[0].seq]
    assert event.severity == "warning"
    stops = [c for c in episode if c.stamp_ns > run.last_perception_ns]
    # the gate's jerk limit ramps the braking in: it reaches the comfortable -1 m/s² soon after
    assert min(c.accel_mps2 for c in stops) == pytest.approx(-run.gate.comfortable_decel_mps2)
    assert all(b.accel_mps2 <= a.accel_mps2 + 1e-9 for a, b in itertools.pairwise(stops))


@pytest.mark.faults
async def test_stale_perception_with_a_close_stopped_car_gives_an_emergency_stop_in_limits(
        kafka_bootstrap: str, unique: str) -> None:
    # 10 m/s needs 50 m to stop comfortably, + 5 m margin: a stopped car 30 m ahead calls for
    # the emergency stop.
    run = await run_gate(kafka_bootstrap, unique, car_at_m=30.0)
    episode = check_stop_in_time(run, "emergency_stop")
    (event,) = [e for e in run.gate_events("minimal_risk_stop")
                if e.references.command_seq == episode[0].seq]
    assert event.severity == "critical"
    assert event.details["mode"] == "emergency_stop"
    limits = run.gate.limits
    for c in run.commands:  # every command, normal and stop, within the value limits
        assert -limits.max_decel_mps2 <= c.accel_mps2 <= limits.max_accel_mps2
        assert abs(c.jerk_mps3) <= limits.max_jerk_mps3 + 1e-6
        assert abs(c.steering_tire_angle_rad) <= limits.max_steer_rad
    # The emergency braking ramps in at the jerk limit over the gate's own tick intervals
    # (a tick repeated or late on a busy machine counts as it was), down to the full decel.
    for a, b in itertools.pairwise(episode):
        dt_s = max((b.stamp_ns - a.stamp_ns) / 1e9, run.gate.min_dt_s)
        assert b.accel_mps2 <= a.accel_mps2 + 1e-9
        assert a.accel_mps2 - b.accel_mps2 <= limits.max_jerk_mps3 * dt_s + 1e-6
    assert episode[-1].accel_mps2 == pytest.approx(-run.gate.emergency_decel_mps2)
