"""What the planning stack is fed: the vehicle's state and each camera's tracked objects.

Pure mirrors of the `vehicle.state` and `perception.objects` payloads, holding only what
planning reads; the planning service converts the wire messages into these
(services/planning/convert.py). Perception reports each object's motion relative to the ego
frame; planning alone turns it into motion over the ground (:mod:`planning.fusion`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from common.classes import ObjectClass
from planning.types import EgoState

Tag = TypeVar("Tag")


@dataclass(frozen=True, slots=True)
class VehicleInput:
    """The ego at ``stamp_ns``: its world pose and its state relative to its lane.

    ``localised``: whether the lane fields of ``ego`` come from a map (otherwise they are the
    defaults of a single 3.5 m lane, and coasted cars are not snapped to lane centres).
    """

    stamp_ns: int  # measurement time [ns]
    x_m: float  # world pose of the rear axle [m]
    y_m: float
    yaw_rad: float
    ego: EgoState
    localised: bool = False

    @property
    def speed_mps(self) -> float:
        """The ego's speed [m/s]."""
        return self.ego.speed_mps


@dataclass(frozen=True, slots=True)
class SeenObject:
    """One tracked object of a camera frame, ego frame (x forward, y left).

    ``position_m`` is None when perception could not range it. Velocity and acceleration are
    relative to the ego frame; an acceleration whose x is 0.0 means "not resolved".
    """

    track_id: int
    object_class: ObjectClass
    position_m: tuple[float, float] | None = None  # [m]
    velocity_mps: tuple[float, float] | None = None  # relative [m/s]
    accel_mps2: tuple[float, float] | None = None  # relative [m/s²]


@dataclass(frozen=True, slots=True)
class CameraObjects(Generic[Tag]):
    """The objects of one camera frame captured at ``stamp_ns``.

    ``tag`` is the caller's, carried untouched to the plan and commands made from this frame
    (the service keeps the source message and its trace context there).
    """

    camera_id: str
    stamp_ns: int  # capture time of the source frame [ns]
    objects: tuple[SeenObject, ...]
    tag: Tag
