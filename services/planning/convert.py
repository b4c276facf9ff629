"""Conversions between the wire contract and the planning stack's pure types."""

from __future__ import annotations

from common.classes import as_object_class
from planning.gate import GateConfig
from planning.inputs import CameraObjects, SeenObject, VehicleInput
from planning.stack import StackConfig
from planning.types import EgoState, Trajectory
from services.control.settings import ControlSettings
from services.messages import (
    PERCEPTION_OBJECTS,
    VEHICLE_STATE,
    DetectedObject,
    PerceptionObjects,
    TrajectoryPoint,
    VehicleState,
)
from services.planning.settings import PlanningSettings

#: What the service tags each camera frame with: its message and its trace context.
Source = tuple[PerceptionObjects, str]

def stack_config(options: PlanningSettings, control: ControlSettings) -> StackConfig:
    """The stack's clock, primary camera, control period and gate timeouts, from settings.

    Each input times out after ``options.timeout_periods`` of its topic's expected period
    (perception's from ``options.perception_rate_hz`` when the camera runs slower).
    """
    k = options.timeout_periods
    perception_period_s = (1.0 / options.perception_rate_hz if options.perception_rate_hz
                           else PERCEPTION_OBJECTS.period_s or 0.05)
    perception_ns = round(k * perception_period_s * 1e9)
    gate = GateConfig(perception_timeout_ns=perception_ns,
                      vehicle_state_timeout_ns=round(k * (VEHICLE_STATE.period_s or 0.05) * 1e9),
                      command_timeout_ns=perception_ns)
    return StackConfig(clock=options.clock, primary_camera=options.primary_camera,
                       control_period_s=1.0 / control.rate_hz, gate=gate)


def ego_state(state: VehicleState) -> EgoState:
    """The planner's ego from `vehicle.state` (a single 3.5 m lane when not localised)."""
    lane = state.lane
    if lane is None:
        return EgoState(speed_mps=state.speed_mps, accel_mps2=state.accel_mps2,
                        steer_rad=state.steer_rad, yaw_rate_radps=state.yaw_rate_radps,
                        set_speed_mps=state.set_speed_mps)
    return EgoState(speed_mps=state.speed_mps, accel_mps2=state.accel_mps2,
                    steer_rad=state.steer_rad, yaw_rate_radps=state.yaw_rate_radps,
                    set_speed_mps=state.set_speed_mps,
                    lateral_offset_m=lane.lateral_offset_m, heading_rel_rad=lane.heading_rel_rad,
                    lane_index=lane.lane_index, n_lanes=lane.n_lanes,
                    lane_width_m=lane.lane_width_m, speed_limit_mps=lane.speed_limit_mps,
                    road_curvature_1pm=lane.road_curvature_1pm,
                    curvature_preview_1pm=tuple(lane.curvature_preview_1pm),
                    preview_step_m=lane.preview_step_m)


def vehicle_input(state: VehicleState) -> VehicleInput:
    """The stack's input from `vehicle.state`."""
    return VehicleInput(stamp_ns=state.stamp_ns, x_m=state.pose.x_m, y_m=state.pose.y_m,
                        yaw_rad=state.pose.yaw_rad, ego=ego_state(state),
                        localised=state.lane is not None)


def seen_object(obj: DetectedObject) -> SeenObject:
    """One tracked object from `perception.objects` (unknown classes count as cars)."""
    return SeenObject(
        track_id=obj.track_id,
        object_class=as_object_class(obj.object_class),
        position_m=None if obj.position_m is None else (obj.position_m.x, obj.position_m.y),
        velocity_mps=None if obj.velocity_mps is None else (obj.velocity_mps.x,
                                                            obj.velocity_mps.y),
        accel_mps2=None if obj.accel_mps2 is None else (obj.accel_mps2.x, obj.accel_mps2.y))


def camera_objects(result: PerceptionObjects, traceparent: str = "") -> CameraObjects[Source]:
    """The stack's input from `perception.objects`, tagged with the message and its trace."""
    return CameraObjects(camera_id=result.camera_id, stamp_ns=result.source.stamp_ns,
                         objects=tuple(seen_object(o) for o in result.objects),
                         tag=(result, traceparent))


def trajectory_points(traj: Trajectory, step: int = 5) -> list[TrajectoryPoint]:
    """Every `step`-th sample of a trajectory (and the last) for `planning.trajectory`."""
    idx = list(range(0, len(traj), step))
    if idx and idx[-1] != len(traj) - 1:
        idx.append(len(traj) - 1)
    return [TrajectoryPoint(t_s=float(traj.t_s[i]), x_m=float(traj.x_m[i]),
                            y_m=float(traj.y_m[i]), v_mps=float(traj.v_mps[i])) for i in idx]
