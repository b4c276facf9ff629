"""Command limits and the pure clamp applied to every command before it is published.

The clamp is the last line of defence between the planner and the vehicle: whatever it is
given, its output is inside the limits, and it says which fields it had to change so the
service layer can count each kind of clamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from common.control import ControlCommand

# Names reported by :func:`clamp`; one counter label each.
SPEED = "target_speed"
ACCEL = "accel"
JERK = "jerk"
STEER = "steering_angle"
STEER_RATE = "steering_rate"
CLAMP_FIELDS: tuple[str, ...] = (SPEED, ACCEL, JERK, STEER, STEER_RATE)


@dataclass(frozen=True, slots=True)
class CommandLimits:
    """Hard limits for a passenger car.

    Decel 6 m/s² is a firm emergency stop on dry asphalt; 10 m/s³ lets an emergency stop
    reach full braking in 0.6 s while comfort costs keep normal driving far below it.
    Steering is the road-wheel (tire) angle, not the steering-wheel angle.
    """

    max_speed_mps: float = 40.0
    max_accel_mps2: float = 3.0
    max_decel_mps2: float = 6.0  # positive magnitude
    max_jerk_mps3: float = 10.0
    max_steer_rad: float = 0.6
    max_steer_rate_radps: float = 0.8

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _clip(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


def _value_clamp(value: float, lo: float, hi: float, fallback: float) -> tuple[float, bool]:
    """Clip to [lo, hi]; a NaN becomes ``fallback``. Returns (value, was_changed)."""
    if math.isnan(value):
        return fallback, True
    if value < lo or value > hi:
        return _clip(value, lo, hi), True
    return value, False


def _rate_clamp(
    value: float, prev: float | None, dt_s: float, max_rate: float, requested_rate: float
) -> tuple[float, float, bool]:
    """Limit the change from ``prev`` to ``max_rate``·dt. Returns (value, rate, was_changed).

    Without a previous value there is nothing to differentiate, so the requested rate field
    itself is what gets limited.
    """
    if prev is None:
        rate, changed = _value_clamp(requested_rate, -max_rate, max_rate, 0.0)
        return value, rate, changed
    rate = (value - prev) / dt_s
    if abs(rate) > max_rate:
        rate = math.copysign(max_rate, rate)
        return prev + rate * dt_s, rate, True
    return value, rate, False


def clamp(
    cmd: ControlCommand,
    prev_cmd: ControlCommand | None,
    dt_s: float,
    limits: CommandLimits,
) -> tuple[ControlCommand, frozenset[str]]:
    """Clamp ``cmd`` to ``limits`` given the previously published command.

    Contract:
    - target speed in [0, max_speed]; accel in [-max_decel, max_accel];
      steering angle in ±max_steer;
    - with ``prev_cmd`` and ``dt_s > 0``: |accel - prev accel| ≤ max_jerk·dt and
      |steer - prev steer| ≤ max_steer_rate·dt, and the output ``jerk_mps3`` /
      ``steering_tire_rotation_rate_radps`` are the realised rates of change; without a
      previous command those two fields are clipped to their limits as given;
    - a previous command that was itself outside the value limits is first clipped, so
      the output never leaves the value limits;
    - NaN values are replaced (speed → 0, accel → full braking, steering → previous or 0)
      and reported as clamped.
    Returns the new command and the names (from :data:`CLAMP_FIELDS`) of the fields that
    were outside their limits; the stamp is passed through.
    """
    clamped: set[str] = set()
    has_prev = prev_cmd is not None and dt_s > 0.0

    speed, changed = _value_clamp(cmd.target_speed_mps, 0.0, limits.max_speed_mps, 0.0)
    if changed:
        clamped.add(SPEED)

    accel, changed = _value_clamp(
        cmd.accel_mps2, -limits.max_decel_mps2, limits.max_accel_mps2, -limits.max_decel_mps2
    )
    if changed:
        clamped.add(ACCEL)
    prev_accel = None
    if has_prev and prev_cmd is not None:
        prev_accel = _clip(prev_cmd.accel_mps2, -limits.max_decel_mps2, limits.max_accel_mps2)
        if math.isnan(prev_accel):
            prev_accel = -limits.max_decel_mps2
    accel, jerk, changed = _rate_clamp(
        accel, prev_accel, dt_s, limits.max_jerk_mps3, cmd.jerk_mps3
    )
    if changed:
        clamped.add(JERK)
    # A rate step ends between the previous and the requested value, both inside the
    # value limits; the clip only absorbs floating-point rounding at the bounds.
    accel = _clip(accel, -limits.max_decel_mps2, limits.max_accel_mps2)

    prev_steer = None
    if has_prev and prev_cmd is not None:
        prev_steer = _clip(prev_cmd.steering_tire_angle_rad, -limits.max_steer_rad,
                           limits.max_steer_rad)
        if math.isnan(prev_steer):
            prev_steer = 0.0
    steer, changed = _value_clamp(
        cmd.steering_tire_angle_rad,
        -limits.max_steer_rad,
        limits.max_steer_rad,
        prev_steer if prev_steer is not None else 0.0,
    )
    if changed:
        clamped.add(STEER)
    steer, steer_rate, changed = _rate_clamp(
        steer, prev_steer, dt_s, limits.max_steer_rate_radps,
        cmd.steering_tire_rotation_rate_radps,
    )
    if changed:
        clamped.add(STEER_RATE)
    steer = _clip(steer, -limits.max_steer_rad, limits.max_steer_rad)

    out = replace(
        cmd,
        target_speed_mps=speed,
        accel_mps2=accel,
        jerk_mps3=jerk,
        steering_tire_angle_rad=steer,
        steering_tire_rotation_rate_radps=steer_rate,
    )
    return out, frozenset(clamped)
