"""Fusion of the cameras' tracked objects into obstacles over the ground, in ego axes.

The one owner of object motion in the world frame: perception reports motion relative to
the ego frame, and here it becomes motion over the ground (v_rel + v_ego + ω × r), is
filtered in the world frame (:mod:`planning.ground_motion`), coasts while unseen and keeps
its lane.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from common import in_path
from common.classes import ObjectClass, as_object_class
from planning.frames import lane_centre_point
from planning.ground_motion import Coasted, GroundMotion, rotate
from planning.inputs import CameraObjects, SeenObject, VehicleInput
from planning.types import Obstacle, Trajectory


def obstacle(obj: SeenObject, state: VehicleInput) -> Obstacle | None:
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
    x, y = obj.position_m
    omega = state.ego.yaw_rate_radps
    vx, vy = state.speed_mps - omega * y, omega * x
    ax = ay = 0.0
    if obj.velocity_mps is not None:
        vx, vy = vx + obj.velocity_mps[0], vy + obj.velocity_mps[1]
    if obj.accel_mps2 is not None and accel_resolved(obj):
        ax, ay = obj.accel_mps2[0] + state.ego.accel_mps2, obj.accel_mps2[1]
    return Obstacle(x_m=x, y_m=y, vx_mps=vx, vy_mps=vy, ax_mps2=ax, ay_mps2=ay,
                    object_class=obj.object_class, track_id=obj.track_id)


def accel_resolved(obj: SeenObject) -> bool:
    """Whether perception resolved the object's relative acceleration (it reports 0 if not)."""
    return obj.accel_mps2 is not None and obj.accel_mps2[0] != 0.0


def obstacles(results: Sequence[CameraObjects[Any]], state: VehicleInput,
              motion: GroundMotion | None = None,
              states: Mapping[int, VehicleInput] | None = None) -> list[Obstacle]:
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
        seen = (states or {}).get(result.stamp_ns, state)
        for obj in result.objects:
            o = obstacle(obj, state)
            if o is None:
                continue
            if motion is not None:
                key = (result.camera_id, obj.track_id)
                keys.add(key)
                o = ground_velocity(o, motion, key, result.stamp_ns, seen, state)
                world = motion.accel(key)
                if not accel_resolved(obj) and world is not None:
                    # Both components: its sideways value is noisy for a new track (5 m/s² for
                    # a parked car in night_city), but the planner takes only the braking along
                    # the object's motion, and dropping it cost cpnc_40kph a collision (7 m/s).
                    ax, ay = rotate(*world, -state.yaw_rad)
                    o = replace(o, ax_mps2=ax, ay_mps2=ay)
            out.append(o)
    if motion is not None and results:
        out.extend(coasted(motion.coasted(results[0].stamp_ns, keys), state))
    return out


def coasted(tracks: list[Coasted], state: VehicleInput) -> list[Obstacle]:
    """Unseen tracks (world frame) as obstacles in the ego frame of ``state``.

    A coasted car or truck keeps its lane, so when the ego is localised it is placed on the
    centre of the lane nearest to where it was dead-reckoned: it was mostly last seen leaving
    the view beside the ego, its box cut by the image edge, and such a box ranges it 0.4-0.8 m
    towards the ego (free_cruise_rain: a ghost reaching into the ego's lane and a 4.8 m/s²
    brake).
    """
    yaw = state.yaw_rad
    out = []
    for t in tracks:
        x, y = rotate(t.position_m[0] - state.x_m, t.position_m[1] - state.y_m, -yaw)
        vx, vy = rotate(*t.velocity_mps, -yaw)
        if state.localised and t.keeps_lane:
            x, y, direction = lane_centre_point(x, y, state.ego)
            # along the lane, not along the ego's heading when it was last seen (mid lane
            # change that made the ghost drift 0.4 m/s into the ego's lane)
            along = vx * math.cos(direction) + vy * math.sin(direction)
            vx, vy = along * math.cos(direction), along * math.sin(direction)
        out.append(Obstacle(x_m=x, y_m=y, vx_mps=vx, vy_mps=vy, object_class=t.object_class,
                            track_id=t.key[1]))
    return out


def ground_velocity(o: Obstacle, motion: GroundMotion, key: tuple[str, int], stamp_ns: int,
                    seen: VehicleInput, state: VehicleInput) -> Obstacle:
    """``o`` with its velocity from the world-frame filter, which sees it from ``seen``."""
    pose = (seen.x_m, seen.y_m, seen.yaw_rad)
    prior = rotate(o.vx_mps, o.vy_mps, seen.yaw_rad)
    cls = as_object_class(o.object_class)
    gx, gy = motion.update(key, stamp_ns, pose, (o.x_m, o.y_m), cls, prior)
    vx, vy = rotate(gx, gy, -state.yaw_rad)  # world → ego axes at planning time
    return replace(o, vx_mps=vx if cls == ObjectClass.PEDESTRIAN else o.vx_mps, vy_mps=vy)


def closest_in_path(obstacles_: list[Obstacle]) -> tuple[float, float] | None:
    """The nearest obstacle ahead in the ego's path (the one rule, :mod:`common.in_path`): its
    distance [m] and its speed along the ego's axis over the ground [m/s], if there is one."""
    return in_path.closest_in_path((o.x_m, o.y_m, o.vx_mps) for o in obstacles_)


def pose_on_plan(traj: Trajectory, elapsed_s: float) -> tuple[float, float, float]:
    """Where the ego should be on a held plan after `elapsed_s` (x, y, yaw in the plan frame)."""
    t = min(max(elapsed_s, 0.0), float(traj.t_s[-1]))
    return (float(np.interp(t, traj.t_s, traj.x_m)), float(np.interp(t, traj.t_s, traj.y_m)),
            float(np.interp(t, traj.t_s, traj.yaw_rad)))
