"""Stale perception through the whole planning stack, on an injected wall clock: exact timings.

The stack ticks at 20 Hz; perception frames come at 20 Hz with any capture phase and any
delivery latency, then stop. The minimal-risk stop, with its events, must come on the first
tick after the last perception stamp + the perception timeout — never a tick earlier or later.
"""

from __future__ import annotations

import heapq
import itertools

import pytest

from common.classes import ObjectClass
from planning.gate import PERCEPTION, GateMode
from planning.inputs import CameraObjects, SeenObject, VehicleInput
from planning.planner import Planner
from planning.stack import CommandOut, PlanningStack, StackConfig
from planning.types import EgoState
from services.control.settings import ControlSettings
from services.planning.convert import stack_config
from services.planning.settings import PlanningSettings
from tests.unit.planning.test_gate_properties import SMALL_PLANNER

pytestmark = pytest.mark.faults
MS = 1_000_000
T0 = 1_700_000_000_000_000_000  # [ns] a wall-clock time
SPEED_MPS = 10.0


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner(SMALL_PLANNER, device="cpu")


def service_config() -> StackConfig:
    """The stack as the planning service builds it, on the wall clock."""
    config = stack_config(PlanningSettings(), ControlSettings())
    assert config.clock == "wall"
    return config


def drive(planner: Planner, *, car_at_m: float, phase_ns: int, latency_ns: int,
          frames: int = 16, ticks: int = 40) -> tuple[StackConfig, int, list[CommandOut[int]]]:
    """Run a stack: ticks at T0 + k·period (each after a state stamped then), ``frames``
    perception frames captured at T0 + phase + k·period and delivered ``latency_ns`` later.
    Returns the config, the last perception stamp and every command."""
    config = service_config()
    period_ns = round(config.control_period_s * 1e9)
    stack: PlanningStack[int] = PlanningStack(planner, config)
    car = SeenObject(track_id=1, object_class=ObjectClass.CAR, position_m=(car_at_m, 0.0),
                     velocity_mps=(-SPEED_MPS, 0.0))  # stopped: closing at the ego's speed
    queue: list[tuple[int, int, str, int]] = []  # (time, order, kind, stamp)
    order = itertools.count()
    for k in range(ticks):
        heapq.heappush(queue, (T0 + k * period_ns, next(order), "tick", T0 + k * period_ns))
    stamps = [T0 + phase_ns + k * period_ns for k in range(frames)]
    for stamp in stamps:
        heapq.heappush(queue, (stamp + latency_ns, next(order), "frame", stamp))
    commands: list[CommandOut[int]] = []
    while queue:
        now, _, kind, stamp = heapq.heappop(queue)
        if kind == "frame":
            stack.step(now, CameraObjects(camera_id="front", stamp_ns=stamp, objects=(car,),
                                          tag=stamp))
            continue
        stack.step(now, VehicleInput(stamp_ns=now, x_m=0.0, y_m=0.0, yaw_rad=0.0,
                                     ego=EgoState(speed_mps=SPEED_MPS)))
        (out,) = stack.step(now).outputs
        assert isinstance(out, CommandOut)
        commands.append(out)
    return config, stamps[-1], commands


@pytest.mark.parametrize("latency_ns", [0, 120 * MS])
@pytest.mark.parametrize("phase_ns", [0, 1, 17 * MS, 50 * MS - 1])
def test_the_stop_comes_on_the_first_tick_after_the_timeout(
        planner: Planner, phase_ns: int, latency_ns: int) -> None:
    config, last_ns, commands = drive(planner, car_at_m=150.0, phase_ns=phase_ns,
                                      latency_ns=latency_ns)
    deadline_ns = last_ns + config.gate.perception_timeout_ns
    expected = next(c.stamp_ns for c in commands if c.stamp_ns > deadline_ns)
    normal = [c.stamp_ns for c in commands if c.gate.mode == GateMode.NORMAL]
    assert normal, "the stack never drove normally before perception stopped"
    # Normal right up to the deadline (start-up aside), a stop from the first tick after it.
    first_stop = next(c for c in commands if c.stamp_ns > normal[0]
                      and c.gate.mode != GateMode.NORMAL)
    assert first_stop.stamp_ns == expected
    assert max(normal) < expected
    assert all(c.gate.mode == GateMode.COMFORTABLE_STOP for c in commands
               if c.stamp_ns >= expected)  # the car is far: no emergency
    kinds = {(e.type, e.details.get("input")) for e in first_stop.gate.events}
    assert ("stale_input", PERCEPTION) in kinds
    assert ("minimal_risk_stop", None) in kinds


@pytest.mark.parametrize("latency_ns", [0, 120 * MS])
def test_a_close_stopped_car_gives_an_emergency_stop_on_time_within_the_limits(
        planner: Planner, latency_ns: int) -> None:
    # 10 m/s needs 50 m to stop at the comfortable 1 m/s² (+ 5 m margin): 30 m calls for the
    # emergency stop.
    config, last_ns, commands = drive(planner, car_at_m=30.0, phase_ns=7 * MS,
                                      latency_ns=latency_ns)
    limits = config.gate.limits
    period_s = config.control_period_s
    deadline_ns = last_ns + config.gate.perception_timeout_ns
    expected = next(c.stamp_ns for c in commands if c.stamp_ns > deadline_ns)
    normal = [c.stamp_ns for c in commands if c.gate.mode == GateMode.NORMAL]
    assert normal
    assert max(normal) < expected
    stops = [c for c in commands if c.stamp_ns >= expected]
    assert all(c.gate.mode == GateMode.EMERGENCY_STOP for c in stops)
    (event,) = [e for e in stops[0].gate.events if e.type == "minimal_risk_stop"]
    assert event.severity == "critical"
    assert event.details["mode"] == "emergency_stop"
    # Braking ramps at exactly the jerk limit from the last planner command to the full
    # emergency decel, and holds it; every value within the limits.
    before = next(c for c in reversed(commands) if c.stamp_ns < expected)
    accel = before.gate.command.accel_mps2
    for c in stops:
        accel = max(accel - limits.max_jerk_mps3 * period_s, -config.gate.emergency_decel_mps2)
        assert c.gate.command.accel_mps2 == pytest.approx(accel, abs=1e-9)
        assert -limits.max_jerk_mps3 - 1e-9 <= c.gate.command.jerk_mps3 <= 0.0
        assert c.gate.command.target_speed_mps == 0.0
    assert stops[-1].gate.command.accel_mps2 == pytest.approx(-limits.max_decel_mps2)
