"""Obstacle prediction: tracked objects → grown, road-aligned boxes over the horizon.

Predictions are constant velocity along the road (Frenet frame): an object keeps its speed
along and across its lane, so a car ahead on a curve stays in its lane. One exception, the
conservative one: an object that is braking along the road keeps braking at its tracked
deceleration until it stops (a braking lead predicted at constant speed always looks farther
than it will be: Euro NCAP CCRb). Speeding up is ignored, so the prediction never draws an
object away faster than it moves now. For the same reason lateral motion away from the ego's
line is ignored (an object in the ego's lane stays there; one moving towards the line keeps
moving): the lateral velocity of a car 40 m ahead is the least certain number perception
gives, as the ego's own yawing shows up in it, and trusting it to clear the lane is how a
braking lead gets hit. Each object's
footprint is its road-aligned bounding box (aligned with its velocity when it moves) grown
by an uncertainty margin sigma0 + growth·t, separately along and across the road; along
the road the growth scales with the object's speed (see ``PlannerConfig``). A pedestrian or
cyclist moving towards the ego's line is stretched ahead of it by the strip it crosses in
``crossing_margin_s``: the ego yields to it rather than racing it across its path; a
pedestrian that has started to cross is predicted at a walking pace at least, and never
walking away along the road.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from common.classes import ObjectClass, as_object_class
from planning.config import PlannerConfig
from planning.frames import ego_to_road_xy, previewed_frenet
from planning.types import EgoState, Obstacle, VehicleParams

_MOVING_MPS = 1.0  # above this an object's footprint is aligned with its velocity
_FAR_M = 1e6  # lateral position given to ignored objects: never near any candidate
_VULNERABLE = (ObjectClass.PEDESTRIAN, ObjectClass.CYCLIST)


@dataclass(frozen=True, slots=True)
class ObstacleTensors:
    """Objects in Frenet coordinates: (M,) state at t = 0 and (M, T) predicted boxes."""

    s0_m: Tensor
    d0_m: Tensor
    vs_mps: Tensor  # rate of change of s (already divided by 1 − κd)
    vd_mps: Tensor
    s_end_m: Tensor  # predicted s of the centre at the horizon end
    vs_end_mps: Tensor  # predicted rate of change of s at the horizon end
    ignored: Tensor  # bool: starts behind the ego in its corridor (the follower's duty)
    rear_m: Tensor  # (M, T) grown box edges over the horizon; ignored objects sit far away
    front_m: Tensor
    right_m: Tensor
    left_m: Tensor

    @property
    def m(self) -> int:
        """Number of objects."""
        return int(self.s0_m.shape[0])

    def subset(self, keep: Tensor) -> ObstacleTensors:
        """The objects where ``keep`` (M,) bool is True."""
        idx = torch.nonzero(keep).squeeze(1)
        return ObstacleTensors(
            s0_m=self.s0_m[idx], d0_m=self.d0_m[idx], vs_mps=self.vs_mps[idx],
            vd_mps=self.vd_mps[idx], s_end_m=self.s_end_m[idx],
            vs_end_mps=self.vs_end_mps[idx], ignored=self.ignored[idx], rear_m=self.rear_m[idx],
            front_m=self.front_m[idx], right_m=self.right_m[idx], left_m=self.left_m[idx],
        )


def predict_obstacles(
    obstacles: Sequence[Obstacle],
    ego: EgoState,
    t_s: Tensor,
    config: PlannerConfig,
    vehicle: VehicleParams,
) -> ObstacleTensors:
    """Convert tracked objects (ego frame) to predicted, grown boxes in Frenet coordinates."""
    classes = [as_object_class(o.object_class) for o in obstacles]
    rows = np.array(
        [
            (
                o.x_m, o.y_m, o.vx_mps, o.vy_mps, o.ax_mps2, o.ay_mps2, *o.size_m(),
                config.growth_lon_mps.get(cls, 0.5), config.growth_lat_mps.get(cls, 0.2),
                float(cls in _VULNERABLE), config.crossing_speed_mps.get(cls, 0.0),
            )
            for o, cls in zip(obstacles, classes, strict=True)
        ],
        dtype=np.float64,
    ).reshape(-1, 12)
    data = torch.as_tensor(rows).to(device=t_s.device, dtype=t_s.dtype)
    x, y, vx, vy, ax, ay, length, width, g_lon, g_lat, vulnerable, pace = data.unbind(dim=1)
    xr, yr = ego_to_road_xy(x, y, ego.lateral_offset_m, ego.heading_rel_rad)
    vxr, vyr = ego_to_road_xy(vx, vy, 0.0, ego.heading_rel_rad)
    # Each object against the centre line where it is: with a curvature preview, a car in the
    # next lane of a curve that begins ahead stays in its lane, instead of seeming to drift
    # towards the ego's line as a straight (or constant-curvature) frame would make it.
    s0, d0, theta, kappa = previewed_frenet(xr, yr, ego.road_curvature_1pm,
                                            ego.curvature_preview_1pm, ego.preview_step_m)
    cos_t, sin_t = torch.cos(theta), torch.sin(theta)
    vs = (cos_t * vxr + sin_t * vyr) / (1.0 - kappa * d0)
    vd = -sin_t * vxr + cos_t * vyr
    # A pedestrian is never counted on to walk out of the way along the road: its speed along
    # the road is the least certain of its numbers (a monocular range rate), and an error
    # that draws it away opens a gap in front of it that is not there.
    vs = torch.where(pace > 0.0, vs.clamp_max(0.0), vs)
    axr, ayr = ego_to_road_xy(ax, ay, 0.0, ego.heading_rel_rad)
    # Braking only (see the module doc), and only for an object moving forward along s.
    brake = torch.where(vs > 0.0, (cos_t * axr + sin_t * ayr).clamp_max(0.0), 0.0)
    t_stop = torch.where(brake < 0.0, vs / (-brake).clamp_min(1e-6), math.inf)
    speed = torch.hypot(vs, vd)
    heading = torch.where(speed > _MOVING_MPS, torch.atan2(vd, vs), torch.zeros_like(vs))
    ch, sh = torch.cos(heading).abs(), torch.sin(heading).abs()
    half_len = 0.5 * (ch * length + sh * width)
    half_wid = 0.5 * (sh * length + ch * width)
    # Ego footprint at t = 0 (its centre is ahead of the rear axle).
    ego_s = vehicle.rear_axle_to_centre_m * math.cos(ego.heading_rel_rad)
    ego_d = ego.lateral_offset_m + vehicle.rear_axle_to_centre_m * math.sin(ego.heading_rel_rad)
    behind = s0 + half_len < ego_s - 0.5 * vehicle.length_m
    ignored = behind & ((d0 - ego_d).abs() < half_wid + 0.5 * vehicle.width_m)
    speed_factor = (speed / config.growth_full_speed_mps).clamp(config.growth_speed_floor, 1.0)
    vd = torch.where((d0 - ego_d) * vd < 0.0, vd, 0.0)  # towards the ego's line, or not at all
    crossing = (pace > 0.0) & (vd.abs() >= config.crossing_detect_mps)
    vd = torch.where(crossing, torch.sign(vd) * torch.maximum(vd.abs(), pace), vd)

    t = t_s[None, :]
    tau = torch.minimum(t, t_stop[:, None])  # time spent moving (all of it when not braking)
    s = s0[:, None] + vs[:, None] * tau + 0.5 * brake[:, None] * tau * tau
    d = torch.where(ignored, _FAR_M, d0)[:, None] + vd[:, None] * t
    reach_s = (half_len + config.sigma0_lon_m)[:, None] + (g_lon * speed_factor)[:, None] * t
    reach_d = (half_wid + config.sigma0_lat_m)[:, None] + g_lat[:, None] * t
    ahead = (vulnerable * vd * config.crossing_margin_s)[:, None]  # the strip it will cross
    return ObstacleTensors(
        s0_m=s0, d0_m=d0, vs_mps=vs, vd_mps=vd, s_end_m=s[:, -1],
        vs_end_mps=vs + brake * tau[:, -1], ignored=ignored,
        rear_m=s - reach_s, front_m=s + reach_s, right_m=d - reach_d + ahead.clamp_max(0.0),
        left_m=d + reach_d + ahead.clamp_min(0.0),
    )
