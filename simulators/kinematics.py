"""Kinematic bicycle model of the ego vehicle, driven by a control command through actuator limits.

The reference point is the rear-axle centre (the ego-frame origin), so the path radius at a
constant tire angle is `wheelbase / tan(steer)`. Longitudinal: the commanded acceleration
(clamped to the accel/decel limits, then jerk-limited) is applied; `target_speed_mps` caps it
so the speed does not run past the target (Autoware-style velocity + accel). The command is
`common.control.ControlCommand`, the one the planning gate sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from common.control import ControlCommand
from simulators.scenario import VehicleSpec


@dataclass(frozen=True)
class ActuatorLimits:
    """Physical limits of the steering and longitudinal actuators."""

    max_steer_rad: float = 0.6
    max_steer_rate_radps: float = 0.8
    max_accel_mps2: float = 3.0
    max_decel_mps2: float = 9.0  # [m/s²] positive number
    max_jerk_mps3: float = 30.0

    @classmethod
    def from_spec(cls, spec: VehicleSpec) -> ActuatorLimits:
        """Limits from a scenario's ego vehicle block."""
        return cls(
            max_steer_rad=spec.max_steer_rad,
            max_steer_rate_radps=spec.max_steer_rate_radps,
            max_accel_mps2=spec.max_accel_mps2,
            max_decel_mps2=spec.max_decel_mps2,
            max_jerk_mps3=spec.max_jerk_mps3,
        )


@dataclass(frozen=True)
class BicycleState:
    """Ego state in the world frame; pose of the rear-axle centre."""

    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float
    accel_mps2: float = 0.0  # [m/s²] measured (zero while standing with the brake held)
    steer_rad: float = 0.0
    yaw_rate_radps: float = 0.0
    actuator_accel_mps2: float = 0.0  # [m/s²] what the powertrain/brakes apply (jerk-limited)
    jerk_mps3: float = 0.0  # [m/s³] of the actuator acceleration over the last step


def _requested_accel(state: BicycleState, cmd: ControlCommand, dt: float) -> float:
    accel = cmd.accel_mps2
    target = cmd.target_speed_mps
    v = state.speed_mps
    if accel >= 0 and v + accel * dt > target:
        accel = max(target - v, 0.0) / dt
    elif accel < 0 and v + accel * dt < target:
        accel = min(target - v, 0.0) / dt
    return accel


def step_bicycle(
    state: BicycleState,
    cmd: ControlCommand,
    dt: float,
    wheelbase_m: float,
    limits: ActuatorLimits,
) -> BicycleState:
    """Advance the bicycle model by `dt` [s] under `cmd`; no reversing (speed stays >= 0)."""
    if dt <= 0:
        return state
    # steering: clamp the target angle, then the rate
    rate = limits.max_steer_rate_radps
    if cmd.steering_tire_rotation_rate_radps:  # 0: no rate asked, the actuator's limit applies
        rate = min(rate, abs(cmd.steering_tire_rotation_rate_radps))
    target_steer = min(max(cmd.steering_tire_angle_rad, -limits.max_steer_rad), limits.max_steer_rad)
    step = min(max(target_steer - state.steer_rad, -rate * dt), rate * dt)
    steer = state.steer_rad + step

    # longitudinal: clamp, then jerk-limit the actuator acceleration
    wanted = _requested_accel(state, cmd, dt)
    wanted = min(max(wanted, -limits.max_decel_mps2), limits.max_accel_mps2)
    max_da = limits.max_jerk_mps3 * dt
    actuator = state.actuator_accel_mps2 + min(max(wanted - state.actuator_accel_mps2, -max_da), max_da)
    v0 = state.speed_mps
    v1 = v0 + actuator * dt
    if v1 < 0.0:  # stops within the step: travel only until standstill
        t_move = v0 / -actuator if actuator < 0 else 0.0
        v1 = 0.0
        dist = v0 * t_move / 2
    else:
        dist = (v0 + v1) / 2 * dt
    v_avg = dist / dt

    # exact arc at the mean tire angle
    mean_steer = (state.steer_rad + steer) / 2
    dyaw = dist * math.tan(mean_steer) / wheelbase_m
    yaw0 = state.yaw_rad
    if abs(dyaw) > 1e-9:
        radius = dist / dyaw
        x = state.x_m + radius * (math.sin(yaw0 + dyaw) - math.sin(yaw0))
        y = state.y_m - radius * (math.cos(yaw0 + dyaw) - math.cos(yaw0))
    else:
        x = state.x_m + dist * math.cos(yaw0)
        y = state.y_m + dist * math.sin(yaw0)
    yaw = math.atan2(math.sin(yaw0 + dyaw), math.cos(yaw0 + dyaw))
    return replace(
        state,
        x_m=x,
        y_m=y,
        yaw_rad=yaw,
        speed_mps=v1,
        accel_mps2=(v1 - v0) / dt,
        steer_rad=steer,
        yaw_rate_radps=v_avg * math.tan(mean_steer) / wheelbase_m,
        actuator_accel_mps2=actuator,
        jerk_mps3=(actuator - state.actuator_accel_mps2) / dt,
    )
