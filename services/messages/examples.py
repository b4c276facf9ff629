"""One valid example per topic: used in the generated docs and the round-trip tests."""

from __future__ import annotations

import uuid

from services.messages.frames import FrameMeta
from services.messages.payloads import (
    Calibration,
    ControlMode,
    DetectedObject,
    EventRefs,
    FrameRef,
    GroundTruth,
    LaneContext,
    ModelDeployment,
    ObjectClass,
    PerceptionObjects,
    PlanningTrajectory,
    Pose2D,
    SafetyEvent,
    Severity,
    TrajectoryPoint,
    TrueObject,
    Vec2,
    Vec3,
    VehicleControl,
    VehicleState,
)

STAMP_NS = 1_790_000_000_000_000_000
CALIBRATION = Calibration(fx=640.0, fy=640.0, cx=320.0, cy=180.0, width=640, height=360,
                          mount_x_m=1.5, mount_z_m=1.4, pitch_rad=0.02)


def frame_meta(seq: int = 0, *, run_id: str = "example") -> FrameMeta:
    """Headers of an example JPEG frame from the front camera of `ego`."""
    return FrameMeta(vehicle_id="ego", camera_id="front", seq=seq, capture_ns=STAMP_NS,
                     width=640, height=360, calibration=CALIBRATION, run_id=run_id,
                     traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def vehicle_state() -> VehicleState:
    """An ego vehicle driving east at 50 km/h."""
    return VehicleState(vehicle_id="ego", stamp_ns=STAMP_NS, pose=Pose2D(x_m=12.0, y_m=-1.75,
                        yaw_rad=0.0), speed_mps=13.9, accel_mps2=0.2, yaw_rate_radps=0.0,
                        steer_rad=0.01, run_id="example",
                        lane=LaneContext(lane_index=0, n_lanes=2, lane_width_m=3.5,
                                         lateral_offset_m=0.05, heading_rel_rad=0.0,
                                         speed_limit_mps=13.9))


def ground_truth() -> GroundTruth:
    """One car 30 m ahead, as the simulator knows it."""
    car = TrueObject(track_id=3, object_class=ObjectClass.CAR, box=(290.0, 170.0, 350.0, 215.0),
                     visible_fraction=1.0, position_m=Vec3(x=30.0, y=0.0, z=0.75),
                     velocity_mps=Vec2(x=-13.9, y=0.0))
    return GroundTruth(vehicle_id="ego", camera_id="front", seq=7, stamp_ns=STAMP_NS,
                       ego_pose=Pose2D(x_m=12.0, y_m=-1.75, yaw_rad=0.0), objects=[car],
                       run_id="example")


def perception_objects() -> PerceptionObjects:
    """One tracked car 30 m ahead, closing at 13.9 m/s."""
    car = DetectedObject(track_id=1, object_class=ObjectClass.CAR, score=0.93,
                         box=(291.0, 171.0, 349.0, 214.0), position_m=Vec3(x=29.4, y=0.1, z=0.0),
                         velocity_mps=Vec2(x=-13.7, y=0.0), ttc_s=2.15)
    return PerceptionObjects(vehicle_id="ego", camera_id="front",
                             source=FrameRef(seq=7, stamp_ns=STAMP_NS),
                             stamp_ns=STAMP_NS + 38_000_000, model_version="ssdlite-sim-1",
                             model_sha256="9f2c4e1a" * 8,
                             objects=[car], latencies_ms={"decode": 2.1, "infer": 31.0,
                                                          "track": 0.4}, run_id="example")


def planning_trajectory() -> PlanningTrajectory:
    """A gentle braking plan."""
    pts = [TrajectoryPoint(t_s=0.5 * i, x_m=6.5 * i, y_m=0.0, v_mps=13.9 - 1.0 * i)
           for i in range(5)]
    return PlanningTrajectory(vehicle_id="ego", stamp_ns=STAMP_NS + 45_000_000, points=pts,
                              behaviour="follow", costs={"collision": 0.0, "comfort": 0.3,
                                                         "progress": 1.2},
                              perception_stamp_ns=STAMP_NS, state_stamp_ns=STAMP_NS,
                              run_id="example")


def vehicle_control() -> VehicleControl:
    """A normal-mode command valid for 200 ms."""
    return VehicleControl(vehicle_id="ego", stamp_ns=STAMP_NS + 50_000_000, seq=42,
                          valid_until_ns=STAMP_NS + 250_000_000, steering_tire_angle_rad=0.01,
                          steering_tire_rotation_rate_radps=0.0, target_speed_mps=12.9,
                          accel_mps2=-1.0, jerk_mps3=0.0, mode=ControlMode.NORMAL,
                          source=FrameRef(seq=7, stamp_ns=STAMP_NS), run_id="example")


def safety_event() -> SafetyEvent:
    """A dead-lettered camera frame."""
    return SafetyEvent(event_id=uuid.UUID("8a1d3f0e-2b7c-4d0e-9a52-3f6b1c2d4e5f"),
                       stamp_ns=STAMP_NS, vehicle_id="ego", source="perception", type="dlq",
                       severity=Severity.WARNING,
                       details={"error": "MessageError: camera frame header 'seq' is missing"},
                       references=EventRefs(topic="camera.frames", partition=0, offset=118),
                       run_id="example")


def model_deployment() -> ModelDeployment:
    """Promote a package to production."""
    return ModelDeployment(version="fcos_dense_sim-step5200-onnx-fp32",
                           path="packages/fcos_dense_sim-fp32", sha256="9f2c4e1a" * 8,
                           stage="production", stamp_ns=STAMP_NS)


#: topic name → example payload (JSON topics only).
JSON_EXAMPLES = {
    "vehicle.state": vehicle_state,
    "sim.ground_truth": ground_truth,
    "perception.objects": perception_objects,
    "perception.objects.shadow": perception_objects,
    "planning.trajectory": planning_trajectory,
    "vehicle.control": vehicle_control,
    "safety.events": safety_event,
    "model.deployments": model_deployment,
}
