"""Road-aligned frames used by the planner.

Frames:
- ego frame E: x forward, y left, origin at the rear axle (project convention);
- road frame R: Cartesian, origin at the foot point of the ego on the centre line of its
  current lane, x along the lane direction there, y left. The ego sits at (0, d0) with yaw
  ψ0 (its lateral offset and heading relative to the lane);
- Frenet frame (s, d): arc length along the current lane's centre line (a circle of the
  given constant curvature, a straight line when it is 0) and signed offset to its left.

The bicycle rollout runs in R (exact kinematics), the scoring runs in Frenet (lane bounds
and road-following predictions are simple there).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from planning.types import EgoState, FloatArray

_STRAIGHT_CURVATURE_1PM = 1e-6  # below this a circle is numerically a straight line


def ego_to_road_xy(
    x_e: Tensor, y_e: Tensor, d0_m: float, psi0_rad: float
) -> tuple[Tensor, Tensor]:
    """Points (or vectors when ``d0_m`` is 0) from the ego frame into the road frame."""
    c, s = math.cos(psi0_rad), math.sin(psi0_rad)
    return c * x_e - s * y_e, s * x_e + c * y_e + d0_m


def road_to_ego_xy(
    x_r: FloatArray, y_r: FloatArray, d0_m: float, psi0_rad: float
) -> tuple[FloatArray, FloatArray]:
    """Inverse of :func:`ego_to_road_xy` for points (numpy, used on the chosen trajectory)."""
    c, s = math.cos(psi0_rad), math.sin(psi0_rad)
    dy = y_r - d0_m
    return c * x_r + s * dy, -s * x_r + c * dy


def road_xy_to_frenet(x_r: Tensor, y_r: Tensor, curvature_1pm: float) -> tuple[Tensor, Tensor]:
    """(s, d) of road-frame points relative to the constant-curvature centre line.

    Valid within half a turn of the circle, far beyond a 5 s horizon on real roads.
    """
    if abs(curvature_1pm) < _STRAIGHT_CURVATURE_1PM:
        return x_r, y_r
    radius = 1.0 / curvature_1pm  # signed: centre of the circle at (0, radius)
    sign = 1.0 if radius > 0 else -1.0
    rel_y = radius - y_r
    theta = torch.atan2(sign * x_r, sign * rel_y)
    rho = torch.sqrt(x_r * x_r + rel_y * rel_y)
    return radius * theta, radius - sign * rho


def road_heading(s_m: Tensor, curvature_1pm: float) -> Tensor:
    """Direction of the centre line at arc length ``s_m`` in the road frame [rad]."""
    return s_m * curvature_1pm


def frenet_to_road_xy_np(
    s_m: FloatArray, d_m: FloatArray, curvature_1pm: float
) -> tuple[FloatArray, FloatArray]:
    """Road-frame points of Frenet coordinates (numpy; used by tests and tools)."""
    if abs(curvature_1pm) < _STRAIGHT_CURVATURE_1PM:
        return np.asarray(s_m, dtype=np.float64), np.asarray(d_m, dtype=np.float64)
    radius = 1.0 / curvature_1pm
    theta = np.asarray(s_m) / radius
    return (radius - d_m) * np.sin(theta), radius - (radius - d_m) * np.cos(theta)


# A previewed centre line is integrated at this spacing [m]; its heading error between two
# samples is κ·step/2, under 1 mrad on any road radius above 500 m.
_LINE_STEP_M = 1.0
_LINE_BEHIND_M = 100.0  # the line runs this far behind the ego, at the present curvature [m]


def previewed_frenet(
    x_r: Tensor, y_r: Tensor, curvature_1pm: float, preview_1pm: tuple[float, ...],
    preview_step_m: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(s, d, centre-line heading, centre-line curvature) of a few road-frame points.

    The centre line has curvature ``preview_1pm[i]`` from ``i · preview_step_m`` ahead of the
    ego's foot point to the next station (the last one holds beyond), and ``curvature_1pm``
    behind it; without a preview it is the constant-curvature circle of
    :func:`road_xy_to_frenet`, in closed form. Meant for the tens of tracked objects, not for
    the candidate batch: each point is projected onto the line sampled every metre (nearest
    sample, then along its tangent).
    """
    if not preview_1pm:
        s, d = road_xy_to_frenet(x_r, y_r, curvature_1pm)
        return s, d, road_heading(s, curvature_1pm), torch.full_like(s, curvature_1pm)
    ahead_m = max(len(preview_1pm) * preview_step_m, 50.0) + 250.0
    s_line = np.arange(-_LINE_BEHIND_M, ahead_m + _LINE_STEP_M, _LINE_STEP_M)
    # Each 1 m interval takes the curvature at its middle, so a curve begins where it does.
    mid_s = s_line[:-1] + 0.5 * _LINE_STEP_M
    station = np.clip(np.floor(mid_s / preview_step_m).astype(np.int64), 0, len(preview_1pm) - 1)
    kappa = np.where(mid_s < 0.0, curvature_1pm, np.asarray(preview_1pm, dtype=np.float64)[station])
    kappa = np.append(kappa, kappa[-1])  # the last sample's onward curvature
    zero = round(_LINE_BEHIND_M / _LINE_STEP_M)
    # Heading at each sample, anchored at the foot point (s = 0); each interval is an arc, so
    # its chord points along the heading at its middle.
    theta = np.concatenate([[0.0], np.cumsum(kappa[:-1] * _LINE_STEP_M)])
    theta -= theta[zero]
    chord = theta[:-1] + 0.5 * kappa[:-1] * _LINE_STEP_M
    x_line = np.concatenate([[0.0], np.cumsum(np.cos(chord) * _LINE_STEP_M)])
    y_line = np.concatenate([[0.0], np.cumsum(np.sin(chord) * _LINE_STEP_M)])
    x_line -= x_line[zero]
    y_line -= y_line[zero]
    px = x_r.detach().cpu().double().numpy()
    py = y_r.detach().cpu().double().numpy()
    nearest = np.argmin((px[:, None] - x_line[None, :]) ** 2 + (py[:, None] - y_line[None, :]) ** 2,
                        axis=1)
    cos_t, sin_t = np.cos(theta[nearest]), np.sin(theta[nearest])
    dx, dy = px - x_line[nearest], py - y_line[nearest]
    s = s_line[nearest] + cos_t * dx + sin_t * dy
    d = -sin_t * dx + cos_t * dy
    heading = theta[nearest] + kappa[nearest] * (s - s_line[nearest])

    def back(a: FloatArray) -> Tensor:
        return torch.as_tensor(a, dtype=x_r.dtype, device=x_r.device)

    return back(s), back(d), back(heading), back(kappa[nearest])


def lane_centre_point(x_m: float, y_m: float, ego: EgoState) -> tuple[float, float, float]:
    """The ego-frame point on the centre line of the lane nearest to ego-frame (x, y), or the
    point itself when that lane is not on the road (a parked car on the shoulder), and the
    direction of the road there in the ego frame [rad].

    Lanes are counted from the ego's (``ego.lane_index`` of ``ego.n_lanes``, all
    ``ego.lane_width_m`` wide) along the previewed centre line (:func:`previewed_frenet`).
    """
    x_r, y_r = ego_to_road_xy(torch.tensor([x_m], dtype=torch.float64),
                              torch.tensor([y_m], dtype=torch.float64),
                              ego.lateral_offset_m, ego.heading_rel_rad)
    _, d, heading, _ = previewed_frenet(x_r, y_r, ego.road_curvature_1pm,
                                        ego.curvature_preview_1pm, ego.preview_step_m)
    d_m, theta = float(d[0]), float(heading[0])
    shift = round(d_m / ego.lane_width_m)
    direction = theta - ego.heading_rel_rad
    if not 0 <= ego.lane_index + shift < ego.n_lanes:
        return x_m, y_m, direction
    move = shift * ego.lane_width_m - d_m
    xs = np.array([float(x_r[0]) - move * math.sin(theta)])
    ys = np.array([float(y_r[0]) + move * math.cos(theta)])
    x_e, y_e = road_to_ego_xy(xs, ys, ego.lateral_offset_m, ego.heading_rel_rad)
    return float(x_e[0]), float(y_e[0]), direction
