"""Road geometry: the centre line as closed-form straight and arc pieces, and Frenet helpers.

Station `s` [m] runs along the centre line from the world origin (heading east); lateral
offset `d` [m] is positive to the left. Past its authored length the road runs on straight,
so nothing falls off the end of the world.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simulators.scenario import ArcSegment, RoadSpec

RUN_OUT_M = 3000.0  # [m] straight added after the authored road
KERB_M = 0.25  # [m] kerb width beside the shoulder
KERB_HEIGHT_M = 0.12  # [m]

FloatArray = NDArray[np.float64]


class Road:
    """Closed-form centre line of a `RoadSpec`, with lane and edge offsets."""

    def __init__(self, spec: RoadSpec) -> None:
        self.spec = spec
        self.lanes = spec.lanes
        self.lane_width_m = spec.lane_width_m
        self.length_m = spec.length_m
        self.speed_limit_mps = spec.speed_limit_kph / 3.6
        s0, x0, y0, h0, k = [0.0], [0.0], [0.0], [0.0], []
        for seg in spec.segments:
            k.append(seg.curvature_1pm if isinstance(seg, ArcSegment) else 0.0)
            x, y, h = self._advance(x0[-1], y0[-1], h0[-1], k[-1], seg.length_m)
            s0.append(s0[-1] + seg.length_m)
            x0.append(x)
            y0.append(y)
            h0.append(h)
        k.append(0.0)  # the run-out
        self._s0 = np.array(s0)
        self._x0 = np.array(x0)
        self._y0 = np.array(y0)
        self._h0 = np.array(h0)
        self._k = np.array(k)
        self._s0_list, self._x0_list, self._y0_list = s0, x0, y0
        self._h0_list, self._k_list = h0, k

    @staticmethod
    def _advance(x: float, y: float, h: float, k: float, ds: float) -> tuple[float, float, float]:
        sinc = float(np.sinc(k * ds / (2 * math.pi)))
        mid = h + k * ds / 2
        return x + ds * math.cos(mid) * sinc, y + ds * math.sin(mid) * sinc, h + k * ds

    @property
    def half_width_m(self) -> float:
        """Centre line to the outer edge of the outermost lane [m]."""
        return self.lanes * self.lane_width_m / 2

    def lane_d(self, lane: int) -> float:
        """Lateral offset of a lane centre [m]; lane 0 is the rightmost."""
        return (lane - (self.lanes - 1) / 2) * self.lane_width_m

    def lane_of(self, d: float) -> int:
        """The lane containing lateral offset `d` (clamped to existing lanes)."""
        lane = math.floor(d / self.lane_width_m + self.lanes / 2)
        return min(max(lane, 0), self.lanes - 1)

    def _piece(self, s: FloatArray) -> NDArray[np.intp]:
        return np.clip(np.searchsorted(self._s0, s, side="right") - 1, 0, len(self._k) - 1)

    def pose(self, s: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Centre-line x, y [m] and heading [rad] at stations `s` (vectorised)."""
        s_arr = np.asarray(s, dtype=np.float64)
        i = self._piece(s_arr)
        ds = s_arr - self._s0[i]
        k = self._k[i]
        mid = self._h0[i] + k * ds / 2
        sinc = np.sinc(k * ds / (2 * math.pi))
        x = self._x0[i] + ds * np.cos(mid) * sinc
        y = self._y0[i] + ds * np.sin(mid) * sinc
        return x, y, self._h0[i] + k * ds

    def curvature(self, s: ArrayLike) -> FloatArray:
        """Signed centre-line curvature [1/m] at stations `s`."""
        return self._k[self._piece(np.asarray(s, dtype=np.float64))]

    def point(self, s: ArrayLike, d: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """World x, y [m] of Frenet points (s, d)."""
        x, y, h = self.pose(s)
        d_arr = np.asarray(d, dtype=np.float64)
        return x - d_arr * np.sin(h), y + d_arr * np.cos(h)

    def _pose1(self, s: float) -> tuple[float, float, float, float]:
        """Scalar centre-line x, y, heading and curvature (the hot path of the world step)."""
        i = min(max(bisect.bisect_right(self._s0_list, s) - 1, 0), len(self._k_list) - 1)
        ds = s - self._s0_list[i]
        k = self._k_list[i]
        h0 = self._h0_list[i]
        half = k * ds / 2
        sinc = math.sin(half) / half if abs(half) > 1e-9 else 1.0
        mid = h0 + half
        return (self._x0_list[i] + ds * math.cos(mid) * sinc,
                self._y0_list[i] + ds * math.sin(mid) * sinc, h0 + k * ds, k)

    def frenet_pose(self, s: float, d: float) -> tuple[float, float, float]:
        """World x, y [m] and road heading [rad] at one Frenet point."""
        x, y, h, _ = self._pose1(s)
        return x - d * math.sin(h), y + d * math.cos(h), h

    def curvature_at(self, s: float) -> float:
        """Signed curvature [1/m] at one station."""
        return self._pose1(s)[3]

    def project(self, x: float, y: float, s_hint: float | None = None) -> tuple[float, float]:
        """Frenet (s, d) of world point (x, y); `s_hint` near the answer speeds it up."""
        if s_hint is None:
            grid = np.arange(0.0, self.length_m + RUN_OUT_M, 2.0)
            gx, gy, _ = self.pose(grid)
            s = float(grid[int(np.argmin((gx - x) ** 2 + (gy - y) ** 2))])
        else:
            s = s_hint
        d = 0.0
        for _ in range(6):
            cx, cy, h, k = self._pose1(s)
            dx, dy = x - cx, y - cy
            along = dx * math.cos(h) + dy * math.sin(h)
            d = -dx * math.sin(h) + dy * math.cos(h)
            s = s + along / max(1.0 - k * d, 0.2)
            if abs(along) < 1e-6:
                break
        return s, d
