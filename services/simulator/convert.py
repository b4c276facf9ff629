"""Pure conversions between the simulator's objects and the wire contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.messages import (
    Calibration,
    FrameMeta,
    GroundTruth,
    Pose2D,
    TrueObject,
    Vec2,
    Vec3,
    VehicleControl,
    VehicleState,
)
from simulators.kinematics import ControlCommand

if TYPE_CHECKING:
    from simulators.camera import Camera
    from simulators.ground_truth import FrameGroundTruth
    from simulators.world import EgoState


def vehicle_state(ego: EgoState, *, vehicle_id: str, stamp_ns: int, run_id: str) -> VehicleState:
    """`vehicle.state` from the simulated ego."""
    return VehicleState(vehicle_id=vehicle_id, stamp_ns=stamp_ns,
                        pose=Pose2D(x_m=ego.x_m, y_m=ego.y_m, yaw_rad=ego.yaw_rad),
                        speed_mps=ego.speed_mps, accel_mps2=ego.accel_mps2,
                        yaw_rate_radps=ego.yaw_rate_radps, steer_rad=ego.steer_rad, run_id=run_id)


def ground_truth(gt: FrameGroundTruth, *, vehicle_id: str, seq: int, stamp_ns: int,
                 run_id: str) -> GroundTruth:
    """`sim.ground_truth` from one camera's ground truth."""
    objects = [TrueObject(track_id=o.track_id, object_class=o.object_class,
                          box=o.box, visible_fraction=min(1.0, max(0.0, o.visible_fraction)),
                          position_m=Vec3(x=o.position_m[0], y=o.position_m[1], z=o.position_m[2]),
                          velocity_mps=Vec2(x=o.velocity_mps[0], y=o.velocity_mps[1]))
               for o in gt.objects]
    return GroundTruth(vehicle_id=vehicle_id, camera_id=gt.camera_id, seq=seq, stamp_ns=stamp_ns,
                       ego_pose=Pose2D(x_m=gt.ego.x_m, y_m=gt.ego.y_m, yaw_rad=gt.ego.yaw_rad),
                       objects=objects, run_id=run_id)


def frame_meta(camera: Camera, *, vehicle_id: str, seq: int, stamp_ns: int, run_id: str,
               content_type: str = "image/jpeg", traceparent: str = "") -> FrameMeta:
    """Headers of a rendered frame."""
    return FrameMeta(content_type=content_type, vehicle_id=vehicle_id, camera_id=camera.camera_id,
                     seq=seq, capture_ns=stamp_ns, width=camera.width, height=camera.height,
                     calibration=Calibration(**camera.calibration()), run_id=run_id,
                     traceparent=traceparent)


def control_command(control: VehicleControl) -> ControlCommand:
    """The simulator's actuator command from a `vehicle.control` message."""
    rate = control.steering_tire_rotation_rate_radps
    return ControlCommand(steer_rad=control.steering_tire_angle_rad,
                          accel_mps2=control.accel_mps2,
                          target_speed_mps=control.target_speed_mps,
                          steer_rate_radps=abs(rate) if rate else None)


#: What the simulated vehicle does when no valid command is at hand: a comfortable stop.
FALLBACK_COMMAND = ControlCommand(steer_rad=0.0, accel_mps2=-1.0, target_speed_mps=0.0)
