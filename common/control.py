"""The vehicle control command, defined once: what the gate sends and what the vehicle applies.

Planning's controller and gate produce it; the simulated vehicle applies it. On the wire it is
the value of ``vehicle.control`` (``services.messages.VehicleControl``), which adds the
addressing, sequencing, validity and mode of a published command; the field names are the same.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlCommand:
    """Autoware-like longitudinal + lateral command.

    - ``steering_tire_angle_rad``: steering tire angle, left positive [rad].
    - ``steering_tire_rotation_rate_radps``: the rate towards that angle [rad/s]. The planner
      reports its realised rate of change; a vehicle reads its magnitude as a cap below its own
      actuator limit, and 0 as "no rate asked" (its actuator limit applies).
    - ``target_speed_mps``: do not accelerate or brake past this speed [m/s].
    - ``accel_mps2``: requested acceleration, negative brakes [m/s²].
    - ``jerk_mps3``: the realised rate of change of ``accel_mps2`` [m/s³].
    - ``stamp_ns``: filled by the service layer; pure code leaves it at 0.
    """

    steering_tire_angle_rad: float = 0.0
    steering_tire_rotation_rate_radps: float = 0.0
    target_speed_mps: float = 0.0
    accel_mps2: float = 0.0
    jerk_mps3: float = 0.0
    stamp_ns: int = 0
