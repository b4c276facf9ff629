"""Tracking controller: bounded errors on a straight line and on a circle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.control import ControlCommand
from planning.controller import ControllerConfig, TrajectoryController
from planning.types import Trajectory, VehicleParams

VEHICLE = VehicleParams()


def straight(speed_mps: float, duration_s: float = 40.0) -> Trajectory:
    t = np.arange(0.0, duration_s, 0.1)
    return Trajectory(
        t_s=t, x_m=speed_mps * t, y_m=np.zeros_like(t), v_mps=np.full_like(t, speed_mps),
        yaw_rad=np.zeros_like(t), accel_mps2=np.zeros_like(t), steer_rad=np.zeros_like(t),
    )


def circle(radius_m: float, speed_mps: float, duration_s: float = 40.0) -> Trajectory:
    """Left turn starting at the origin heading +x (centre at (0, R))."""
    t = np.arange(0.0, duration_s, 0.1)
    theta = speed_mps * t / radius_m
    return Trajectory(
        t_s=t, x_m=radius_m * np.sin(theta), y_m=radius_m * (1.0 - np.cos(theta)),
        v_mps=np.full_like(t, speed_mps), yaw_rad=theta, accel_mps2=np.zeros_like(t),
        steer_rad=np.full_like(t, math.atan(VEHICLE.wheelbase_m / radius_m)),
    )


def simulate(
    traj: Trajectory, *, x: float, y: float, yaw: float, speed: float, steer: float,
    duration_s: float = 20.0, dt_s: float = 0.02,
) -> tuple[np.ndarray, np.ndarray, list[ControlCommand]]:
    """Kinematic bicycle driven by the controller in the trajectory's (fixed) frame."""
    ctrl = TrajectoryController(ControllerConfig(), VEHICLE)
    poses, speeds, cmds = [], [], []
    for _ in range(round(duration_s / dt_s)):
        cmd = ctrl.step(traj, speed_mps=speed, dt_s=dt_s, x_m=x, y_m=y, yaw_rad=yaw)
        cmds.append(cmd)
        # Steering actuator: follows the command at up to the rate limit.
        limit = ctrl.config.limits.max_steer_rate_radps * dt_s
        steer += min(max(cmd.steering_tire_angle_rad - steer, -limit), limit)
        speed = max(speed + cmd.accel_mps2 * dt_s, 0.0)
        yaw_rate = speed * math.tan(steer) / VEHICLE.wheelbase_m
        x += speed * math.cos(yaw + 0.5 * yaw_rate * dt_s) * dt_s
        y += speed * math.sin(yaw + 0.5 * yaw_rate * dt_s) * dt_s
        yaw += yaw_rate * dt_s
        poses.append((x, y))
        speeds.append(speed)
    return np.array(poses), np.array(speeds), cmds


def test_tracks_a_straight_line_from_an_offset_start() -> None:
    traj = straight(10.0)
    poses, speeds, cmds = simulate(traj, x=0.0, y=0.8, yaw=0.0, speed=7.0, steer=0.0)
    lateral = np.abs(poses[:, 1])
    settled = slice(round(6.0 / 0.02), None)
    assert lateral.max() < 1.0  # no overshoot beyond the initial offset
    assert lateral[settled].max() < 0.05
    assert np.abs(speeds[settled] - 10.0).max() < 0.2
    limits = ControllerConfig().limits
    assert max(abs(c.steering_tire_angle_rad) for c in cmds) <= limits.max_steer_rad
    assert all(-limits.max_decel_mps2 <= c.accel_mps2 <= limits.max_accel_mps2 for c in cmds)


@pytest.mark.parametrize(("radius_m", "speed_mps"), [(40.0, 8.0), (100.0, 15.0)])
def test_tracks_a_circle_with_bounded_error(radius_m: float, speed_mps: float) -> None:
    traj = circle(radius_m, speed_mps)
    poses, speeds, _ = simulate(
        traj, x=0.0, y=0.0, yaw=0.0, speed=speed_mps,
        steer=math.atan(VEHICLE.wheelbase_m / radius_m), duration_s=15.0,
    )
    radial_error = np.abs(np.hypot(poses[:, 0], poses[:, 1] - radius_m) - radius_m)
    assert radial_error.max() < 0.25
    assert radial_error[-100:].max() < 0.1
    assert np.abs(speeds - speed_mps).max() < 0.3


def test_stop_target_holds_the_brake_and_a_start_releases_it() -> None:
    t = np.arange(0.0, 5.0, 0.1)
    zeros = np.zeros_like(t)
    stopped = Trajectory(t, zeros, zeros, zeros, zeros, zeros, zeros)
    ctrl = TrajectoryController()
    hold = ctrl.step(stopped, speed_mps=0.0, dt_s=0.1)
    assert hold.accel_mps2 < 0.0
    assert hold.target_speed_mps == 0.0
    # A plan that starts from standstill is slow at first; it must not be held.
    v = np.minimum(0.5 * t * t, 3.0)
    a = np.where(v < 3.0, t, 0.0)
    start = Trajectory(t, np.cumsum(v) * 0.1, zeros, v, zeros, a, zeros)
    go = ctrl.step(start, speed_mps=0.0, dt_s=0.1)
    assert go.accel_mps2 > 0.0
    assert go.jerk_mps3 == pytest.approx((go.accel_mps2 - hold.accel_mps2) / 0.1)
