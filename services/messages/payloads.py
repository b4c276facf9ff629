"""Every JSON payload of the roadstream topics, defined once.

Units are in the field names (`_m`, `_mps`, `_ns`, `_rad`). Frames: the ego frame is ISO 8855
(x forward, y left, z up, origin at the rear-axle centre on the ground); the world frame is
x east, y north with yaw counter-clockwise from +x. Boxes are [x1, y1, x2, y2] in pixels.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

# The camera calibration's fields and docstring in common are this contract's `calibration`
# header part; it is defined there once because ranging and the report use its geometry.
from common.calibration import Calibration as Calibration
from services.messages.base import (
    INT64_MAX,
    MODEL_CONFIG,
    Id,
    Int64,
    Label,
    Payload,
    Text,
    UInt64,
)


class _Part(BaseModel):
    """A nested part of a payload (no schema version of its own)."""

    model_config = MODEL_CONFIG


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


class ControlClock(StrEnum):
    """Which clock a command's `stamp_ns` and `valid_until_ns` are on."""

    WALL = "wall"  # ns since the Unix epoch: a vehicle checks expiry on its own clock
    SOURCE = "source"  # the inputs' clock (simulation time in lockstep): not the wall clock


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

    lane_index: int = Field(ge=0, le=255, description="0 = rightmost lane.")
    n_lanes: int = Field(ge=1, le=256)
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

    vehicle_id: Id
    stamp_ns: UInt64 = Field(description="Measurement time [ns since the Unix epoch].")
    pose: Pose2D
    speed_mps: float
    accel_mps2: float = 0.0
    yaw_rate_radps: float = 0.0
    steer_rad: float = Field(default=0.0, description="Steering tire angle [rad].")
    set_speed_mps: float | None = Field(
        default=None, ge=0,
        description="Cruise speed the driver set [m/s], as a car's cruise control reports it; "
                    "the planner drives at the lower of it and the speed limit. Null: none set.")
    run_id: Label = ""
    lane: LaneContext | None = Field(default=None, description="Lane context, when localised.")


class TrueObject(_Part):
    """One object as the simulator knows it, seen from one camera."""

    track_id: UInt64
    object_class: ObjectClass
    box: Box = Field(description="[x1, y1, x2, y2] in pixels, clipped to the image.")
    visible_fraction: float = Field(ge=0, le=1, description="1 − occlusion − truncation.")
    position_m: Vec3 = Field(description="Centre in the ego frame [m].")
    velocity_mps: Vec2 = Field(description="Velocity in the ego frame [m/s].")


class GroundTruth(Payload):
    """`sim.ground_truth`: true objects of one rendered frame."""

    vehicle_id: Id
    camera_id: Id
    seq: UInt64
    stamp_ns: UInt64
    ego_pose: Pose2D
    objects: list[TrueObject] = Field(default_factory=list)
    run_id: Label = ""


class FrameRef(_Part):
    """The camera frame a result was computed from."""

    seq: UInt64
    stamp_ns: UInt64 = Field(description="Capture time of the frame [ns].")


class DetectedObject(_Part):
    """One tracked detection with its range and motion in the ego frame."""

    track_id: UInt64
    object_class: ObjectClass
    score: float = Field(ge=0, le=1)
    box: Box
    position_m: Vec3 | None = Field(default=None,
                                    description="Centre in the ego frame [m]; null if not ranged.")
    velocity_mps: Vec2 | None = Field(default=None,
                                      description="Velocity relative to the ego [m/s].")
    accel_mps2: Vec2 | None = Field(default=None,
                                    description="Acceleration relative to the ego [m/s²].")
    ttc_s: float | None = Field(default=None, description="Time to collision; null if not closing.")


#: A lower-case hex sha256 digest.
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

#: Revision of `perception.objects`: 2 added `model_sha256`.
PERCEPTION_OBJECTS_SCHEMA_VERSION = 2


class PerceptionObjects(Payload):
    """`perception.objects`: tracked objects of one camera frame."""

    schema_version: int = Field(default=PERCEPTION_OBJECTS_SCHEMA_VERSION, ge=1, le=INT64_MAX,
                                description="Revision of this payload's schema.")
    vehicle_id: Id
    camera_id: Id
    source: FrameRef
    stamp_ns: UInt64 = Field(description="Publish time [ns].")
    model_version: Label
    model_sha256: Sha256 | None = Field(
        default=None, description="sha256 of the checkpoint file or of the model package's "
        "manifest.json that produced this result (docs/models.md); null when the model came "
        "from no file (schema version 1 had no such field).")
    objects: list[DetectedObject] = Field(default_factory=list)
    latencies_ms: dict[Label, float] = Field(
        default_factory=dict, description="Per-stage latency, e.g. decode, infer, track [ms]."
    )
    run_id: Label = ""


class TrajectoryPoint(_Part):
    """A sample of the planned trajectory in the ego frame at planning time."""

    t_s: float = Field(ge=0)
    x_m: float
    y_m: float
    v_mps: float


class PlanningTrajectory(Payload):
    """`planning.trajectory`: the chosen trajectory and why."""

    vehicle_id: Id
    stamp_ns: UInt64
    points: list[TrajectoryPoint]
    behaviour: Label
    costs: dict[Label, float] = Field(default_factory=dict)
    perception_stamp_ns: UInt64 | None = None
    state_stamp_ns: UInt64 | None = None
    run_id: Label = ""


class VehicleControl(Payload):
    """`vehicle.control`: an Autoware-like command; signed, see the header contract."""

    vehicle_id: Id
    stamp_ns: UInt64
    seq: UInt64 = Field(description="Monotonic per vehicle.")
    valid_until_ns: UInt64 = Field(description="Do not act on this command after this time.")
    steering_tire_angle_rad: float
    steering_tire_rotation_rate_radps: float = 0.0
    target_speed_mps: float = Field(ge=0)
    accel_mps2: float
    jerk_mps3: float = 0.0
    mode: ControlMode = ControlMode.NORMAL
    source: FrameRef | None = None
    run_id: Label = ""
    clock: ControlClock = Field(
        default=ControlClock.WALL,
        description="The clock of stamp_ns and valid_until_ns. wall: ns since the Unix epoch, "
                    "check expiry against the vehicle's clock; source: the clock of the "
                    "inputs (simulation time in lockstep), which runs behind the wall clock, "
                    "so a wall-clock vehicle cannot check expiry (docs/vehicle-client.md).")


class EventRefs(_Part):
    """What a safety event refers to."""

    frame_seq: Int64 | None = None
    command_seq: Int64 | None = None
    topic: Label | None = None
    partition: Int64 | None = None
    offset: Int64 | None = None


# Free-form JSON of an event's details, bounded like every value: strings have a maximum
# length, integers fit int64, floats are finite (the models' config). Type checkers see Any
# (they cannot follow a recursive alias here); pydantic validates the bounds.
if TYPE_CHECKING:
    DetailValue = Any
else:
    DetailValue = TypeAliasType(
        "DetailValue",
        Text | bool | Int64 | float | list["DetailValue"] | dict[Label, "DetailValue"] | None,
    )


class SafetyEvent(Payload):
    """`safety.events`: something a monitor, an auditor or an operator must know."""

    event_id: UUID
    stamp_ns: UInt64
    vehicle_id: Label = ""
    source: Id = Field(description="Service that raised it.")
    type: Id = Field(description="e.g. dlq, stale_input, frame_dropped.")
    severity: Severity
    details: dict[Label, DetailValue] = Field(default_factory=dict)
    references: EventRefs = Field(default_factory=EventRefs)
    run_id: Label = ""


class DeploymentAction(StrEnum):
    """Why a deployment command was issued (`shadow` and `shadow_stop` since schema version 2)."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    #: Run the version beside production on the same frames, publishing on
    #: `perception.objects.shadow`; production keeps serving (docs/models.md).
    SHADOW = "shadow"
    #: Stop the shadow named by version and sha256 (a service shadowing another ignores it).
    SHADOW_STOP = "shadow_stop"


#: Revision of `model.deployments`: 2 added the actions `shadow` and `shadow_stop` (a consumer of
#: version 1 refuses them, and so never serves a shadow candidate as production).
MODEL_DEPLOYMENTS_SCHEMA_VERSION = 2


class ModelDeployment(Payload):
    """`model.deployments`: serve this registry version now (docs/models.md).

    A perception service that receives it loads the artifact at `path` beside the model it
    serves, checks its sha256, warms it up and switches between two batches; on any failure it
    keeps the old model and raises `model_swap_failed`. `path` must be readable where the
    service runs. Action `shadow` loads it the same way, as a shadow beside production.
    """

    schema_version: int = Field(default=MODEL_DEPLOYMENTS_SCHEMA_VERSION, ge=1, le=INT64_MAX,
                                description="Revision of this payload's schema.")

    model_name: Id = Field(default="detector", description="The model slot to deploy to (the key).")
    version: Id = Field(description="Registry version: the artifact's model_version.")
    path: Text = Field(min_length=1, description="Checkpoint file or model package folder.")
    sha256: Sha256 = Field(description="sha256 of the checkpoint file or the package's "
                                       "manifest.json, as registered.")
    stage: Label = Field(default="production", description="Registry stage of the version.")
    action: DeploymentAction = DeploymentAction.PROMOTE
    stamp_ns: UInt64 = Field(description="When the command was issued [ns].")
