"""Pure conversions between the wire contract and the planner's types."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from planning.frames import lane_centre_point
from planning.ground_motion import Coasted, GroundMotion, rotate
from planning.types import EgoState, ObjectClass, Obstacle, Trajectory, as_object_class
from services.messages import (
    DetectedObject,
    PerceptionObjects,
    TrajectoryPoint,
    VehicleState,
)

CLASS_IDS = {"car": ObjectClass.CAR, "truck": ObjectClass.TRUCK,
             "pedestrian": ObjectClass.PEDESTRIAN, "cyclist": ObjectClass.CYCLIST}
IN_PATH_HALF_WIDTH_M = 1.8  # an object this close to the ego's centre line is "in path" [m]


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


def obstacle(obj: DetectedObject, state: VehicleState) -> Obstacle | None:
    """An obstacle over the ground in ego axes, or None when the object was not ranged.

    Perception reports motion relative to the ego frame, which moves at the ego's speed and
    turns at its yaw rate ω: over the ground, v = v_rel + (v_ego, 0) + ω × r, so a parked car
    40 m ahead does not seem to slide sideways while the ego steers. A resolved relative
    acceleration adds the ego's own (the rotating frame's smaller terms are left out; the
    planner uses only braking along the road). Perception reports 0 for one it cannot resolve,
    and that is taken as none over the ground, not as the ego's: read as the ego's, every car
    ahead seemed to brake as the ego braked, and the ego braked harder for it (6 m/s² on a free
    road, free_cruise_dusk). With ``motion`` (in :func:`obstacles`), a vehicle whose relative
    acceleration is not resolved gets its world-frame estimate instead
    (``GroundMotion.accel``): a lead braking in step with the ego shows none relative.
    """
    if obj.position_m is None:
        return None
    x, y = obj.position_m.x, obj.position_m.y
    omega = state.yaw_rate_radps
    vx, vy = state.speed_mps - omega * y, omega * x
    ax = ay = 0.0
    if obj.velocity_mps is not None:
        vx, vy = vx + obj.velocity_mps.x, vy + obj.velocity_mps.y
    if obj.accel_mps2 is not None and accel_resolved(obj):
        ax, ay = obj.accel_mps2.x + state.accel_mps2, obj.accel_mps2.y
    return Obstacle(x_m=x, y_m=y, vx_mps=vx, vy_mps=vy, ax_mps2=ax, ay_mps2=ay,
                    object_class=CLASS_IDS.get(str(obj.object_class), ObjectClass.CAR),
                    track_id=obj.track_id)


def accel_resolved(obj: DetectedObject) -> bool:
    """Whether perception resolved the object's relative acceleration (it reports 0 if not)."""
    return obj.accel_mps2 is not None and obj.accel_mps2.x != 0.0


def obstacles(results: list[PerceptionObjects], state: VehicleState,
              motion: GroundMotion | None = None,
              states: Mapping[int, VehicleState] | None = None) -> list[Obstacle]:
    """Obstacles from the latest result of each camera, over the ground given the ego state.

    With ``motion`` each object's position is also fused into its world-frame filter, with
    the ego pose of its own frame (from ``states`` by stamp, else ``state``), and the filtered
    velocity replaces the lateral velocity of every object and the whole velocity of a
    pedestrian, and confirmed tracks no camera sees now are added, coasted (see
    :mod:`planning.ground_motion`).
    """
    out = []
    keys = set()
    for result in results:
        seen = (states or {}).get(result.source.stamp_ns, state)
        for obj in result.objects:
            o = obstacle(obj, state)
            if o is None:
                continue
            if motion is not None:
                key = (result.camera_id, obj.track_id)
                keys.add(key)
                o = ground_velocity(o, motion, key, result.source.stamp_ns, seen, state)
                world = motion.accel(key)
                if not accel_resolved(obj) and world is not None:
                    # Both components: its sideways value is noisy for a new track (5 m/s² for
                    # a parked car in night_city), but the planner takes only the braking along
                    # the object's motion, and dropping it cost cpnc_40kph a collision (7 m/s).
                    ax, ay = rotate(*world, -state.pose.yaw_rad)
                    o = replace(o, ax_mps2=ax, ay_mps2=ay)
            out.append(o)
    if motion is not None and results:
        out.extend(coasted(motion.coasted(results[0].source.stamp_ns, keys), state))
    return out


def coasted(tracks: list[Coasted], state: VehicleState) -> list[Obstacle]:
    """Unseen tracks (world frame) as obstacles in the ego frame of ``state``.

    A coasted car or truck keeps its lane, so when the ego is localised it is placed on the
    centre of the lane nearest to where it was dead-reckoned: it was mostly last seen leaving
    the view beside the ego, its box cut by the image edge, and such a box ranges it 0.4-0.8 m
    towards the ego (free_cruise_rain: a ghost reaching into the ego's lane and a 4.8 m/s²
    brake).
    """
    yaw = state.pose.yaw_rad
    ego = ego_state(state) if state.lane is not None else None
    out = []
    for t in tracks:
        x, y = rotate(t.position_m[0] - state.pose.x_m, t.position_m[1] - state.pose.y_m, -yaw)
        vx, vy = rotate(*t.velocity_mps, -yaw)
        if ego is not None and t.keeps_lane:
            x, y, direction = lane_centre_point(x, y, ego)
            # along the lane, not along the ego's heading when it was last seen (mid lane
            # change that made the ghost drift 0.4 m/s into the ego's lane)
            along = vx * math.cos(direction) + vy * math.sin(direction)
            vx, vy = along * math.cos(direction), along * math.sin(direction)
        out.append(Obstacle(x_m=x, y_m=y, vx_mps=vx, vy_mps=vy, object_class=t.object_class,
                            track_id=t.key[1]))
    return out


def ground_velocity(o: Obstacle, motion: GroundMotion, key: tuple[str, int], stamp_ns: int,
                    seen: VehicleState, state: VehicleState) -> Obstacle:
    """``o`` with its velocity from the world-frame filter, which sees it from ``seen``."""
    pose = (seen.pose.x_m, seen.pose.y_m, seen.pose.yaw_rad)
    prior = rotate(o.vx_mps, o.vy_mps, seen.pose.yaw_rad)
    cls = as_object_class(o.object_class)
    gx, gy = motion.update(key, stamp_ns, pose, (o.x_m, o.y_m), cls, prior)
    vx, vy = rotate(gx, gy, -state.pose.yaw_rad)  # world → ego axes at planning time
    return replace(o, vx_mps=vx if cls == ObjectClass.PEDESTRIAN else o.vx_mps, vy_mps=vy)


def closest_in_path(obstacles_: list[Obstacle]) -> tuple[float, float] | None:
    """The nearest obstacle ahead in the ego's path: its distance [m] and its speed along the
    ego's axis over the ground [m/s], if there is one."""
    ahead = [(o.x_m, o.vx_mps) for o in obstacles_
             if o.x_m > 0 and abs(o.y_m) < IN_PATH_HALF_WIDTH_M]
    return min(ahead) if ahead else None


def trajectory_points(traj: Trajectory, step: int = 5) -> list[TrajectoryPoint]:
    """Every `step`-th sample of a trajectory (and the last) for `planning.trajectory`."""
    idx = list(range(0, len(traj), step))
    if idx and idx[-1] != len(traj) - 1:
        idx.append(len(traj) - 1)
    return [TrajectoryPoint(t_s=float(traj.t_s[i]), x_m=float(traj.x_m[i]),
                            y_m=float(traj.y_m[i]), v_mps=float(traj.v_mps[i])) for i in idx]


def pose_on_plan(traj: Trajectory, elapsed_s: float) -> tuple[float, float, float]:
    """Where the ego should be on a held plan after `elapsed_s` (x, y, yaw in the plan frame)."""
    t = min(max(elapsed_s, 0.0), float(traj.t_s[-1]))
    return (float(np.interp(t, traj.t_s, traj.x_m)), float(np.interp(t, traj.t_s, traj.y_m)),
            float(np.interp(t, traj.t_s, traj.yaw_rad)))
