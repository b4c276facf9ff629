"""Every JSON payload of the roadstream topics, defined once.

Units are in the field names (`_m`, `_mps`, `_ns`, `_rad`). Frames: the ego frame is ISO 8855
(x forward, y left, z up, origin at the rear-axle centre on the ground); the world frame is
x east, y north with yaw counter-clockwise from +x. Boxes are [x1, y1, x2, y2] in pixels.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.messages.base import Payload


class _Part(BaseModel):
    """A nested part of a payload (no schema version of its own)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ObjectClass(StrEnum):
    """Classes the detector and the simulator share."""

    CAR = "car"
    TRUCK = "truck"
    PEDESTRIAN = "pedestrian"
    CYCLIST = "cyclist"


class Severity(StrEnum):
    """Severity of a safety event."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ControlMode(StrEnum):
    """What the command gate is doing."""

    NORMAL = "normal"
    COMFORTABLE_STOP = "comfortable_stop"
    EMERGENCY_STOP = "emergency_stop"


class Calibration(_Part):
    """Pinhole camera calibration; the mount pose is in the ego frame (OpenCV optical axes)."""

    fx: float = Field(gt=0, description="Focal length x [px].")
    fy: float = Field(gt=0, description="Focal length y [px].")
    cx: float = Field(description="Principal point x [px].")
    cy: float = Field(description="Principal point y [px].")
    width: int = Field(gt=0, description="Image width [px].")
    height: int = Field(gt=0, description="Image height [px].")
    mount_x_m: float = Field(default=1.5, description="Camera position, ego x [m].")
    mount_y_m: float = Field(default=0.0, description="Camera position, ego y [m].")
    mount_z_m: float = Field(default=1.4, description="Camera height above ground [m].")
    pitch_rad: float = Field(default=0.0, description="Mount pitch, positive looks down [rad].")
    yaw_rad: float = Field(default=0.0, description="Mount yaw, positive looks left [rad].")
    roll_rad: float = Field(default=0.0, description="Mount roll [rad].")


class Pose2D(_Part):
    """A planar pose in the world frame."""

    x_m: float
    y_m: float
    yaw_rad: float


class Vec3(_Part):
    """A 3D vector; its unit is named by the field that holds it."""

    x: float
    y: float
    z: float = 0.0


class Vec2(_Part):
    """A 2D vector; its unit is named by the field that holds it."""

    x: float
    y: float


Box = tuple[float, float, float, float]


# The planner integrates the previewed centre line on every plan: a bound keeps a malformed
# state from costing it seconds (400 stations at 5 m reach 2 km).
MAX_PREVIEW_STATIONS = 400


class LaneContext(_Part):
    """Where the ego is on its road, from localisation on a map (the simulator knows it)."""

    lane_index: int = Field(ge=0, description="0 = rightmost lane.")
    n_lanes: int = Field(ge=1)
    lane_width_m: float = Field(gt=0)
    lateral_offset_m: float = Field(description="Rear axle from the lane centre, + left [m].")
    heading_rel_rad: float = Field(description="Heading relative to the lane, + left [rad].")
    speed_limit_mps: float = Field(gt=0)
    road_curvature_1pm: float = Field(default=0.0, description="+ when the road turns left [1/m].")
    curvature_preview_1pm: list[Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]] = Field(
        default_factory=list, max_length=MAX_PREVIEW_STATIONS,
        description="Centre-line curvature [1/m] at stations preview_step_m apart ahead of the "
                    "ego (the first at the ego), each holding to the next, from a map; empty: "
                    "the road keeps road_curvature_1pm.")
    preview_step_m: float = Field(default=5.0, gt=0, le=100, description="Spacing of the preview [m].")


class VehicleState(Payload):
    """`vehicle.state`: the ego vehicle's measured state."""

    vehicle_id: str = Field(min_length=1)
    stamp_ns: int = Field(ge=0, description="Measurement time [ns since the Unix epoch].")
    pose: Pose2D
    speed_mps: float
    accel_mps2: float = 0.0
    yaw_rate_radps: float = 0.0
    steer_rad: float = Field(default=0.0, description="Steering tire angle [rad].")
    set_speed_mps: float | None = Field(
        default=None, ge=0,
        description="Cruise speed the driver set [m/s], as a car's cruise control reports it; "
                    "the planner drives at the lower of it and the speed limit. Null: none set.")
    run_id: str = ""
    lane: LaneContext | None = Field(default=None, description="Lane context, when localised.")


class TrueObject(_Part):
    """One object as the simulator knows it, seen from one camera."""

    track_id: int = Field(ge=0)
    object_class: ObjectClass = Field(alias="class")
    box: Box = Field(description="[x1, y1, x2, y2] in pixels, clipped to the image.")
    visible_fraction: float = Field(ge=0, le=1, description="1 − occlusion − truncation.")
    position_m: Vec3 = Field(description="Centre in the ego frame [m].")
    velocity_mps: Vec2 = Field(description="Velocity in the ego frame [m/s].")

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class GroundTruth(Payload):
    """`sim.ground_truth`: true objects of one rendered frame."""

    vehicle_id: str = Field(min_length=1)
    camera_id: str = Field(min_length=1)
    seq: int = Field(ge=0)
    stamp_ns: int = Field(ge=0)
    ego_pose: Pose2D
    objects: list[TrueObject] = Field(default_factory=list)
    run_id: str = ""


class FrameRef(_Part):
    """The camera frame a result was computed from."""

    seq: int = Field(ge=0)
    stamp_ns: int = Field(ge=0, description="Capture time of the frame [ns].")


class DetectedObject(_Part):
    """One tracked detection with its range and motion in the ego frame."""

    track_id: int = Field(ge=0)
    object_class: ObjectClass = Field(alias="class")
    score: float = Field(ge=0, le=1)
    box: Box
    position_m: Vec3 | None = Field(default=None,
                                    description="Centre in the ego frame [m]; null if not ranged.")
    velocity_mps: Vec2 | None = Field(default=None,
                                      description="Velocity relative to the ego [m/s].")
    accel_mps2: Vec2 | None = Field(default=None,
                                    description="Acceleration relative to the ego [m/s²].")
    ttc_s: float | None = Field(default=None, description="Time to collision; null if not closing.")

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class PerceptionObjects(Payload):
    """`perception.objects`: tracked objects of one camera frame."""

    vehicle_id: str = Field(min_length=1)
    camera_id: str = Field(min_length=1)
    source: FrameRef
    stamp_ns: int = Field(ge=0, description="Publish time [ns].")
    model_version: str
    objects: list[DetectedObject] = Field(default_factory=list)
    latencies_ms: dict[str, float] = Field(
        default_factory=dict, description="Per-stage latency, e.g. decode, infer, track [ms]."
    )
    run_id: str = ""


class TrajectoryPoint(_Part):
    """A sample of the planned trajectory in the ego frame at planning time."""

    t_s: float = Field(ge=0)
    x_m: float
    y_m: float
    v_mps: float


class PlanningTrajectory(Payload):
    """`planning.trajectory`: the chosen trajectory and why."""

    vehicle_id: str = Field(min_length=1)
    stamp_ns: int = Field(ge=0)
    points: list[TrajectoryPoint]
    behaviour: str
    costs: dict[str, float] = Field(default_factory=dict)
    perception_stamp_ns: int | None = None
    state_stamp_ns: int | None = None
    run_id: str = ""


class VehicleControl(Payload):
    """`vehicle.control`: an Autoware-like command; signed, see the header contract."""

    vehicle_id: str = Field(min_length=1)
    stamp_ns: int = Field(ge=0)
    seq: int = Field(ge=0, description="Monotonic per vehicle.")
    valid_until_ns: int = Field(ge=0, description="Do not act on this command after this time.")
    steering_tire_angle_rad: float
    steering_tire_rotation_rate_radps: float = 0.0
    target_speed_mps: float = Field(ge=0)
    accel_mps2: float
    jerk_mps3: float = 0.0
    mode: ControlMode = ControlMode.NORMAL
    source: FrameRef | None = None
    run_id: str = ""


class EventRefs(_Part):
    """What a safety event refers to."""

    frame_seq: int | None = None
    command_seq: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


class SafetyEvent(Payload):
    """`safety.events`: something a monitor, an auditor or an operator must know."""

    event_id: UUID
    stamp_ns: int = Field(ge=0)
    vehicle_id: str = ""
    source: str = Field(min_length=1, description="Service that raised it.")
    type: str = Field(min_length=1, description="e.g. dlq, stale_input, frame_dropped.")
    severity: Severity
    details: dict[str, Any] = Field(default_factory=dict)
    references: EventRefs = Field(default_factory=EventRefs)
    run_id: str = ""
