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

from planning.types import FloatArray

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
