"""The scenario file schema: road, ego, actors with behaviours, environment and cameras.

A scenario is data, validated here; `simulators.library` loads files and expands variants.
Units are in the field names. Speeds are written in km/h (`speed_kph`) because test protocols
(Euro NCAP) state them so; code reads them in m/s through the `*_mps` properties.

Lanes are numbered 0.. from the right; every lane runs in the driving direction. A lateral
offset `d_m` is measured from the road centre line, positive to the left.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from common.classes import ObjectClassName

KPH = 1.0 / 3.6  # [m/s per km/h]

# The object classes, plus a car that never moves (reported as a car in ground truth).
ActorClass = Literal[ObjectClassName, "parked_car"]
Condition = Literal["day", "dusk", "night", "rain", "fog"]

# Body styles an actor class may use; the renderer and the collision boxes follow them.
BODIES: dict[str, tuple[str, ...]] = {
    "car": ("sedan", "hatch", "suv", "van"),
    "parked_car": ("sedan", "hatch", "suv", "van"),
    "truck": ("box", "lorry"),
    "pedestrian": ("adult", "child"),
    "cyclist": ("adult",),
}


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a scenario must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StraightSegment(_Strict):
    """A straight piece of road."""

    kind: Literal["straight"]
    length_m: float = Field(gt=0)


class ArcSegment(_Strict):
    """A constant-radius curve."""

    kind: Literal["arc"]
    length_m: float = Field(gt=0)
    radius_m: float = Field(ge=20)
    turn: Literal["left", "right"]

    @property
    def curvature_1pm(self) -> float:
        """Signed curvature [1/m], positive turning left."""
        return (1.0 if self.turn == "left" else -1.0) / self.radius_m


Segment = Annotated[StraightSegment | ArcSegment, Field(discriminator="kind")]


def _default_road() -> list[StraightSegment | ArcSegment]:
    return [StraightSegment(kind="straight", length_m=1000.0)]


class RoadSpec(_Strict):
    """A one-way carriageway starting at the world origin heading east."""

    lanes: int = Field(default=2, ge=1, le=6)
    lane_width_m: float = Field(default=3.5, ge=2.5, le=5.0)
    speed_limit_kph: float = Field(default=50.0, gt=0, le=200)
    shoulder_m: float = Field(default=0.5, ge=0, le=4)
    sidewalk_m: float = Field(default=0.0, ge=0, le=6, description="0 = no sidewalk")
    posts: bool = Field(default=True, description="Roadside delineator posts every 50 m.")
    scenery: Literal["auto", "rural", "urban", "none"] = Field(
        default="auto", description="auto: urban (buildings, lamps) with a sidewalk, else rural"
    )
    segments: list[Segment] = Field(default_factory=_default_road, min_length=1)

    @property
    def length_m(self) -> float:
        """Authored length [m]; the road continues straight beyond it."""
        return float(sum(seg.length_m for seg in self.segments))


class VehicleSpec(_Strict):
    """Ego dimensions and actuator limits."""

    length_m: float = Field(default=4.6, gt=1)
    width_m: float = Field(default=1.85, gt=0.5)
    height_m: float = Field(default=1.5, gt=0.5)
    wheelbase_m: float = Field(default=2.8, gt=0.5)
    rear_overhang_m: float = Field(default=1.0, ge=0)
    max_steer_rad: float = Field(default=0.6, gt=0, le=1.2)
    max_steer_rate_radps: float = Field(default=0.8, gt=0)
    max_accel_mps2: float = Field(default=3.0, gt=0)
    max_decel_mps2: float = Field(default=9.0, gt=0)
    max_jerk_mps3: float = Field(default=30.0, gt=0)


class RouteLeg(_Strict):
    """From station `from_s_m` on, keep `lane` at `speed_kph` (defaults: the ego's start)."""

    from_s_m: float = Field(default=0.0, ge=0)
    lane: int | None = Field(default=None, ge=0)
    speed_kph: float | None = Field(default=None, ge=0)


class EgoSpec(_Strict):
    """The ego vehicle: start pose and speed, and the route the built-in driver follows."""

    lane: int = Field(default=0, ge=0)
    s_m: float = Field(default=0.0, ge=0, description="start station of the rear axle [m]")
    speed_kph: float = Field(ge=0)
    hold_speed: bool = Field(
        default=False,
        description="the driver's cruise speed is the start speed, as in the Euro NCAP tests "
                    "(the vehicle under test holds the test speed); otherwise the road's limit")
    route: list[RouteLeg] = Field(default_factory=list)
    vehicle: VehicleSpec = Field(default_factory=VehicleSpec)

    @property
    def speed_mps(self) -> float:
        """Start speed [m/s]."""
        return self.speed_kph * KPH

    @property
    def set_speed_mps(self) -> float | None:
        """The cruise speed the driver set [m/s], or None to drive at the road's limit."""
        return self.speed_mps if self.hold_speed else None


class Trigger(_Strict):
    """When a behaviour starts: at most one condition; none means at t = 0.

    `distance_m`: the ego front bumper is within this straight-line distance of the actor.
    `ttc_s`: the ego front would reach the actor's station within this time at its speed.
    """

    time_s: float | None = Field(default=None, ge=0)
    distance_m: float | None = Field(default=None, gt=0)
    ttc_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_condition(self) -> Trigger:
        given = [v for v in (self.time_s, self.distance_m, self.ttc_s) if v is not None]
        if len(given) > 1:
            raise ValueError("a trigger takes one of time_s, distance_m, ttc_s")
        return self


class _Behaviour(_Strict):
    trigger: Trigger = Field(default_factory=Trigger)


class FollowLane(_Behaviour):
    """Drive along the current lane, reaching `speed_kph` at `accel_mps2`."""

    type: Literal["follow_lane"]
    speed_kph: float = Field(ge=0)
    accel_mps2: float = Field(default=2.0, gt=0, le=10)


class Brake(_Behaviour):
    """Slow at `decel_mps2` down to `target_speed_kph` (brake lights on)."""

    type: Literal["brake"]
    decel_mps2: float = Field(gt=0, le=12)
    target_speed_kph: float = Field(default=0.0, ge=0)


class CutIn(_Behaviour):
    """Change to `target_lane` in `duration_s` (indicator on)."""

    type: Literal["cut_in"]
    target_lane: int = Field(ge=0)
    duration_s: float = Field(default=2.5, gt=0.2, le=20)


class Cross(_Behaviour):
    """Walk or ride across the road to the `direction` side for `distance_m`."""

    type: Literal["cross"]
    speed_kph: float = Field(gt=0, le=40)
    direction: Literal["left", "right"]
    distance_m: float = Field(gt=0, le=60)
    accel_mps2: float = Field(default=1.5, gt=0, le=10)


class Stop(_Behaviour):
    """Stop all motion at `decel_mps2`."""

    type: Literal["stop"]
    decel_mps2: float = Field(default=6.0, gt=0, le=12)


Behaviour = Annotated[FollowLane | Brake | CutIn | Cross | Stop, Field(discriminator="type")]
BEHAVIOUR_TYPES = ("follow_lane", "brake", "cut_in", "cross", "stop")


class AppearanceSpec(_Strict):
    """How an actor looks; an unset field is drawn from the scenario seed."""

    body: str | None = None
    colour: str | None = Field(default=None, description="a palette name or #rrggbb")
    size: Literal["small", "medium", "large"] | None = None


class ActorSpec(_Strict):
    """A scripted road user or a static obstacle (`parked_car`, reported as class car)."""

    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$")
    cls: ActorClass = Field(alias="class")
    s_m: float = Field(ge=0, description="start station of the actor centre [m]")
    lane: int | None = Field(default=None, ge=0)
    d_m: float | None = Field(default=None, description="lateral offset from the road centre")
    offset_m: float = Field(default=0.0, description="extra lateral offset from the lane centre")
    heading_deg: float = Field(default=0.0, ge=-180, le=180, description="relative to the road")
    speed_kph: float = Field(default=0.0, ge=0)
    appearance: AppearanceSpec = Field(default_factory=AppearanceSpec)
    behaviours: list[Behaviour] = Field(default_factory=list)

    @model_validator(mode="after")
    def _placement(self) -> ActorSpec:
        if self.lane is not None and self.d_m is not None:
            raise ValueError("give lane or d_m, not both")
        return self

    @property
    def speed_mps(self) -> float:
        """Start speed [m/s]."""
        return self.speed_kph * KPH


class EnvironmentSpec(_Strict):
    """Light and weather; `visibility_m` overrides the condition's default haze or fog."""

    condition: Condition = "day"
    visibility_m: float | None = Field(default=None, gt=5)
    rain_intensity: float = Field(default=0.6, ge=0, le=1)


class MountSpec(_Strict):
    """Camera pose in the ego frame; pitch positive looks down, yaw positive looks left."""

    x_m: float = 1.9
    y_m: float = 0.0
    z_m: float = Field(default=1.35, gt=0)
    pitch_rad: float = Field(default=0.03, ge=-0.8, le=0.8)
    yaw_rad: float = Field(default=0.0, ge=-math.pi, le=math.pi)
    roll_rad: float = Field(default=0.0, ge=-0.5, le=0.5)


class CameraSpec(_Strict):
    """A pinhole camera: `hfov_deg`, or focal lengths `fx`/`fy` [px]; cx/cy default to centre."""

    id: str = Field(default="front", pattern=r"^[A-Za-z0-9_\-]+$")
    width: int = Field(default=640, ge=32, le=7680)
    height: int = Field(default=360, ge=32, le=4320)
    rate_hz: float = Field(default=20.0, gt=0, le=240)
    hfov_deg: float | None = Field(default=None, gt=5, lt=170)
    fx: float | None = Field(default=None, gt=0)
    fy: float | None = Field(default=None, gt=0)
    cx: float | None = None
    cy: float | None = None
    mount: MountSpec = Field(default_factory=MountSpec)

    @model_validator(mode="after")
    def _intrinsics(self) -> CameraSpec:
        if self.hfov_deg is not None and (self.fx is not None or self.fy is not None):
            raise ValueError("give hfov_deg or fx/fy, not both")
        return self


def _default_cameras() -> list[CameraSpec]:
    return [CameraSpec(id="front", hfov_deg=60.0)]


class Scenario(_Strict):
    """One runnable scenario (variants already expanded)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    duration_s: float = Field(gt=0, le=600)
    seed: int = Field(default=0, ge=0)
    end_on_collision: bool = True
    road: RoadSpec = Field(default_factory=RoadSpec)
    ego: EgoSpec
    actors: list[ActorSpec] = Field(default_factory=list)
    environment: EnvironmentSpec = Field(default_factory=EnvironmentSpec)
    cameras: list[CameraSpec] = Field(default_factory=_default_cameras, min_length=1)

    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file this scenario was loaded from, if any."""
        return self._source

    def actor_id(self, index: int) -> str:
        """The id of actor `index`: its `id`, or `<class><index>`."""
        spec = self.actors[index]
        return spec.id if spec.id is not None else f"{spec.cls}{index}"

    def camera(self, camera_id: str) -> CameraSpec:
        """The camera named `camera_id`; KeyError if none."""
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(f"scenario {self.name} has no camera {camera_id!r}")
