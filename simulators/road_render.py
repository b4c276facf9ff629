"""Painting the road: asphalt, shoulders, kerbs and sidewalks, edge lines and dashed lanes.

The road is a set of ribbons between lateral lines (d, z), sampled once per metre of
station. A frame picks stations ahead of the camera with a stride that grows with distance
(aligned to absolute stations so far samples do not crawl), transforms them in one matrix
product, and fills one polygon per ribbon and haze band.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from simulators.camera import NEAR_M, Camera, clip_near
from simulators.environment import Lighting, fog_factor
from simulators.road import KERB_HEIGHT_M, KERB_M, RUN_OUT_M, Road

FloatArray = NDArray[np.float64]
SHIFT = 3  # sub-pixel bits for cv2 polygon fills
DASH_M, DASH_PERIOD_M = 3.0, 12.0  # [m]
_BANDS = ((0, 1), (30, 2), (60, 4), (120, 8), (240, 16))  # (from distance [m], stride [m])
TRACK_RANGE_M = 120.0  # [m] wheel tracks are drawn up to here
PATCH_SPACING_M = 14.0  # [m] one asphalt patch at most per this much road
QUAD_RANGE_M = 160.0  # [m] dashes and patches are drawn up to here


def _scaled(colour: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return (int(colour[0] * k), int(colour[1] * k), int(colour[2] * k))


def _quad(road: Road, s0: float, s1: float, d0: float, d1: float) -> FloatArray:
    xs, ys = road.point([s0, s1, s1, s0], [d0, d0, d1, d1])
    return np.c_[xs, ys, np.zeros(4)]


@dataclass(frozen=True)
class Ribbon:
    """A strip between lateral lines `a` and `b` (indices into the line table)."""

    a: int
    b: int
    albedo: tuple[int, int, int]
    max_range_m: float = 1e9  # faint details stop early


def to_px(points: FloatArray) -> NDArray[np.int32]:
    """Pixel coordinates → fixed-point ints for cv2 with `SHIFT` fractional bits.

    Callers keep z >= NEAR_M, so coordinates stay far inside the int32 range.
    """
    return np.rint(points * (1 << SHIFT)).astype(np.int32)


def fill_clipped(img: NDArray[np.uint8], cam: Camera, poly_cam: FloatArray,
                 colour: tuple[float, float, float]) -> None:
    """Clip a camera-frame polygon to the near plane, project and fill it."""
    poly = clip_near(poly_cam)
    if len(poly) < 3:
        return
    cv2.fillPoly(img, [to_px(cam.project(poly))], colour, cv2.LINE_8, SHIFT)


class RoadPainter:
    """Precomputed road geometry of one scenario, painted per frame."""

    def __init__(self, road: Road, lt: Lighting, max_range_m: float,
                 rng: np.random.Generator) -> None:
        self.lt = lt
        self.max_range_m = max_range_m
        hw, sh = road.half_width_m, road.spec.shoulder_m
        outer = hw + sh
        lines: list[tuple[float, float]] = []

        def line(d: float, z: float = 0.0) -> int:
            lines.append((d, z))
            return len(lines) - 1

        self.ribbons: list[Ribbon] = [Ribbon(line(-outer), line(outer), lt.asphalt)]
        worn = _scaled(lt.asphalt, 0.95)  # polished wheel tracks, darker in each lane
        for lane in range(road.lanes):
            for off in (-0.8, 0.8):
                dc = road.lane_d(lane) + off
                self.ribbons.append(Ribbon(line(dc - 0.25), line(dc + 0.25), worn, TRACK_RANGE_M))
        for sign in (-1.0, 1.0):
            a, b = sorted((sign * hw, sign * (hw - 0.15)))
            self.ribbons.append(Ribbon(line(a), line(b), lt.marking))
        if road.spec.sidewalk_m > 0:
            for sign in (-1.0, 1.0):
                face = Ribbon(line(sign * outer), line(sign * outer, KERB_HEIGHT_M), lt.kerb)
                top0, top1 = sign * outer, sign * (outer + KERB_M)
                walk1 = sign * (outer + KERB_M + road.spec.sidewalk_m)
                self.ribbons += [
                    face,
                    Ribbon(line(top0, KERB_HEIGHT_M), line(top1, KERB_HEIGHT_M), lt.kerb),
                    Ribbon(line(top1, KERB_HEIGHT_M), line(walk1, KERB_HEIGHT_M),
                           _scaled(lt.kerb, 0.92)),
                ]
        else:
            for sign in (-1.0, 1.0):
                a, b = sorted((sign * outer, sign * (outer + 0.8)))
                self.ribbons.append(Ribbon(line(a), line(b), lt.verge))
        self.stations = np.arange(0.0, road.length_m + RUN_OUT_M, 1.0)
        d = np.array([ln[0] for ln in lines])
        z = np.array([ln[1] for ln in lines])
        px, py = road.point(self.stations[:, None], d[None, :])
        self.points = np.stack([px, py, np.broadcast_to(z, px.shape)], axis=-1)  # (S, L, 3)
        self.centre = np.stack([*road.point(self.stations, 0.0), np.zeros(len(self.stations))], -1)

        # flat quads on the road: lane dashes, and asphalt patches that give the road texture
        quads, quad_s, albedo = [], [], []
        end = road.length_m + RUN_OUT_M - DASH_M
        marking = np.array(lt.marking, float)
        for k in range(1, road.lanes):
            dk = -hw + k * road.lane_width_m
            for s_a in np.arange(0.0, end, DASH_PERIOD_M):
                quads.append(_quad(road, s_a, s_a + DASH_M, dk - 0.06, dk + 0.06))
                quad_s.append(s_a)
                albedo.append(marking)
        for s_a in np.arange(0.0, end, PATCH_SPACING_M):
            if rng.random() < 0.5:
                length, width = rng.uniform(0.8, 5.0), rng.uniform(0.5, 2.8)
                d0 = rng.uniform(-hw, hw - width)
                s0 = s_a + rng.uniform(0, PATCH_SPACING_M)
                quads.append(_quad(road, s0, s0 + length, d0, d0 + width))
                quad_s.append(s0)
                tone = rng.uniform(0.82, 0.9) if rng.random() < 0.6 else rng.uniform(1.07, 1.15)
                albedo.append(np.array(lt.asphalt, float) * tone)
        is_dash = np.array([a is marking for a in albedo])
        order = np.argsort(is_dash, kind="stable")  # patches first: dashes paint over them
        self.quads = np.array(quads)[order] if quads else np.zeros((0, 4, 3))
        self.quad_s = np.array(quad_s)[order] if quads else np.zeros(0)
        self.quad_albedo = np.array(albedo)[order] if quads else np.zeros((0, 3))

    def _sample(self, s_cam: float) -> NDArray[np.intp]:
        start = max(int(s_cam) - 4, 0)
        idx = [np.arange(start, start + 30 + 1)]
        for lo, stride in _BANDS[1:]:
            first = (start + lo + stride - 1) // stride * stride
            idx.append(np.arange(first, start + int(min(lo * 2, self.max_range_m)) + 1, stride))
        out = np.unique(np.concatenate(idx)).astype(np.intp)
        return out[out < len(self.stations)]

    def paint(self, img: NDArray[np.uint8], cam: Camera, R: FloatArray, t: FloatArray,
              s_cam: float) -> None:
        """Paint the road seen from camera pose (R, t) at station `s_cam`."""
        lt = self.lt
        idx = self._sample(s_cam)
        pts = self.points[idx] @ R.T + t  # (n, L, 3)
        depth = np.maximum((self.centre[idx] @ R.T + t)[:, 2], 0.0)
        trans = fog_factor(depth, lt.visibility_m)
        band = np.round(trans * 40).astype(int)
        cuts = [0, *(np.flatnonzero(np.diff(band)) + 1).tolist(), len(idx) - 1]
        shade = 1.0 if lt.uses_gain_map else lt.ground_shade
        fog = np.array(lt.fog, float)
        for rib in self.ribbons:
            albedo = np.array(rib.albedo, float) * shade
            for j0, j1 in itertools.pairwise(cuts):
                if j1 <= j0:
                    continue
                if depth[j0] > min(self.max_range_m, rib.max_range_m):
                    break
                tr = float(trans[(j0 + j1) // 2])
                colour = albedo * tr + fog * (1 - tr)
                poly = np.vstack([pts[j0 : j1 + 1, rib.a], pts[j0 : j1 + 1, rib.b][::-1]])
                fill_clipped(img, cam, poly, (float(colour[0]), float(colour[1]), float(colour[2])))
        self._paint_quads(img, cam, R, t, s_cam, shade)

    def _paint_quads(self, img: NDArray[np.uint8], cam: Camera, R: FloatArray, t: FloatArray,
                     s_cam: float, shade: float) -> None:
        lt = self.lt
        keep = (self.quad_s > s_cam - 6) & (self.quad_s < s_cam + min(self.max_range_m,
                                                                       QUAD_RANGE_M))
        quads = self.quads[keep] @ R.T + t  # (n, 4, 3)
        albedo = self.quad_albedo[keep] * shade
        front = quads[:, :, 2].min(axis=1) >= NEAR_M  # the ones under the car are unseen
        quads, albedo = quads[front], albedo[front]
        if not len(quads):
            return
        z = quads[:, :, 2]
        uv = np.stack([cam.fx * quads[:, :, 0] / z + cam.cx, cam.fy * quads[:, :, 1] / z + cam.cy],
                      axis=-1)
        pts = to_px(uv)
        level = np.round(fog_factor(z.mean(axis=1), lt.visibility_m) * 20)[:, None] / 20
        colours = np.round(albedo * level + np.array(lt.fog, float) * (1 - level))
        # one fill per colour, in first-seen order so dashes stay on top of patches
        keys = [tuple(c) for c in colours.tolist()]
        groups: dict[tuple[float, ...], list[NDArray[np.int32]]] = {}
        for key, poly in zip(keys, pts, strict=True):
            groups.setdefault(key, []).append(poly)
        for colour, polys in groups.items():
            cv2.fillPoly(img, polys, colour, cv2.LINE_8, SHIFT)
