"""Command gate: stale inputs → minimal-risk stop, emergency vs comfortable, recovery."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from common.control import ControlCommand
from planning.gate import (
    PERCEPTION,
    PLANNER,
    VEHICLE_STATE,
    Gate,
    GateConfig,
    GateMode,
    GateOutput,
)
from planning.limits import ACCEL, CommandLimits
from services.control.settings import ControlSettings
from services.planning.convert import stack_config
from services.planning.settings import PlanningSettings

MS = 1_000_000
TICK_NS = 50 * MS
CRUISE = ControlCommand(steering_tire_angle_rad=0.02, target_speed_mps=15.0, accel_mps2=0.0)


@dataclass
class Feed:
    """Drives a gate at 20 Hz; each input can be switched off and on."""

    gate: Gate
    speed_mps: float = 15.0
    closest_m: float | None = None
    closest_speed_mps: float = 0.0
    perception_on: bool = True
    state_on: bool = True
    planner_on: bool = True
    command: ControlCommand = CRUISE
    now_ns: int = 0
    outputs: list[tuple[int, GateOutput]] = field(default_factory=list)

    def run_until(self, end_ns: int) -> GateOutput:
        out = None
        while self.now_ns <= end_ns:
            if self.perception_on:
                self.gate.on_perception(self.now_ns, self.closest_m, self.closest_speed_mps)
            if self.state_on:
                self.gate.on_vehicle_state(self.now_ns, self.speed_mps)
            if self.planner_on:
                self.gate.on_command(self.command, self.now_ns)
            out = self.gate.tick(self.now_ns)
            self.outputs.append((self.now_ns, out))
            self.now_ns += TICK_NS
        assert out is not None
        return out

    def events(self, kind: str) -> list[tuple[int, dict[str, object]]]:
        return [(t, e.details) for t, o in self.outputs for e in o.events if e.type == kind]


def make_feed(**kwargs: object) -> Feed:
    config = GateConfig(
        perception_timeout_ns=300 * MS, vehicle_state_timeout_ns=200 * MS,
        command_timeout_ns=300 * MS, recovery_hold_ns=500 * MS,
    )
    return Feed(Gate(config), **kwargs)  # type: ignore[arg-type]


def test_fresh_inputs_pass_the_planner_command() -> None:
    feed = make_feed()
    out = feed.run_until(1000 * MS)
    assert out.mode == GateMode.NORMAL
    assert out.command.target_speed_mps == CRUISE.target_speed_mps
    assert out.command.accel_mps2 == CRUISE.accel_mps2
    assert out.clamped == frozenset()
    # Only the start-up (inputs never seen before the first tick) produced no events.
    assert not any(o.events for t, o in feed.outputs if t > 0)


def test_stale_perception_gives_a_comfortable_stop_when_nothing_is_close() -> None:
    feed = make_feed(closest_m=250.0)
    feed.run_until(1000 * MS)
    feed.perception_on = False  # last perception stamp: 1000 ms
    out = feed.run_until(1300 * MS)
    assert out.mode == GateMode.NORMAL  # 300 ms old: not yet past the timeout
    out = feed.run_until(1350 * MS)
    assert out.mode == GateMode.COMFORTABLE_STOP
    stale = feed.events("stale_input")
    assert [d["input"] for _, d in stale if _ > 0] == [PERCEPTION]
    stops = feed.events("minimal_risk_stop")
    assert len(stops) == 1
    assert stops[0][1]["mode"] == "comfortable_stop"
    out = feed.run_until(3000 * MS)
    assert out.mode == GateMode.COMFORTABLE_STOP
    assert out.command.target_speed_mps == 0.0
    assert out.command.accel_mps2 == pytest.approx(-1.0)
    assert out.command.steering_tire_angle_rad == pytest.approx(CRUISE.steering_tire_angle_rad)
    assert len(feed.events("stale_input")) == len(stale)  # reported once, not every tick


def test_stale_perception_with_a_close_obstacle_gives_an_emergency_stop() -> None:
    # 15 m/s needs 112 m to stop at 1 m/s²: an object 40 m ahead calls for an emergency.
    feed = make_feed(closest_m=40.0)
    feed.run_until(1000 * MS)
    feed.perception_on = False
    out = feed.run_until(1400 * MS)
    assert out.mode == GateMode.EMERGENCY_STOP
    stops = feed.events("minimal_risk_stop")
    assert [d["mode"] for _, d in stops] == ["emergency_stop"]
    severities = [e.severity for _, o in feed.outputs for e in o.events
                  if e.type == "minimal_risk_stop"]
    assert severities == ["critical"]
    # Braking builds up at the jerk limit to the full emergency decel.
    accels = [o.command.accel_mps2 for t, o in feed.outputs if t > 1300 * MS]
    out = feed.run_until(2500 * MS)
    accels += [o.command.accel_mps2 for t, o in feed.outputs[-22:]]
    assert out.command.accel_mps2 == pytest.approx(-6.0)
    limits = CommandLimits()
    steps = [b - a for a, b in itertools.pairwise(accels)]
    assert min(steps) >= -limits.max_jerk_mps3 * TICK_NS / 1e9 - 1e-9


@pytest.mark.parametrize(("speed", "lead_gap", "lead_speed", "mode"), [
    (27.8, 40.0, 27.0, GateMode.COMFORTABLE_STOP),  # following at 100 km/h: the gap only opens
    (15.0, 20.0, 10.0, GateMode.COMFORTABLE_STOP),  # closes 5²/2 = 12.5 m more: 7.5 m > 5 m left
    (15.0, 20.0, 5.0, GateMode.EMERGENCY_STOP),  # closes 10²/2 = 50 m more: no room
    (15.0, 40.0, 0.0, GateMode.EMERGENCY_STOP),  # stopped: the whole 112 m stopping distance
    (15.0, 40.0, -8.0, GateMode.EMERGENCY_STOP),  # oncoming counts as stopped
])
def test_stop_choice_follows_the_closing_speed_of_the_object_ahead(
        speed: float, lead_gap: float, lead_speed: float, mode: GateMode) -> None:
    feed = make_feed(closest_m=lead_gap, closest_speed_mps=lead_speed, speed_mps=speed)
    feed.run_until(1000 * MS)
    feed.perception_on = False
    assert feed.run_until(1400 * MS).mode == mode


def test_comfortable_stop_escalates_when_dead_reckoning_brings_the_object_close() -> None:
    # 10 m/s needs 50 m + 5 m margin; the object is 70 m ahead as last perceived, and the
    # vehicle (state still fresh, still at 10 m/s) closes in at 10 m/s.
    feed = make_feed(closest_m=70.0, speed_mps=10.0)
    feed.run_until(1000 * MS)
    feed.perception_on = False
    out = feed.run_until(1400 * MS)
    assert out.mode == GateMode.COMFORTABLE_STOP
    out = feed.run_until(2700 * MS)
    assert out.mode == GateMode.EMERGENCY_STOP
    (t_escalated, _), = [(t, d) for t, d in feed.events("minimal_risk_stop")
                         if d["mode"] == "emergency_stop"]
    assert 2450 * MS <= t_escalated <= 2550 * MS  # 70 − 10·Δt < 55 ⇒ Δt > 1.5 s


def test_stale_vehicle_state_also_stops() -> None:
    feed = make_feed(closest_m=None)
    feed.run_until(500 * MS)
    feed.state_on = False
    out = feed.run_until(800 * MS)
    assert out.mode == GateMode.COMFORTABLE_STOP
    assert [d["input"] for t, d in feed.events("stale_input") if t > 0] == [VEHICLE_STATE]


def test_recovers_only_after_the_hold_and_a_fresh_plan() -> None:
    feed = make_feed(closest_m=250.0)
    feed.run_until(1000 * MS)
    feed.perception_on = False
    feed.planner_on = False  # the planner waits for perception
    feed.run_until(2000 * MS)
    assert feed.gate.mode == GateMode.COMFORTABLE_STOP
    assert {d["input"] for t, d in feed.events("stale_input") if t > 0} == {PERCEPTION, PLANNER}

    feed.perception_on = True  # perception back at 2050 ms; still no new plan
    out = feed.run_until(3000 * MS)
    assert out.mode == GateMode.COMFORTABLE_STOP  # planner input still stale
    feed.planner_on = True  # first fresh plan at 3050 ms: all inputs fresh from then on
    out = feed.run_until(3500 * MS)
    assert out.mode == GateMode.COMFORTABLE_STOP  # within the 500 ms hold
    out = feed.run_until(3600 * MS)
    assert out.mode == GateMode.NORMAL
    (t_recovered, details), = feed.events("recovered")
    assert t_recovered == 3550 * MS
    assert details["from_mode"] == "comfortable_stop"


def test_a_glitch_during_the_hold_restarts_it() -> None:
    feed = make_feed(closest_m=250.0)
    feed.run_until(1000 * MS)
    feed.perception_on = False
    feed.run_until(1500 * MS)
    feed.perception_on = True
    feed.run_until(1800 * MS)  # fresh since 1550 ms
    feed.perception_on = False
    feed.run_until(2150 * MS)  # stale again at 2150 ms (last stamp 1800 ms)
    feed.perception_on = True
    out = feed.run_until(2600 * MS)  # fresh since 2200 ms: hold not over yet
    assert out.mode == GateMode.COMFORTABLE_STOP
    out = feed.run_until(2700 * MS)
    assert out.mode == GateMode.NORMAL


def test_planner_commands_are_clamped() -> None:
    wild = ControlCommand(steering_tire_angle_rad=0.0, target_speed_mps=80.0, accel_mps2=9.0)
    feed = make_feed(command=wild)
    out = feed.run_until(1000 * MS)
    limits = CommandLimits()
    assert out.mode == GateMode.NORMAL
    assert out.command.target_speed_mps == limits.max_speed_mps
    assert out.command.accel_mps2 == limits.max_accel_mps2
    assert ACCEL in out.clamped


def test_same_inputs_same_outputs() -> None:
    def run() -> list[tuple[int, GateOutput]]:
        feed = make_feed(closest_m=40.0)
        feed.run_until(1000 * MS)
        feed.perception_on = False
        feed.run_until(2000 * MS)
        feed.perception_on = True
        feed.run_until(3000 * MS)
        return feed.outputs

    assert run() == run()


def test_startup_without_inputs_is_a_stop() -> None:
    gate = Gate()
    out = gate.tick(0)
    assert out.mode == GateMode.COMFORTABLE_STOP
    assert out.command.target_speed_mps == 0.0
    assert {e.details["input"] for e in out.events if e.type == "stale_input"} == {
        PERCEPTION, VEHICLE_STATE, PLANNER,
    }


def test_the_perception_timeout_follows_a_slower_camera() -> None:
    def timeout_ms(**options: float) -> float:
        config = stack_config(PlanningSettings.model_validate(options), ControlSettings())
        return config.gate.perception_timeout_ns / 1e6

    assert timeout_ms() == pytest.approx(200.0)  # 4 periods of the registry's 20 Hz
    assert timeout_ms(perception_rate_hz=10.0) == pytest.approx(400.0)
    assert timeout_ms(perception_rate_hz=10.0, timeout_periods=2.0) == pytest.approx(200.0)
