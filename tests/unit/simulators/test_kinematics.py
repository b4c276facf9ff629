"""Kinematic bicycle model: turning radius, braking distance, actuator limits."""

from __future__ import annotations

import math

import pytest

from common.control import ControlCommand
from simulators.kinematics import ActuatorLimits, BicycleState, step_bicycle

WHEELBASE_M = 2.8
FREE = ActuatorLimits(max_steer_rad=1.0, max_steer_rate_radps=100.0, max_accel_mps2=50.0,
                      max_decel_mps2=50.0, max_jerk_mps3=1e9)


@pytest.mark.parametrize("steer_rad", [0.05, 0.2, -0.3])
def test_constant_steer_turns_on_radius_wheelbase_over_tan_steer(steer_rad: float) -> None:
    radius = WHEELBASE_M / math.tan(steer_rad)
    state = BicycleState(0.0, 0.0, 0.0, 8.0, steer_rad=steer_rad)
    cmd = ControlCommand(steering_tire_angle_rad=steer_rad, accel_mps2=0.0, target_speed_mps=8.0)
    # the centre of the circle lies on the rear-axle normal, `radius` to the left
    cx, cy = 0.0, radius
    for _ in range(500):
        state = step_bicycle(state, cmd, 0.01, WHEELBASE_M, FREE)
        assert math.hypot(state.x_m - cx, state.y_m - cy) == pytest.approx(abs(radius), rel=1e-6)
    assert state.yaw_rate_radps == pytest.approx(8.0 / radius, rel=1e-6)


def test_braking_distance_is_v_squared_over_two_a() -> None:
    v0, decel = 20.0, 6.0
    state = BicycleState(0.0, 0.0, 0.0, v0)
    cmd = ControlCommand(accel_mps2=-decel, target_speed_mps=0.0)
    steps = 0
    while state.speed_mps > 0 and steps < 10_000:
        state = step_bicycle(state, cmd, 0.01, WHEELBASE_M, FREE)
        steps += 1
    assert state.speed_mps == 0.0
    assert state.x_m == pytest.approx(v0**2 / (2 * decel), abs=0.01)
    assert steps * 0.01 == pytest.approx(v0 / decel, abs=0.011)


def test_actuator_limits_clamp_steer_rate_accel_and_jerk() -> None:
    limits = ActuatorLimits(max_steer_rad=0.5, max_steer_rate_radps=0.4, max_accel_mps2=2.0,
                            max_decel_mps2=8.0, max_jerk_mps3=10.0)
    state = BicycleState(0.0, 0.0, 0.0, 10.0)
    full_left_brake = ControlCommand(steering_tire_angle_rad=1.0, accel_mps2=-20.0,
                                     target_speed_mps=0.0)
    state = step_bicycle(state, full_left_brake, 0.1, WHEELBASE_M, limits)
    assert state.steer_rad == pytest.approx(0.04)  # 0.4 rad/s for 0.1 s
    assert state.actuator_accel_mps2 == pytest.approx(-1.0)  # jerk 10 m/s³ for 0.1 s
    for _ in range(50):
        state = step_bicycle(state, full_left_brake, 0.1, WHEELBASE_M, limits)
    assert state.steer_rad == pytest.approx(0.5)  # the steering stop
    assert state.speed_mps == 0.0  # braked to a stop, never reversing
    state = BicycleState(0.0, 0.0, 0.0, 10.0, actuator_accel_mps2=2.0)
    state = step_bicycle(state, ControlCommand(accel_mps2=9.0, target_speed_mps=30.0), 0.1,
                         WHEELBASE_M, limits)
    assert state.actuator_accel_mps2 == pytest.approx(2.0)  # max acceleration


def test_target_speed_caps_the_commanded_acceleration() -> None:
    state = BicycleState(0.0, 0.0, 0.0, 9.0)
    for _ in range(300):
        state = step_bicycle(state, ControlCommand(accel_mps2=2.0, target_speed_mps=10.0), 0.01,
                             WHEELBASE_M, FREE)
    assert state.speed_mps == pytest.approx(10.0, abs=1e-6)
