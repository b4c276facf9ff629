"""Trajectory tracking: pure pursuit for steering, PID + feed-forward for acceleration.

The controller follows a :class:`planning.types.Trajectory` given in the ego frame at the
planning instant. The caller passes the ego pose relative to that frame (all zeros right
after planning; dead-reckoned when control runs faster than planning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from common.control import ControlCommand
from planning.limits import CommandLimits
from planning.types import Trajectory, VehicleParams

__all__ = ["ControllerConfig", "TrajectoryController"]


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Gains and geometry of the tracking controller."""

    lookahead_min_m: float = 4.0
    lookahead_gain_s: float = 0.5  # lookahead = min + gain · speed
    lookahead_max_m: float = 30.0
    # Actuators lag: speed target and feed-forward accel are read this far ahead of the
    # nearest trajectory point (also what makes a fresh plan that starts at the present
    # speed and accel produce a change).
    preview_s: float = 0.3
    kp_per_s: float = 0.8  # speed error [m/s] → accel [m/s²]
    ki_per_s2: float = 0.15
    kd: float = 0.0  # [s⁰] speed-error rate → accel; off by default (noisy speed)
    integral_limit_m: float = 3.0  # anti-windup bound on ∫(speed error) dt
    integral_band_mps: float = 1.0  # integrate only small errors (large ones: P acts)
    stop_speed_mps: float = 0.2  # below this, when the plan stays stopped, hold the brake
    stop_window_s: float = 1.0  # "stays stopped": no speed above stop_speed this far ahead
    stop_hold_accel_mps2: float = -1.0
    limits: CommandLimits = field(default_factory=CommandLimits)


def _interp(t: float, ts: np.ndarray, values: np.ndarray) -> float:
    return float(np.interp(t, ts, values))


class TrajectoryController:
    """Stateful tracker (integral term and previous command); one per vehicle."""

    def __init__(
        self, config: ControllerConfig | None = None, vehicle: VehicleParams | None = None
    ) -> None:
        self.config = config if config is not None else ControllerConfig()
        self.vehicle = vehicle if vehicle is not None else VehicleParams()
        self.reset()

    def reset(self) -> None:
        """Forget the integral term and the previous command (e.g. after a takeover)."""
        self._integral_m = 0.0
        self._prev_error_mps: float | None = None
        self._prev: ControlCommand | None = None

    def step(
        self,
        trajectory: Trajectory,
        *,
        speed_mps: float,
        dt_s: float,
        x_m: float = 0.0,
        y_m: float = 0.0,
        yaw_rad: float = 0.0,
    ) -> ControlCommand:
        """One control step towards ``trajectory``.

        (x_m, y_m, yaw_rad): rear-axle pose in the trajectory's frame. ``dt_s`` > 0 is the
        time since the previous step (for the integral and the rate fields). The command's
        steering angle and accel are within the configured limits; its rate fields are the
        change from the previous command (0 on the first step). ``stamp_ns`` is left 0.
        """
        cfg = self.config
        lim = cfg.limits
        if len(trajectory) == 0:
            raise ValueError("empty trajectory")
        nearest = self._nearest_index(trajectory, x_m, y_m)
        t_near = float(trajectory.t_s[nearest])
        t_ref = t_near + cfg.preview_s
        v_ref = max(_interp(t_ref, trajectory.t_s, trajectory.v_mps), 0.0)
        a_ff = _interp(t_ref, trajectory.t_s, trajectory.accel_mps2)

        # Feedback on the speed the plan wants *now*; comparing with the previewed speed
        # would add the feed-forward a second time (and a plan that starts from the
        # measured accel would then run away from it cycle after cycle).
        error = float(trajectory.v_mps[nearest]) - speed_mps
        if abs(error) < cfg.integral_band_mps:
            self._integral_m = min(
                max(self._integral_m + error * dt_s, -cfg.integral_limit_m), cfg.integral_limit_m
            )
        d_error = 0.0 if self._prev_error_mps is None else (error - self._prev_error_mps) / dt_s
        self._prev_error_mps = error
        accel = a_ff + cfg.kp_per_s * error + cfg.ki_per_s2 * self._integral_m + cfg.kd * d_error
        window = (trajectory.t_s >= trajectory.t_s[nearest]) & (
            trajectory.t_s <= trajectory.t_s[nearest] + cfg.stop_window_s
        )
        stays_stopped = float(trajectory.v_mps[window].max()) < cfg.stop_speed_mps
        if stays_stopped and speed_mps < cfg.stop_speed_mps:
            # Standing still and the plan stays stopped: hold the brake, drop the
            # integral so the next start does not lurch. (A plan that starts from
            # standstill is slow at first; it must not be mistaken for a stop.)
            accel = min(accel, cfg.stop_hold_accel_mps2)
            self._integral_m = 0.0
        accel = min(max(accel, -lim.max_decel_mps2), lim.max_accel_mps2)

        steer = self._pure_pursuit(trajectory, nearest, speed_mps, x_m, y_m, yaw_rad)
        steer = min(max(steer, -lim.max_steer_rad), lim.max_steer_rad)

        prev = self._prev
        cmd = ControlCommand(
            steering_tire_angle_rad=steer,
            steering_tire_rotation_rate_radps=(
                0.0 if prev is None else (steer - prev.steering_tire_angle_rad) / dt_s
            ),
            target_speed_mps=v_ref,
            accel_mps2=accel,
            jerk_mps3=0.0 if prev is None else (accel - prev.accel_mps2) / dt_s,
        )
        self._prev = cmd
        return cmd

    @staticmethod
    def _nearest_index(trajectory: Trajectory, x_m: float, y_m: float) -> int:
        dist2 = (trajectory.x_m - x_m) ** 2 + (trajectory.y_m - y_m) ** 2
        return int(np.argmin(dist2))

    def _pure_pursuit(
        self,
        trajectory: Trajectory,
        nearest: int,
        speed_mps: float,
        x_m: float,
        y_m: float,
        yaw_rad: float,
    ) -> float:
        """Steering angle whose arc from the rear axle passes through the lookahead point."""
        cfg = self.config
        lookahead = min(
            max(cfg.lookahead_min_m + cfg.lookahead_gain_s * abs(speed_mps), cfg.lookahead_min_m),
            cfg.lookahead_max_m,
        )
        xs, ys = trajectory.x_m[nearest:], trajectory.y_m[nearest:]
        dist = np.hypot(xs - x_m, ys - y_m)
        beyond = np.nonzero(dist >= lookahead)[0]
        if beyond.size > 0:
            tx, ty = float(xs[beyond[0]]), float(ys[beyond[0]])
        else:
            # Trajectory ends inside the lookahead circle: extend it along its last heading.
            end_yaw = float(trajectory.yaw_rad[-1])
            extra = lookahead - float(dist[-1])
            tx = float(xs[-1]) + extra * math.cos(end_yaw)
            ty = float(ys[-1]) + extra * math.sin(end_yaw)
        dx, dy = tx - x_m, ty - y_m
        c, s = math.cos(yaw_rad), math.sin(yaw_rad)
        local_x, local_y = c * dx + s * dy, -s * dx + c * dy
        dist_sq = local_x * local_x + local_y * local_y
        if dist_sq < 1e-9:
            return 0.0
        curvature = 2.0 * local_y / dist_sq
        return math.atan(self.vehicle.wheelbase_m * curvature)
