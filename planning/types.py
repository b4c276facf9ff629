"""Plain data types shared by the planner, the controller and the command gate.

The object classes and the control command are the project's shared vocabulary and live in
``common`` (``common.classes``, ``common.control``).

Frames (the project conventions):
- ego frame: x forward, y left [m], origin at the rear-axle centre on the ground;
- road: lanes are indexed from the right, ``lane_index = 0`` is the rightmost lane;
  lateral offsets are positive to the left of the lane centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from common.classes import ObjectClass, as_object_class

FloatArray = NDArray[np.float64]

# Footprint priors used when a tracked object carries no size: (length, width) [m].
CLASS_SIZE_PRIORS_M: dict[ObjectClass, tuple[float, float]] = {
    ObjectClass.CAR: (4.6, 1.9),
    ObjectClass.TRUCK: (10.0, 2.6),
    ObjectClass.PEDESTRIAN: (0.6, 0.6),
    ObjectClass.CYCLIST: (1.8, 0.7),
}


class Behaviour(StrEnum):
    """What the chosen trajectory does, for monitoring and reports."""

    CRUISE = "cruise"
    FOLLOW = "follow"
    LANE_CHANGE_LEFT = "lane_change_left"
    LANE_CHANGE_RIGHT = "lane_change_right"
    STOP = "stop"
    EMERGENCY_BRAKE = "emergency_brake"


@dataclass(frozen=True, slots=True)
class VehicleParams:
    """Ego geometry used by the rollout, the collision check and the controller."""

    wheelbase_m: float = 2.7
    length_m: float = 4.6
    width_m: float = 1.9
    rear_axle_to_centre_m: float = 1.35  # rear axle → footprint centre, along x [m]


@dataclass(frozen=True, slots=True)
class EgoState:
    """Ego vehicle state relative to its current lane: the planner's view of the ego.

    Not the simulator's ``simulators.world.WorldEgoState`` (the true pose in the world frame,
    with no lanes): the two meet only through the ``vehicle.state`` contract, which carries the
    world pose plus a lane context from localisation, and from which this state is derived.

    ``lateral_offset_m`` and ``heading_rel_rad`` locate the rear-axle centre relative to
    the centre line of lane ``lane_index`` (left / counter-clockwise positive).
    ``yaw_rate_radps`` is informational: the planner starts its paths from ``steer_rad`` so
    the first planned steering angle equals the current one.
    """

    speed_mps: float
    accel_mps2: float = 0.0
    steer_rad: float = 0.0  # tire angle, left positive
    yaw_rate_radps: float = 0.0
    lateral_offset_m: float = 0.0
    heading_rel_rad: float = 0.0
    lane_index: int = 0
    n_lanes: int = 1
    lane_width_m: float = 3.5
    speed_limit_mps: float = 13.9
    road_curvature_1pm: float = 0.0  # [1/m], positive when the road turns left
    # Centre-line curvature [1/m] from i·preview_step_m ahead of the ego's foot point to the
    # next station, from a map; empty: the road keeps ``road_curvature_1pm``.
    curvature_preview_1pm: tuple[float, ...] = ()
    preview_step_m: float = 10.0  # [m]
    set_speed_mps: float | None = None  # the driver's cruise speed; None: the speed limit

    def desired_speed_mps(self, max_speed_mps: float) -> float:
        """The speed the planner aims for: the limit, the driver's set speed and the vehicle's."""
        v = min(self.speed_limit_mps, max_speed_mps)
        if self.set_speed_mps is not None:
            v = min(v, self.set_speed_mps)
        return max(v, 0.0)


@dataclass(frozen=True, slots=True)
class Obstacle:
    """A tracked object in the ego frame at the planning instant.

    Position is the centre of the object's footprint [m]; velocity and acceleration are over
    the ground, expressed in ego axes [m/s, m/s²] (a parked car has zero velocity whatever the
    ego does). Missing sizes fall back to the class priors.
    """

    x_m: float
    y_m: float
    vx_mps: float = 0.0
    vy_mps: float = 0.0
    ax_mps2: float = 0.0
    ay_mps2: float = 0.0
    object_class: int = ObjectClass.CAR  # an ObjectClass id; unknown ids count as cars
    length_m: float | None = None
    width_m: float | None = None
    track_id: int = -1

    def size_m(self) -> tuple[float, float]:
        """(length, width) [m], from the object or its class prior."""
        prior_len, prior_wid = CLASS_SIZE_PRIORS_M[as_object_class(self.object_class)]
        length = self.length_m if self.length_m is not None else prior_len
        width = self.width_m if self.width_m is not None else prior_wid
        return float(length), float(width)


@dataclass(frozen=True, slots=True)
class Trajectory:
    """A time-stamped ego path in the ego frame at the planning instant (rear axle).

    All arrays have the same length; ``t_s[0] == 0`` is the planning instant.
    """

    t_s: FloatArray
    x_m: FloatArray
    y_m: FloatArray
    v_mps: FloatArray
    yaw_rad: FloatArray
    accel_mps2: FloatArray
    steer_rad: FloatArray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])


@dataclass(frozen=True, slots=True)
class PlanResult:
    """The planner's answer for one planning cycle.

    ``cost_terms`` are the weighted terms of the chosen candidate (plus ``total``);
    ``any_safe`` is False when every sampled candidate collided, left the road or broke a
    limit, in which case ``trajectory`` is the emergency stop straight ahead.
    ``min_clearance_m`` is the smallest gap between the chosen footprint and any grown
    object box over the horizon (None without relevant objects; negative = overlap).
    """

    trajectory: Trajectory
    behaviour: Behaviour
    cost_terms: dict[str, float]
    any_safe: bool
    n_candidates: int
    n_safe: int
    target_lane_index: int
    min_clearance_m: float | None = None
