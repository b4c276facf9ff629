"""Pure conversions between the simulator's objects and the wire contract."""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import numpy as np

from common.control import ControlCommand
from services.messages import (
    Calibration,
    FrameMeta,
    GroundTruth,
    LaneContext,
    Pose2D,
    TrueObject,
    Vec2,
    Vec3,
    VehicleControl,
    VehicleState,
)

if TYPE_CHECKING:
    from simulators.camera import Camera
    from simulators.ground_truth import FrameGroundTruth
    from simulators.road import Road
    from simulators.world import WorldEgoState


PREVIEW_STEP_M = 5.0  # spacing of the curvature preview in `vehicle.state` [m]
PREVIEW_LENGTH_M = 200.0  # the preview reaches past the planner's horizon at 100 km/h [m]


def preview_curvature(road: Road, s_m: float) -> list[float]:
    """The road's curvature [1/m] every PREVIEW_STEP_M from ``s_m`` to PREVIEW_LENGTH_M ahead,
    as a map gives a localised vehicle."""
    stations = s_m + PREVIEW_STEP_M * np.arange(int(PREVIEW_LENGTH_M / PREVIEW_STEP_M))
    return [round(float(k), 9) for k in road.curvature(stations)]


def vehicle_state(ego: WorldEgoState, road: Road, *, vehicle_id: str, stamp_ns: int,
                  run_id: str) -> VehicleState:
    """`vehicle.state` from the simulated ego, with its lane context from the road."""
    lane = road.lane_of(ego.d_m)
    _, _, road_heading = road.frenet_pose(ego.s_m, ego.d_m)
    heading = math.remainder(ego.yaw_rad - road_heading, math.tau)
    context = LaneContext(lane_index=lane, n_lanes=road.lanes, lane_width_m=road.lane_width_m,
                          lateral_offset_m=ego.d_m - road.lane_d(lane), heading_rel_rad=heading,
                          speed_limit_mps=road.speed_limit_mps,
                          road_curvature_1pm=road.curvature_at(ego.s_m),
                          curvature_preview_1pm=preview_curvature(road, ego.s_m),
                          preview_step_m=PREVIEW_STEP_M)
    return VehicleState(vehicle_id=vehicle_id, stamp_ns=stamp_ns,
                        pose=Pose2D(x_m=ego.x_m, y_m=ego.y_m, yaw_rad=ego.yaw_rad),
                        speed_mps=ego.speed_mps, accel_mps2=ego.accel_mps2,
                        yaw_rate_radps=ego.yaw_rate_radps, steer_rad=ego.steer_rad,
                        set_speed_mps=ego.set_speed_mps, run_id=run_id, lane=context)


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
    """The command a `vehicle.control` message carries, for the simulated vehicle to apply."""
    return ControlCommand(steering_tire_angle_rad=control.steering_tire_angle_rad,
                          steering_tire_rotation_rate_radps=control.steering_tire_rotation_rate_radps,
                          target_speed_mps=control.target_speed_mps, accel_mps2=control.accel_mps2,
                          jerk_mps3=control.jerk_mps3, stamp_ns=control.stamp_ns)


def traceparent(run_id: str, vehicle_id: str, camera_id: str, seq: int) -> str:
    """A W3C trace context for one frame: the trace id is derived from the frame's identity.

    Derived rather than random so a lockstep replay carries the same trace id; the frame is
    the root of the trace that perception, planning and the gate continue. Its span is never
    exported: the publish span is its child, so the header on the wire keeps this trace id
    with the publish span's (random) id.
    """
    digest = hashlib.sha256(f"{run_id}/{vehicle_id}/{camera_id}/{seq}".encode()).hexdigest()
    return f"00-{digest[:32]}-{digest[32:48]}-01"


#: What the simulated vehicle does when no valid command is at hand: a comfortable stop.
FALLBACK_COMMAND = ControlCommand(steering_tire_angle_rad=0.0, accel_mps2=-1.0, target_speed_mps=0.0)
