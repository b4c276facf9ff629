"""Command clamp: property tests — outputs within limits, clamp report exact."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.control import ControlCommand
from planning.limits import (
    ACCEL,
    CLAMP_FIELDS,
    JERK,
    SPEED,
    STEER,
    STEER_RATE,
    CommandLimits,
    clamp,
)

values = st.floats(min_value=-100.0, max_value=100.0, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=0.05, max_value=50.0, allow_nan=False, allow_infinity=False)
dts = st.floats(min_value=1e-3, max_value=1.0, allow_nan=False, allow_infinity=False)


@st.composite
def limits_st(draw: st.DrawFn) -> CommandLimits:
    return CommandLimits(
        max_speed_mps=draw(positive), max_accel_mps2=draw(positive),
        max_decel_mps2=draw(positive), max_jerk_mps3=draw(positive),
        max_steer_rad=draw(positive), max_steer_rate_radps=draw(positive),
    )


@st.composite
def commands(draw: st.DrawFn) -> ControlCommand:
    return ControlCommand(
        steering_tire_angle_rad=draw(values),
        steering_tire_rotation_rate_radps=draw(values),
        target_speed_mps=draw(values),
        accel_mps2=draw(values),
        jerk_mps3=draw(values),
        stamp_ns=draw(st.integers(min_value=0, max_value=2**62)),
    )


def outside(value: float, lo: float, hi: float) -> bool:
    return not lo <= value <= hi


def expected_clamps(
    cmd: ControlCommand, prev: ControlCommand | None, dt_s: float, lim: CommandLimits
) -> set[str]:
    """The contract, written out: which fields are outside their limits."""
    expected = set()
    if outside(cmd.target_speed_mps, 0.0, lim.max_speed_mps):
        expected.add(SPEED)
    if outside(cmd.accel_mps2, -lim.max_decel_mps2, lim.max_accel_mps2):
        expected.add(ACCEL)
    if outside(cmd.steering_tire_angle_rad, -lim.max_steer_rad, lim.max_steer_rad):
        expected.add(STEER)
    if prev is None:
        if abs(cmd.jerk_mps3) > lim.max_jerk_mps3:
            expected.add(JERK)
        if abs(cmd.steering_tire_rotation_rate_radps) > lim.max_steer_rate_radps:
            expected.add(STEER_RATE)
        return expected
    accel = min(max(cmd.accel_mps2, -lim.max_decel_mps2), lim.max_accel_mps2)
    prev_accel = min(max(prev.accel_mps2, -lim.max_decel_mps2), lim.max_accel_mps2)
    if abs((accel - prev_accel) / dt_s) > lim.max_jerk_mps3:
        expected.add(JERK)
    steer = min(max(cmd.steering_tire_angle_rad, -lim.max_steer_rad), lim.max_steer_rad)
    prev_steer = min(max(prev.steering_tire_angle_rad, -lim.max_steer_rad), lim.max_steer_rad)
    if abs((steer - prev_steer) / dt_s) > lim.max_steer_rate_radps:
        expected.add(STEER_RATE)
    return expected


def assert_within(out: ControlCommand, prev: ControlCommand | None, dt_s: float,
                  lim: CommandLimits) -> None:
    eps = 1e-9
    assert 0.0 <= out.target_speed_mps <= lim.max_speed_mps
    assert -lim.max_decel_mps2 <= out.accel_mps2 <= lim.max_accel_mps2
    assert abs(out.steering_tire_angle_rad) <= lim.max_steer_rad
    assert abs(out.jerk_mps3) <= lim.max_jerk_mps3 * (1 + eps)
    assert abs(out.steering_tire_rotation_rate_radps) <= lim.max_steer_rate_radps * (1 + eps)
    if prev is not None:
        prev_accel = min(max(prev.accel_mps2, -lim.max_decel_mps2), lim.max_accel_mps2)
        prev_steer = min(max(prev.steering_tire_angle_rad, -lim.max_steer_rad),
                         lim.max_steer_rad)
        slack = 1e-9 * (1.0 + abs(prev_accel) + abs(prev_steer))
        assert abs(out.accel_mps2 - prev_accel) <= lim.max_jerk_mps3 * dt_s * (1 + eps) + slack
        assert abs(out.steering_tire_angle_rad - prev_steer) <= (
            lim.max_steer_rate_radps * dt_s * (1 + eps) + slack
        )


@settings(max_examples=400, deadline=None)
@given(cmd=commands(), prev=st.none() | commands(), dt_s=dts, lim=limits_st())
def test_clamp_output_within_limits_and_report_exact(
    cmd: ControlCommand, prev: ControlCommand | None, dt_s: float, lim: CommandLimits
) -> None:
    out, clamped = clamp(cmd, prev, dt_s, lim)
    assert_within(out, prev, dt_s, lim)
    assert clamped == expected_clamps(cmd, prev, dt_s, lim)
    assert clamped <= set(CLAMP_FIELDS)
    # Untouched fields pass through exactly; the stamp always does.
    assert out.stamp_ns == cmd.stamp_ns
    if SPEED not in clamped:
        assert out.target_speed_mps == cmd.target_speed_mps
    if not clamped & {ACCEL, JERK}:
        assert out.accel_mps2 == cmd.accel_mps2
    if not clamped & {STEER, STEER_RATE}:
        assert out.steering_tire_angle_rad == cmd.steering_tire_angle_rad


@settings(max_examples=100, deadline=None)
@given(seq=st.lists(commands(), min_size=1, max_size=30), dt_s=dts, lim=limits_st())
def test_clamp_counter_over_a_stream_matches_the_violations(
    seq: list[ControlCommand], dt_s: float, lim: CommandLimits
) -> None:
    """Counting each reported clamp (as the service does) gives the violation counts."""
    counter: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    prev: ControlCommand | None = None
    for cmd in seq:
        expected.update(expected_clamps(cmd, prev, dt_s, lim))
        out, clamped = clamp(cmd, prev, dt_s, lim)
        counter.update(clamped)
        assert_within(out, prev, dt_s, lim)
        prev = out
    assert counter == expected


def test_nan_fields_become_safe_values_and_are_reported() -> None:
    lim = CommandLimits()
    prev = ControlCommand(steering_tire_angle_rad=0.1, accel_mps2=-1.0)
    cmd = ControlCommand(
        steering_tire_angle_rad=math.nan, target_speed_mps=math.nan, accel_mps2=math.nan
    )
    out, clamped = clamp(cmd, prev, 0.1, lim)
    assert {SPEED, ACCEL, STEER} <= clamped
    assert out.target_speed_mps == 0.0
    assert out.accel_mps2 == pytest.approx(-1.0 - lim.max_jerk_mps3 * 0.1)  # braking, jerk-limited
    assert out.steering_tire_angle_rad == pytest.approx(0.1)  # held
    assert all(math.isfinite(v) for v in (out.jerk_mps3, out.steering_tire_rotation_rate_radps))


def test_in_range_command_passes_unchanged() -> None:
    lim = CommandLimits()
    prev = ControlCommand(steering_tire_angle_rad=0.05, target_speed_mps=10.0, accel_mps2=0.5)
    cmd = ControlCommand(steering_tire_angle_rad=0.06, target_speed_mps=10.2, accel_mps2=0.7,
                         stamp_ns=42)
    out, clamped = clamp(cmd, prev, 0.1, lim)
    assert clamped == frozenset()
    assert out.accel_mps2 == cmd.accel_mps2
    assert out.jerk_mps3 == pytest.approx(2.0)
    assert out.steering_tire_rotation_rate_radps == pytest.approx(0.1)


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_jerk"):
        CommandLimits(max_jerk_mps3=0.0)
