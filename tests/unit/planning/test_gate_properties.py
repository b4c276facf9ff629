"""Command gate, property-tested at gate level with hostile inputs and clocks.

Random sequences of inputs and ticks — NaN, ±inf, huge values, clocks that repeat or go
back, stamps from the future — drive :class:`Gate` (and, below, a whole
:class:`PlanningStack`). Whatever comes in: every output is finite and within
:class:`CommandLimits` (values and rates), and whenever an input is stale by the rule the
gate documents — recomputed here from the inputs alone — the gate commands a stop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.classes import ObjectClass
from common.control import ControlCommand
from planning.config import PlannerConfig
from planning.gate import PERCEPTION, PLANNER, VEHICLE_STATE, Gate, GateConfig, GateMode, GateOutput
from planning.inputs import CameraObjects, SeenObject, VehicleInput
from planning.planner import Planner
from planning.stack import CommandOut, PlanningStack, StackConfig
from planning.types import EgoState

pytestmark = pytest.mark.faults
MS = 1_000_000
TICK_NS = 50 * MS
YEAR_NS = 365 * 24 * 3600 * 10**9
CONFIG = GateConfig()
LIMITS = CONFIG.limits
STOP_DECEL = {GateMode.COMFORTABLE_STOP: CONFIG.comfortable_decel_mps2,
              GateMode.EMERGENCY_STOP: CONFIG.emergency_decel_mps2}
EPS = 1e-9

# Deterministic in CI: the same examples every run, no timing-based failure, bounded cost.
GATE_PROFILE = settings(derandomize=True, deadline=None, max_examples=300, database=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------------------------- strategies

hostile = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 1e-300])
values = st.one_of(st.floats(-60.0, 60.0), hostile)
stamp_offsets = st.one_of(  # a message's stamp relative to the gate's clock [ns]
    st.integers(-400 * MS, 0),  # fresh or just stale
    st.integers(-3000 * MS, 3000 * MS),
    st.sampled_from([CONFIG.future_tolerance_ns, CONFIG.future_tolerance_ns + 1, YEAR_NS,
                     10 * YEAR_NS, -YEAR_NS, 10**30, -(10**30)]),
)
stamps = st.one_of(stamp_offsets, st.sampled_from([math.nan, math.inf, -math.inf]))
clock_steps = st.one_of(  # how the gate's clock moves before a tick [ns]
    st.just(TICK_NS), st.just(TICK_NS), st.just(0), st.integers(-2000 * MS, 2000 * MS),
    st.sampled_from([-YEAR_NS, YEAR_NS, 1, -1]),
)


@st.composite
def commands(draw: st.DrawFn) -> ControlCommand:
    return ControlCommand(
        steering_tire_angle_rad=draw(st.one_of(st.floats(-1.0, 1.0), values)),
        steering_tire_rotation_rate_radps=draw(values),
        target_speed_mps=draw(values),
        accel_mps2=draw(st.one_of(st.floats(-8.0, 5.0), values)),
        jerk_mps3=draw(values),
        stamp_ns=draw(st.one_of(st.just(0), st.integers(-(2**70), 2**70),
                                st.sampled_from([math.nan, math.inf])))  # type: ignore[arg-type]
    )


ticks = st.tuples(st.just("tick"), clock_steps)
fresh_rounds = st.tuples(st.just("fresh"), clock_steps, st.floats(0.0, 30.0),
                         st.none() | st.floats(0.0, 200.0))
ops = st.lists(st.one_of(
    st.tuples(st.just("state"), stamps, values),
    st.tuples(st.just("perception"), stamps, st.one_of(st.none(), st.floats(-5.0, 300.0), values),
              values),
    st.tuples(st.just("command"), stamps, commands()),
    ticks, fresh_rounds, ticks, fresh_rounds,  # twice: long healthy stretches between faults
), min_size=10, max_size=60)

# ---------------------------------------------------------------------------- the rule, again


def _finite(value: object) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


@dataclass
class StaleRule:
    """The gate's documented staleness rule, recomputed from the messages alone."""

    timeouts: dict[str, int] = field(default_factory=lambda: {
        PERCEPTION: CONFIG.perception_timeout_ns, VEHICLE_STATE: CONFIG.vehicle_state_timeout_ns,
        PLANNER: CONFIG.command_timeout_ns})
    valid_stamp: dict[str, Any] = field(default_factory=dict)  # newest valid message's stamp
    last_bad: dict[str, bool] = field(default_factory=dict)  # newest message had a non-finite

    def message(self, name: str, stamp: object, *numbers: object) -> None:
        ok = all(v is None or _finite(v) for v in (stamp, *numbers))
        self.last_bad[name] = not ok
        if ok:
            self.valid_stamp[name] = stamp

    def future(self, name: str, now: int) -> bool:
        stamp = self.valid_stamp.get(name)
        return (not self.last_bad.get(name, False) and stamp is not None
                and stamp - now > CONFIG.future_tolerance_ns)

    def stale(self, name: str, now: int) -> bool:
        stamp = self.valid_stamp.get(name)
        if self.last_bad.get(name, False) or stamp is None:
            return True
        return now - stamp > self.timeouts[name] or stamp - now > CONFIG.future_tolerance_ns


def gate_dt_s(now: int, last: int) -> float:
    """The step the gate rate-limits over: a repeated or backward clock counts as min_dt_s."""
    return max(min(now - last, 10**18) / 1e9, CONFIG.min_dt_s)


def check_output(out: GateOutput, prev: GateOutput | None, dt_s: float | None,
                 stale: set[str]) -> None:
    """Every number finite and within the limits; stale in, a stop out."""
    c = out.command
    for f in fields(c):
        assert _finite(getattr(c, f.name)), (f.name, c)
    assert 0.0 <= c.target_speed_mps <= LIMITS.max_speed_mps
    assert -LIMITS.max_decel_mps2 <= c.accel_mps2 <= LIMITS.max_accel_mps2
    assert abs(c.jerk_mps3) <= LIMITS.max_jerk_mps3 + EPS
    assert abs(c.steering_tire_angle_rad) <= LIMITS.max_steer_rad
    assert abs(c.steering_tire_rotation_rate_radps) <= LIMITS.max_steer_rate_radps + EPS
    for event in out.events:
        json.dumps(event.details, allow_nan=False)  # no NaN/inf reaches the safety log
    if stale:
        assert out.mode != GateMode.NORMAL, stale
    if prev is None or dt_s is None:
        return
    p = prev.command
    assert abs(c.accel_mps2 - p.accel_mps2) <= LIMITS.max_jerk_mps3 * dt_s + EPS
    assert abs(c.steering_tire_angle_rad - p.steering_tire_angle_rad) <= (
        LIMITS.max_steer_rate_radps * dt_s + EPS)
    if prev.mode == GateMode.EMERGENCY_STOP and stale:
        assert out.mode == GateMode.EMERGENCY_STOP  # never eased within a stale episode
    if out.mode != GateMode.NORMAL:
        # A stop: to a standstill, the wheel held, braking ramped towards the mode's decel.
        assert c.target_speed_mps == 0.0
        assert c.steering_tire_angle_rad == p.steering_tire_angle_rad
        target = -STOP_DECEL[out.mode]
        assert abs(c.accel_mps2 - target) <= abs(p.accel_mps2 - target) + EPS


# ------------------------------------------------------------------------------------- gate


@GATE_PROFILE
@given(ops, st.integers(0, 2**62))
def test_gate_outputs_stay_in_limits_and_stale_inputs_always_stop(
        sequence: list[tuple[Any, ...]], start_ns: int) -> None:
    gate, rule = Gate(CONFIG), StaleRule()
    now, last_tick = start_ns, None
    prev: GateOutput | None = None
    was_stale: set[str] = set()
    was_future: set[str] = set()
    for op in sequence:
        kind = op[0]
        if kind == "state":
            stamp = op[1] if not _finite(op[1]) else now + op[1]
            gate.on_vehicle_state(stamp, op[2])
            rule.message(VEHICLE_STATE, stamp, op[2])
            continue
        if kind == "perception":
            stamp = op[1] if not _finite(op[1]) else now + op[1]
            gate.on_perception(stamp, op[2], op[3])
            rule.message(PERCEPTION, stamp, op[2], op[3])
            continue
        if kind == "command":
            stamp = op[1] if not _finite(op[1]) else now + op[1]
            cmd: ControlCommand = op[2]
            gate.on_command(cmd, stamp)
            rule.message(PLANNER, stamp, *(getattr(cmd, f.name) for f in fields(cmd)))
            continue
        now += op[1]
        if kind == "fresh":  # a healthy round of all three inputs at the gate's clock
            gate.on_vehicle_state(now, op[2])
            gate.on_perception(now, op[3])
            gate.on_command(ControlCommand(target_speed_mps=op[2], accel_mps2=0.5), now)
            for name in (VEHICLE_STATE, PERCEPTION, PLANNER):
                rule.message(name, now)
        out = gate.tick(now)
        stale = {n for n in rule.timeouts if rule.stale(n, now)}
        future = {n for n in rule.timeouts if rule.future(n, now)}
        dt_s = None if last_tick is None else gate_dt_s(now, last_tick)
        check_output(out, prev, dt_s, stale)
        # Each input's staleness and skew are reported once, when they begin.
        assert {e.details["input"] for e in out.events if e.type == "stale_input"} == (
            stale - was_stale)
        assert {e.details["input"] for e in out.events if e.type == "clock_skew"} == (
            future - was_future)
        prev, last_tick, was_stale, was_future = out, now, stale, future


# ------------------------------------------------------------------------- the whole stack

# A small candidate grid: the same planner, a fraction of the cost per plan.
SMALL_PLANNER = PlannerConfig(lane_offsets_m=(0.0,), lateral_times_s=(4.0,), n_target_speeds=3,
                              speed_times_s=(2.0,), stop_distances_m=(20.0,), stop_times_s=(4.0,))
STACK_PLANNER = Planner(SMALL_PLANNER, device="cpu")
STACK_PROFILE = settings(GATE_PROFILE, max_examples=40)
# A short recovery hold, so that a few healthy cycles bring the stack back to normal driving.
STACK_GATE = replace(CONFIG, recovery_hold_ns=100 * MS)

speeds = st.one_of(st.floats(0.0, 30.0), hostile)
stack_ops = st.lists(st.one_of(
    st.tuples(st.just("state"), stamp_offsets, speeds),
    st.tuples(st.just("frame"), st.sampled_from(["front", "front", "rear"]), stamp_offsets,
              st.floats(-10.0, 150.0)),
    ticks,
    st.tuples(st.just("drive"), st.integers(1, 6), st.floats(0.0, 30.0), st.floats(-10.0, 150.0)),
), min_size=4, max_size=16)


@dataclass
class StackDriver:
    """Feeds a wall-clock stack and keeps the stale rule's view of what its gate heard."""

    stack: PlanningStack[int]
    now: int
    rule: StaleRule = field(default_factory=StaleRule)
    has_state: bool = False
    plan_stamp: int | None = None
    prev: CommandOut[int] | None = None

    def state(self, stamp: int, speed: float) -> None:
        self.stack.step(self.now, VehicleInput(stamp_ns=stamp, x_m=0.0, y_m=0.0, yaw_rad=0.0,
                                               ego=EgoState(speed_mps=speed)))
        self.rule.message(VEHICLE_STATE, stamp, speed)
        self.has_state = True

    def frame(self, camera: str, stamp: int, car_x_m: float) -> None:
        car = SeenObject(track_id=1, object_class=ObjectClass.CAR, position_m=(car_x_m, 0.0),
                         velocity_mps=(0.0, 0.0))
        self.stack.step(self.now, CameraObjects(camera_id=camera, stamp_ns=stamp, objects=(car,),
                                                tag=stamp))
        # The stack plans a primary frame once it has a state, unless already too old; only
        # then does the gate hear of it (and of a plan stamped now).
        timeout = self.stack.config.gate.perception_timeout_ns
        if camera == self.stack.config.primary_camera and self.has_state and (
                self.now - stamp <= timeout):
            self.rule.message(PERCEPTION, stamp)
            self.plan_stamp = self.now

    def tick(self, step_ns: int) -> None:
        self.now += step_ns
        now = self.now
        (out,) = self.stack.step(now).outputs
        assert isinstance(out, CommandOut)
        assert out.stamp_ns == now
        # The held plan's command counts by its plan's stamp. Its values may be non-finite
        # (after a NaN speed): stale by the rule's other half, which this necessary
        # condition leaves out.
        stale = {n for n in (PERCEPTION, VEHICLE_STATE) if self.rule.stale(n, now)}
        if self.plan_stamp is None or not -CONFIG.future_tolerance_ns <= now - self.plan_stamp <= (
                CONFIG.command_timeout_ns):
            stale.add(PLANNER)
        prev = self.prev
        dt_s = None if prev is None else gate_dt_s(now, prev.stamp_ns)
        check_output(out.gate, prev.gate if prev is not None else None, dt_s, stale)
        self.prev = out


@STACK_PROFILE
@given(stack_ops, st.integers(0, 2**62))
def test_stack_commands_stay_in_limits_and_stale_inputs_always_stop(
        sequence: list[tuple[Any, ...]], start_ns: int) -> None:
    driver = StackDriver(PlanningStack(STACK_PLANNER, StackConfig(clock="wall", gate=STACK_GATE)),
                         start_ns)
    for op in sequence:
        if op[0] == "state":
            driver.state(driver.now + op[1], op[2])
        elif op[0] == "frame":
            driver.frame(op[1], driver.now + op[2], op[3])
        elif op[0] == "drive":  # healthy cycles at 20 Hz: a tick, a state and a frame of now
            for _ in range(op[1]):
                driver.tick(TICK_NS)
                driver.state(driver.now, op[2])
                driver.frame("front", driver.now, op[3])
        else:
            driver.tick(op[1])
