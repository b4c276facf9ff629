"""Oriented boxes on the ground plane: overlap by the separating axis theorem, gaps, impact speed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class OrientedBox:
    """A footprint: centre x, y [m], yaw [rad], length along yaw and width [m]."""

    x_m: float
    y_m: float
    yaw_rad: float
    length_m: float
    width_m: float

    def axes(self) -> FloatArray:
        """Unit vectors of the box's length and width directions, shape (2, 2)."""
        c, s = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        return np.array([[c, s], [-s, c]])

    def corners(self) -> FloatArray:
        """The four corners, counter-clockwise, shape (4, 2)."""
        ax = self.axes()
        hl = ax[0] * self.length_m / 2
        hw = ax[1] * self.width_m / 2
        c = np.array([self.x_m, self.y_m])
        return np.array([c + hl - hw, c + hl + hw, c - hl + hw, c - hl - hw])


def boxes_overlap(a: OrientedBox, b: OrientedBox) -> bool:
    """True when the footprints intersect (touching counts); separating axis theorem."""
    ca, cb = a.corners(), b.corners()
    for axis in np.vstack([a.axes(), b.axes()]):
        pa, pb = ca @ axis, cb @ axis
        if pa.max() < pb.min() or pb.max() < pa.min():
            return False
    return True


def _point_segment_dist(p: FloatArray, a: FloatArray, b: FloatArray) -> FloatArray:
    """Distances from points p (n, 2) to segments a→b (m, 2): shape (n, m)."""
    ab = b - a
    ap = p[:, None, :] - a[None, :, :]
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.asarray(np.linalg.norm(p[:, None, :] - closest, axis=-1))


def box_distance(a: OrientedBox, b: OrientedBox) -> float:
    """Shortest gap between two footprints [m]; 0 when they overlap."""
    if boxes_overlap(a, b):
        return 0.0
    ca, cb = a.corners(), b.corners()
    ea, eb = np.roll(ca, -1, axis=0), np.roll(cb, -1, axis=0)
    return float(min(_point_segment_dist(ca, cb, eb).min(), _point_segment_dist(cb, ca, ea).min()))


def impact_speed(v_a: tuple[float, float], v_b: tuple[float, float]) -> float:
    """Relative speed of two bodies [m/s] from their world velocities [m/s]."""
    return math.hypot(v_a[0] - v_b[0], v_a[1] - v_b[1])
