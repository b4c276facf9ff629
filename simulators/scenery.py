"""Static roadside scenery: delineator posts, trees (rural), buildings and street lamps (urban).

Placed from the scenario seed beyond the road and sidewalk, so from a camera on the road it
never stands between the camera and a road user (ground truth ignores it on purpose).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from simulators.bodies import build_post
from simulators.meshes import GLASS, LIT_WINDOW, STREETLAMP, Mesh, MeshBuilder
from simulators.road import KERB_M, Road

BGR = tuple[int, int, int]
POST_SPACING_M = 50.0  # [m]
SCENERY_BEYOND_M = 600.0  # [m] scenery continues this far past the authored road
_FACADES: tuple[BGR, ...] = ((150, 175, 195), (140, 140, 138), (70, 80, 150), (200, 205, 205),
                             (120, 170, 200), (100, 110, 120), (160, 150, 120))
_LEAVES: tuple[BGR, ...] = ((40, 95, 50), (35, 80, 45), (50, 110, 70), (30, 70, 55))


@dataclass(frozen=True)
class SceneryItem:
    """One static object: station, world pose and the index of its mesh."""

    s_m: float
    x_m: float
    y_m: float
    yaw_rad: float
    mesh: int


def _tree(rng: np.random.Generator) -> Mesh:
    b = MeshBuilder()
    b.part(group=0, layer=0)
    trunk_h = rng.uniform(1.6, 2.8)
    b.box((-0.15, 0.15), (-0.15, 0.15), (0.0, trunk_h + 0.3), (40, 60, 85))
    b.part(group=0, layer=1)
    w0, w1 = rng.uniform(2.2, 3.6), rng.uniform(0.6, 1.6)
    top = trunk_h + rng.uniform(2.5, 5.5)
    leaf = _LEAVES[int(rng.integers(len(_LEAVES)))]
    b.frustum((-w0 / 2, w0 / 2, -w0 / 2, w0 / 2), (-w1 / 2, w1 / 2, -w1 / 2, w1 / 2),
              trunk_h, top, {"all": leaf})
    return b.build()


def _building(rng: np.random.Generator, length: float, depth: float) -> Mesh:
    """A block; placed with its local +y side (door, windows) towards the road."""
    floors = int(rng.integers(2, 6))
    height = floors * 3.0 + rng.uniform(0.3, 1.2)
    b = MeshBuilder()
    b.part(group=0)
    facade = _FACADES[int(rng.integers(len(_FACADES)))]
    faces = b.box((-length / 2, length / 2), (-depth / 2, depth / 2), (0.0, height), facade,
                  skip=("bottom",))
    bays = int(min(max(length / 6.0, 2), 4))  # window groups per floor on the long sides
    for f in range(floors):
        v0, v1 = (f * 3.0 + 1.0) / height, (f * 3.0 + 2.3) / height
        for name in ("right", "front", "back", "left"):
            n = bays if name in ("right", "left") else 1
            for k in range(n):
                u0 = 0.06 + k * 0.88 / n
                kind = LIT_WINDOW if rng.random() < 0.3 else GLASS
                b.decal(faces[name], (u0 + 0.02, u0 + 0.88 / n - 0.02), (v0, v1), (70, 62, 55),
                        kind)
    if rng.random() < 0.6:  # a shop door or garage on the ground floor
        b.decal(faces["left"], (0.4, 0.6), (0.0, 2.4 / height), (50, 50, 55))
    return b.build()


def _lamp() -> Mesh:
    """A street lamp: pole with an arm over the road (local +y) and a lamp head."""
    b = MeshBuilder()
    b.part(group=0)
    grey: BGR = (110, 112, 115)
    b.box((-0.08, 0.08), (-0.08, 0.08), (0.0, 7.0), grey)
    b.box((-0.05, 0.05), (0.0, 1.6), (6.85, 7.0), grey)
    head = b.box((-0.25, 0.25), (1.2, 1.9), (6.7, 6.85), grey)
    b.decal(head["bottom"], (0.1, 0.9), (0.1, 0.9), (180, 200, 210), STREETLAMP)
    return b.build()


class Scenery:
    """All static roadside objects of one road, in station order."""

    def __init__(self, road: Road, kind: str, posts: bool, rng: np.random.Generator) -> None:
        spec = road.spec
        outer = road.half_width_m + spec.shoulder_m
        side = outer + KERB_M + spec.sidewalk_m if spec.sidewalk_m > 0 else outer
        if kind == "auto":
            kind = "urban" if spec.sidewalk_m > 0 else "rural"
        self.meshes: list[Mesh] = []
        items: list[SceneryItem] = []
        end = road.length_m + SCENERY_BEYOND_M

        def place(s: float, d: float, mesh: int, yaw_off: float = 0.0) -> None:
            x, y, yaw = road.frenet_pose(s, d)
            items.append(SceneryItem(s, x, y, yaw + yaw_off, mesh))

        if posts and kind != "urban":
            self.meshes.append(build_post())
            for sign in (-1.0, 1.0):
                for s in np.arange(POST_SPACING_M / 2, end, POST_SPACING_M):
                    place(float(s), sign * (side + 0.6), 0)
        if kind == "rural":
            self.meshes += [_tree(rng) for _ in range(8)]
            first = len(self.meshes) - 8
            for sign in (-1.0, 1.0):
                s = float(rng.uniform(0, 20))
                while s < end:
                    place(s, sign * (side + rng.uniform(4.0, 30.0)),
                          first + int(rng.integers(8)), float(rng.uniform(0, 1.5)))
                    s += float(rng.exponential(14.0)) + 3.0
        elif kind == "urban":
            self.meshes.append(_lamp())
            lamp = len(self.meshes) - 1
            for sign in (-1.0, 1.0):
                for s in np.arange(10.0, end, 35.0):
                    # the arm (local +y) must reach over the road
                    place(float(s), sign * (side - 0.3), lamp, 0.0 if sign < 0 else np.pi)
                s = float(rng.uniform(-5, 5))
                while s < end:
                    length = float(rng.uniform(9, 24))
                    depth = float(rng.uniform(8, 14))
                    setback = float(rng.uniform(1.5, 6.0))
                    self.meshes.append(_building(rng, length, depth))
                    place(s + length / 2, sign * (side + setback + depth / 2),
                          len(self.meshes) - 1, 0.0 if sign < 0 else np.pi)
                    s += length + float(rng.uniform(1.0, 9.0))
        items.sort(key=lambda it: it.s_m)
        self.items = items
        self._s = [it.s_m for it in items]

    def between(self, s0: float, s1: float) -> list[SceneryItem]:
        """Items with station in [s0, s1)."""
        return self.items[bisect.bisect_left(self._s, s0) : bisect.bisect_left(self._s, s1)]
