"""Command gate against hostile inputs: stamps from the future, non-finite numbers, bad clocks."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from common.control import ControlCommand
from planning.gate import (
    FUTURE_STAMP,
    NON_FINITE,
    PERCEPTION,
    PLANNER,
    VEHICLE_STATE,
    Gate,
    GateConfig,
    GateMode,
    GateOutput,
)
from tests.unit.planning.test_gate import CRUISE, MS, TICK_NS, make_feed

NAN, INF = math.nan, math.inf
YEAR_NS = 365 * 24 * 3600 * 10**9


def events_of(out: GateOutput, kind: str) -> list[dict[str, object]]:
    return [e.details for e in out.events if e.type == kind]


def assert_wire_safe(out: GateOutput) -> None:
    """Every number of the output is finite and its events encode as strict JSON."""
    c = out.command
    for value in (c.steering_tire_angle_rad, c.steering_tire_rotation_rate_radps,
                  c.target_speed_mps, c.accel_mps2, c.jerk_mps3, c.stamp_ns):
        assert math.isfinite(value)
    for event in out.events:
        json.dumps(event.details, allow_nan=False)


def test_a_perception_stamped_ten_years_ahead_is_stale_at_once_and_reported_once() -> None:
    feed = make_feed(closest_m=250.0)
    feed.run_until(1000 * MS)
    feed.perception_on = False
    now = feed.now_ns
    feed.gate.on_perception(now + 10 * YEAR_NS, 250.0)
    out = feed.run_until(now)
    assert out.mode == GateMode.COMFORTABLE_STOP  # before: normal for 10 s, no perception at all
    (skew,) = events_of(out, "clock_skew")
    assert skew["input"] == PERCEPTION
    assert skew["ahead_ns"] == 10 * YEAR_NS
    assert skew["tolerance_ns"] == feed.gate.config.future_tolerance_ns
    assert [e.severity for e in out.events if e.type == "clock_skew"] == ["warning"]
    (stale,) = events_of(out, "stale_input")
    assert stale["input"] == PERCEPTION
    assert stale["reason"] == FUTURE_STAMP
    for _ in range(5):  # more messages from the future: the same episode, no new events
        feed.gate.on_perception(feed.now_ns + 10 * YEAR_NS, 250.0)
        out = feed.run_until(feed.now_ns)
        assert out.mode == GateMode.COMFORTABLE_STOP
        assert not events_of(out, "clock_skew")
    feed.perception_on = True  # honest stamps again: fresh, and a later skew is a new episode
    feed.run_until(feed.now_ns + 1000 * MS)
    assert feed.gate.mode == GateMode.NORMAL
    feed.gate.on_perception(feed.now_ns + 10 * YEAR_NS, 250.0)
    feed.gate.on_vehicle_state(feed.now_ns, feed.speed_mps)
    feed.gate.on_command(CRUISE, feed.now_ns)
    out = feed.gate.tick(feed.now_ns)
    assert [d["input"] for d in events_of(out, "clock_skew")] == [PERCEPTION]


@pytest.mark.parametrize(("ahead_ns", "stale"), [
    (0, False), (500 * MS, False), (500 * MS + 1, True), (YEAR_NS, True), (10**30, True),
])
def test_the_future_tolerance_is_the_boundary(ahead_ns: int, stale: bool) -> None:
    gate = Gate(GateConfig(future_tolerance_ns=500 * MS))
    now = 5_000 * MS
    gate.on_perception(now + ahead_ns)
    gate.on_vehicle_state(now, 10.0)
    gate.on_command(CRUISE, now)
    out = gate.tick(now)
    assert (out.mode != GateMode.NORMAL) == stale
    assert bool(events_of(out, "clock_skew")) == stale
    assert_wire_safe(out)


def test_a_stamp_within_the_tolerance_keeps_its_input_fresh_no_longer_than_the_timeout() -> None:
    config = GateConfig(perception_timeout_ns=300 * MS)
    gate = Gate(config)
    now = 5_000 * MS
    gate.on_perception(now + 400 * MS)  # the camera's clock runs 400 ms ahead
    for t in range(now, now + 2000 * MS, TICK_NS):
        gate.on_vehicle_state(t, 10.0)
        gate.on_command(CRUISE, t)
        out = gate.tick(t)
        assert (out.mode == GateMode.NORMAL) == (t <= now + 700 * MS), t


@pytest.mark.parametrize("inp", [VEHICLE_STATE, PLANNER])
def test_a_future_state_or_plan_stamp_is_stale_too(inp: str) -> None:
    gate = Gate()
    now = 5_000 * MS
    ahead = {VEHICLE_STATE: 0, PLANNER: 0, inp: 2_000 * MS}
    gate.on_perception(now, None)
    gate.on_vehicle_state(now + ahead[VEHICLE_STATE], 10.0)
    gate.on_command(CRUISE, now + ahead[PLANNER])
    out = gate.tick(now)
    assert out.mode == GateMode.COMFORTABLE_STOP
    assert [d["input"] for d in events_of(out, "clock_skew")] == [inp]


def test_a_clock_stepped_back_makes_every_input_look_ahead_and_stops() -> None:
    feed = make_feed(closest_m=None)
    feed.run_until(10_000 * MS)
    feed.now_ns -= 2_000 * MS  # the gate's host steps its clock back 2 s (NTP step)
    feed.perception_on = feed.state_on = feed.planner_on = False
    out = feed.gate.tick(feed.now_ns)
    assert out.mode == GateMode.COMFORTABLE_STOP
    assert {d["input"] for d in events_of(out, "clock_skew")} == {PERCEPTION, VEHICLE_STATE,
                                                                  PLANNER}
    assert out.command.accel_mps2 >= CRUISE.accel_mps2 - 10.0 * 1e-3 - 1e-9  # dt counts as 1 ms


def test_a_nan_speed_never_turns_an_emergency_stop_into_a_comfortable_one() -> None:
    feed = make_feed(closest_m=40.0)  # 15 m/s, a stopped car 40 m ahead
    feed.run_until(1000 * MS)
    feed.perception_on = False
    assert feed.run_until(1400 * MS).mode == GateMode.EMERGENCY_STOP
    feed.speed_mps = NAN
    out = feed.run_until(2000 * MS)
    assert out.mode == GateMode.EMERGENCY_STOP
    assert {d["input"] for t, d in feed.events("stale_input") if t > 1400 * MS} == {VEHICLE_STATE}


@pytest.mark.parametrize("speed", [NAN, INF, -INF])
def test_a_non_finite_speed_is_stale_and_the_stop_uses_the_last_valid_speed(speed: float) -> None:
    feed = make_feed(closest_m=40.0)  # fresh perception all along: only the speed goes bad
    feed.run_until(1000 * MS)
    feed.speed_mps = speed
    out = feed.run_until(1000 * MS + TICK_NS)
    # 15 m/s (the last valid speed) towards a stopped car 40 m ahead: only an emergency stop
    # keeps the margin; before, a NaN speed made this a comfortable stop.
    assert out.mode == GateMode.EMERGENCY_STOP
    (stale,) = events_of(out, "stale_input")
    assert stale == {"input": VEHICLE_STATE, "age_ns": TICK_NS, "timeout_ns": 200 * MS,
                     "reason": NON_FINITE, "field": "speed_mps"}
    (stop,) = events_of(out, "minimal_risk_stop")
    assert stop["speed_mps"] == 15.0
    assert_wire_safe(out)


@pytest.mark.parametrize(("closest_m", "closest_speed_mps", "field"), [
    (NAN, 0.0, "closest_in_path_m"), (INF, 0.0, "closest_in_path_m"),
    (-INF, 0.0, "closest_in_path_m"), (20.0, NAN, "closest_speed_mps"),
    (20.0, INF, "closest_speed_mps"),
])
def test_a_non_finite_perception_is_discarded_and_stale(
        closest_m: float, closest_speed_mps: float, field: str) -> None:
    feed = make_feed(closest_m=250.0)
    feed.run_until(1000 * MS)
    feed.closest_m, feed.closest_speed_mps = closest_m, closest_speed_mps
    out = feed.run_until(1000 * MS + TICK_NS)
    assert out.mode == GateMode.COMFORTABLE_STOP  # the car as last validly seen: 250 m away
    (stale,) = events_of(out, "stale_input")
    assert (stale["input"], stale["reason"], stale["field"]) == (PERCEPTION, NON_FINITE, field)
    (stop,) = events_of(out, "minimal_risk_stop")
    assert stop["closest_in_path_m"] == 250.0
    assert_wire_safe(out)


@pytest.mark.parametrize("field", ["steering_tire_angle_rad", "steering_tire_rotation_rate_radps",
                                   "target_speed_mps", "accel_mps2", "jerk_mps3"])
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_a_non_finite_command_field_is_stale_and_never_published(field: str,
                                                                 value: float) -> None:
    feed = make_feed(closest_m=250.0)
    feed.run_until(1000 * MS)
    feed.command = replace(CRUISE, **{field: value})  # type: ignore[arg-type]
    out = feed.run_until(2000 * MS)
    assert out.mode == GateMode.COMFORTABLE_STOP
    stale = [d for t, d in feed.events("stale_input") if t > 1000 * MS]
    assert stale == [{"input": PLANNER, "age_ns": TICK_NS, "timeout_ns": 300 * MS,
                      "reason": NON_FINITE, "field": field}]
    for _, o in feed.outputs:
        assert_wire_safe(o)
    feed.command = CRUISE  # valid plans again: back to normal after the hold
    assert feed.run_until(3000 * MS).mode == GateMode.NORMAL


@pytest.mark.parametrize("stamp", [NAN, INF, -INF])
@pytest.mark.parametrize("inp", [PERCEPTION, VEHICLE_STATE, PLANNER])
def test_a_non_finite_stamp_is_stale(inp: str, stamp: float) -> None:
    gate = Gate()
    now = 5_000 * MS
    stamps: dict[str, float] = {PERCEPTION: now, VEHICLE_STATE: now, PLANNER: now, inp: stamp}
    gate.on_perception(stamps[PERCEPTION], None)  # type: ignore[arg-type]
    gate.on_vehicle_state(stamps[VEHICLE_STATE], 10.0)  # type: ignore[arg-type]
    gate.on_command(CRUISE, stamps[PLANNER])  # type: ignore[arg-type]
    out = gate.tick(now)
    assert out.mode == GateMode.COMFORTABLE_STOP
    (stale,) = events_of(out, "stale_input")
    assert (stale["input"], stale["field"]) == (inp, "stamp_ns")
    assert_wire_safe(out)


def test_a_command_with_a_non_finite_stamp_of_its_own_is_discarded() -> None:
    feed = make_feed()
    feed.run_until(1000 * MS)
    feed.command = replace(CRUISE, stamp_ns=NAN)  # type: ignore[arg-type]
    out = feed.run_until(1000 * MS + TICK_NS)
    assert out.mode == GateMode.COMFORTABLE_STOP
    (stale,) = events_of(out, "stale_input")
    assert (stale["input"], stale["field"]) == (PLANNER, "command_stamp_ns")
    assert_wire_safe(out)


def test_absurd_integer_stamps_and_clocks_never_overflow() -> None:
    gate = Gate()
    for now in (0, 10**30, -(10**30), 10**400, 3):
        gate.on_perception(-now, 30.0, 0.0)
        gate.on_vehicle_state(now - 10**300, 1e300)
        gate.on_command(ControlCommand(accel_mps2=1e308, target_speed_mps=-1e308), now)
        out = gate.tick(now)
        assert out.mode != GateMode.NORMAL
        assert_wire_safe(out)


@pytest.mark.parametrize("now", [NAN, INF, -INF])
def test_a_non_finite_gate_clock_is_refused_with_its_name(now: float) -> None:
    with pytest.raises(ValueError, match="now_ns"):
        Gate().tick(now)  # type: ignore[arg-type]


@pytest.mark.parametrize(("option", "value"), [
    ("perception_timeout_ns", 0), ("vehicle_state_timeout_ns", -1),
    ("comfortable_decel_mps2", NAN), ("emergency_decel_mps2", INF),
    ("future_tolerance_ns", -1), ("min_dt_s", 0.0),
])
def test_a_bad_gate_config_names_the_option(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"GateConfig.{option} must be"):
        GateConfig(**{option: value})  # type: ignore[arg-type]
