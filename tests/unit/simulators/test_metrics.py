"""The comfort jerk: a passenger's jerk over 0.5 s, not the actuator's 10 ms steps."""

from __future__ import annotations

import pytest

from simulators.metrics import ComfortJerk


def _feed(jerk: ComfortJerk, accel_at, duration_s: float, dt_s: float = 0.01) -> None:
    n = round(duration_s / dt_s)
    for i in range(1, n + 1):
        jerk.add(i * dt_s, accel_at(i * dt_s))


def test_a_steady_ramp_reads_its_slope() -> None:
    jerk = ComfortJerk()
    _feed(jerk, lambda t: -2.0 * t, 3.0)  # braking builds at 2 m/s³
    assert jerk.max_abs() == pytest.approx(2.0, rel=0.02)


def test_a_held_command_stepping_the_actuator_every_50_ms_is_not_a_jolt() -> None:
    # A 20 Hz command raising the accel by 0.1 m/s² each cycle (a 2 m/s³ ramp), applied by
    # an actuator that reaches each new value within one 10 ms step (30 m/s³ raw).
    jerk = ComfortJerk()
    _feed(jerk, lambda t: 0.1 * int(t / 0.05), 3.0)
    assert jerk.max_abs() == pytest.approx(2.0, rel=0.1)


def test_a_brake_slammed_on_is_a_jolt() -> None:
    jerk = ComfortJerk()
    _feed(jerk, lambda t: 0.0 if t < 1.0 else -6.0, 2.0)
    assert jerk.max_abs() > 8.37  # nuPlan's comfort bound on |jerk|


def test_too_short_a_run_has_no_jerk() -> None:
    jerk = ComfortJerk()
    _feed(jerk, lambda t: 5.0 * t, 0.15)
    assert jerk.max_abs() == 0.0
