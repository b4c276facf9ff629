"""Low-poly meshes for the renderer: parts made of planar faces, decals and thick lines.

Local frame of an actor: x forward, y left, z up, origin at the footprint centre on the
ground. Faces are counter-clockwise seen from outside (the normal points out), so back faces
are culled by one dot product. Parts are drawn in painter's order of their *group* (far to
near), then by *layer* inside a group (wheels before body before cabin); a decal (window,
lamp, plate) is drawn right after its parent face when that face is visible. Animated parts
swing about a pivot around the local y axis (legs, arms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BGR = tuple[int, int, int]

# face kinds: how a face is lit
(SHADED, GLASS, DARK, TAIL, HEAD, IND_LEFT, IND_RIGHT, BRAKE, PLATE, REFLECTOR, LIT_WINDOW,
 STREETLAMP) = range(12)
DECAL_OFFSET_M = 0.012  # decals sit this far in front of their face


@dataclass
class Part:
    """A rigid piece of a mesh."""

    group: int
    layer: int
    swing_amp_rad: float = 0.0  # animated parts swing by amp*sin(phase + offset) about y
    swing_offset_rad: float = 0.0
    pivot: tuple[float, float, float] = (0.0, 0.0, 0.0)
    vertex_ids: list[int] = field(default_factory=list)


@dataclass
class Mesh:
    """Arrays of one mesh, ready for vectorised transforms."""

    vertices: FloatArray  # (V, 3)
    faces: list[NDArray[np.intp]]
    colours: FloatArray  # (F, 3) BGR base colour
    kinds: NDArray[np.intp]  # (F,)
    part_of: NDArray[np.intp]  # (F,)
    parent: NDArray[np.intp]  # (F,) -1, or the face a decal belongs to
    normals: FloatArray  # (F, 3) unit, local
    centres: FloatArray  # (F, 3) local
    parts: list[Part]
    lines: list[tuple[NDArray[np.intp], float, BGR, int]]  # vertex ids, thickness [m], colour, part
    # per group: its vertex ids, and its parts in layer order with their faces (decals after
    # their parent face)
    groups: list[tuple[NDArray[np.intp], list[tuple[int, list[int]]]]]
    first_vertex: NDArray[np.intp]  # (F,) a vertex of each face (for plane tests)
    face_pad: NDArray[np.intp]  # (F, K) vertex ids, short faces padded with their first vertex
    bound_centre: FloatArray  # (3,) bounding sphere, local
    bound_radius: float

    def swing_angles(self, phase_rad: float) -> dict[int, float]:
        """Swing angle [rad] of each animated part at gait phase `phase_rad`."""
        return {i: p.swing_amp_rad * math.sin(phase_rad + p.swing_offset_rad)
                for i, p in enumerate(self.parts) if p.swing_amp_rad}

    def posed(self, angles: dict[int, float]) -> FloatArray:
        """Vertices with the animated parts swung by `angles` (see `swing_angles`)."""
        verts = self.vertices
        if not angles:
            return verts
        verts = verts.copy()
        for i, a in angles.items():
            p = self.parts[i]
            c, s = math.cos(a), math.sin(a)
            ids = np.asarray(p.vertex_ids)
            rel = verts[ids] - p.pivot
            x = c * rel[:, 0] + s * rel[:, 2]
            z = -s * rel[:, 0] + c * rel[:, 2]
            verts[ids, 0] = x + p.pivot[0]
            verts[ids, 2] = z + p.pivot[2]
        return verts


class MeshBuilder:
    """Collects parts, faces, decals and lines, then freezes them into a `Mesh`."""

    def __init__(self) -> None:
        self.vertices: list[tuple[float, float, float]] = []
        self.faces: list[list[int]] = []
        self.colours: list[BGR] = []
        self.kinds: list[int] = []
        self.part_of: list[int] = []
        self.parent: list[int] = []
        self.parts: list[Part] = []
        self.lines: list[tuple[list[int], float, BGR, int]] = []

    def part(self, group: int, layer: int = 0, *, swing_amp_rad: float = 0.0,
             swing_offset_rad: float = 0.0, pivot: tuple[float, float, float] = (0, 0, 0)) -> int:
        """Start a new part; following faces and lines belong to it."""
        self.parts.append(Part(group, layer, swing_amp_rad, swing_offset_rad, pivot))
        return len(self.parts) - 1

    def _vertex(self, p: FloatArray | tuple[float, float, float]) -> int:
        self.vertices.append((float(p[0]), float(p[1]), float(p[2])))
        self.parts[-1].vertex_ids.append(len(self.vertices) - 1)
        return len(self.vertices) - 1

    def face(self, points: FloatArray | list[FloatArray] | list[tuple[float, float, float]],
             colour: BGR,
             kind: int = SHADED, parent: int = -1) -> int:
        """A planar polygon, counter-clockwise seen from outside; returns its index."""
        ids = [self._vertex(p) for p in points]
        self.faces.append(ids)
        self.colours.append(colour)
        self.kinds.append(kind)
        self.part_of.append(len(self.parts) - 1)
        self.parent.append(parent)
        return len(self.faces) - 1

    def decal(self, parent: int, u: tuple[float, float], v: tuple[float, float], colour: BGR,
              kind: int = SHADED) -> int:
        """A quad on quad face `parent` at parametric u (1st edge) and v (2nd edge) ranges."""
        quad = np.array([self.vertices[i] for i in self.faces[parent][:4]])
        normal = _newell([self.vertices[i] for i in self.faces[parent]])

        def at(a: float, b: float) -> FloatArray:
            bottom = quad[0] + a * (quad[1] - quad[0])
            top = quad[3] + a * (quad[2] - quad[3])
            return np.asarray(bottom + b * (top - bottom) + normal * DECAL_OFFSET_M)

        pts = [at(u[0], v[0]), at(u[1], v[0]), at(u[1], v[1]), at(u[0], v[1])]
        return self.face(pts, colour, kind, parent)

    def frustum(self, bottom: tuple[float, float, float, float],
                top: tuple[float, float, float, float], z0: float, z1: float,
                colours: dict[str, BGR], kinds: dict[str, int] | None = None,
                skip: tuple[str, ...] = ()) -> dict[str, int]:
        """A six-sided block with rectangles (x0, x1, y0, y1) at z0 and z1.

        Face vertex order (u along the first edge, v upwards) — right: rear→front;
        left: front→rear; front: car right→left; back: car left→right. Returns face ids.
        """
        kinds = kinds or {}
        bx0, bx1, by0, by1 = bottom
        tx0, tx1, ty0, ty1 = top
        b = [(bx0, by0, z0), (bx1, by0, z0), (bx1, by1, z0), (bx0, by1, z0)]
        t = [(tx0, ty0, z1), (tx1, ty0, z1), (tx1, ty1, z1), (tx0, ty1, z1)]
        quads = {
            "right": [b[0], b[1], t[1], t[0]],
            "left": [b[2], b[3], t[3], t[2]],
            "front": [b[1], b[2], t[2], t[1]],
            "back": [b[3], b[0], t[0], t[3]],
            "top": [t[0], t[1], t[2], t[3]],
            "bottom": [b[0], b[3], b[2], b[1]],
        }
        default = colours.get("all", (128, 128, 128))
        out = {}
        for name, quad in quads.items():
            if name in skip:
                continue
            kind = kinds.get(name, kinds.get("all", SHADED))
            out[name] = self.face(quad, colours.get(name, default), kind)
        return out

    def box(self, x: tuple[float, float], y: tuple[float, float], z: tuple[float, float],
            colour: BGR, kind: int = SHADED, skip: tuple[str, ...] = ()) -> dict[str, int]:
        """An axis-aligned block."""
        rect = (x[0], x[1], y[0], y[1])
        return self.frustum(rect, rect, z[0], z[1], {"all": colour}, {"all": kind}, skip)

    def beam(self, p0: tuple[float, float, float], p1: tuple[float, float, float],
             width_m: float, depth_m: float, colour: BGR) -> None:
        """A block from p0 to p1 in the x-z plane (limbs), `width_m` along y."""
        a, b = np.array(p0), np.array(p1)
        axis = b - a
        length = float(np.linalg.norm(axis))
        up = axis / max(length, 1e-9)
        fwd = np.array([up[2], 0.0, -up[0]])  # perpendicular to the limb, in the x-z plane
        side = np.array([0.0, 1.0, 0.0])
        hd, hw = fwd * depth_m / 2, side * width_m / 2
        bot = [a - hd - hw, a + hd - hw, a + hd + hw, a - hd + hw]
        top = [b - hd - hw, b + hd - hw, b + hd + hw, b - hd + hw]
        for quad in ([bot[0], bot[1], top[1], top[0]], [bot[2], bot[3], top[3], top[2]],
                     [bot[1], bot[2], top[2], top[1]], [bot[3], bot[0], top[0], top[3]],
                     [top[0], top[1], top[2], top[3]], [bot[0], bot[3], bot[2], bot[1]]):
            self.face(np.array(quad), colour)

    def line(self, points: list[tuple[float, float, float]], thickness_m: float,
             colour: BGR) -> None:
        """A thick polyline (bicycle frame, wheel rims)."""
        ids = [self._vertex(p) for p in points]
        self.lines.append((ids, thickness_m, colour, len(self.parts) - 1))

    def build(self) -> Mesh:
        """Freeze into arrays and precompute normals and the static draw order."""
        verts = np.array(self.vertices, dtype=np.float64)
        faces = [np.array(f, dtype=np.intp) for f in self.faces]
        normals = np.array([_newell([self.vertices[i] for i in f]) for f in self.faces])
        centres = np.array([verts[f].mean(axis=0) for f in faces])
        parent = np.array(self.parent, dtype=np.intp)
        part_of = np.array(self.part_of, dtype=np.intp)
        groups = []
        for g in sorted({p.group for p in self.parts}):
            members = sorted((i for i, p in enumerate(self.parts) if p.group == g),
                             key=lambda i: self.parts[i].layer)
            seqs = []
            for p in members:
                seq: list[int] = []
                for f in np.flatnonzero((part_of == p) & (parent < 0)):
                    seq.append(int(f))
                    seq.extend(int(d) for d in np.flatnonzero(parent == f))
                seqs.append((p, seq))
            ids = np.array(sorted(v for p in members for v in self.parts[p].vertex_ids), np.intp)
            groups.append((ids, seqs))
        k = max(len(f) for f in faces)
        pad = np.array([np.r_[f, np.full(k - len(f), f[0])] for f in faces], dtype=np.intp)
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        centre = (lo + hi) / 2
        return Mesh(
            vertices=verts, faces=faces, colours=np.array(self.colours, dtype=np.float64),
            kinds=np.array(self.kinds, dtype=np.intp), part_of=part_of, parent=parent,
            normals=normals, centres=centres, parts=self.parts,
            lines=[(np.array(ids, dtype=np.intp), t, c, p) for ids, t, c, p in self.lines],
            groups=groups, first_vertex=pad[:, 0].copy(), face_pad=pad, bound_centre=centre,
            bound_radius=float(np.linalg.norm(verts - centre, axis=1).max()),
        )


def _newell(poly: FloatArray | list[tuple[float, float, float]]) -> FloatArray:
    """Unit normal of a planar polygon by Newell's method (plain floats: polygons are tiny)."""
    pts = [(float(p[0]), float(p[1]), float(p[2])) for p in poly]
    nx = ny = nz = 0.0
    for (x0, y0, z0), (x1, y1, z1) in zip(pts, pts[1:] + pts[:1], strict=True):
        nx += (y0 - y1) * (z0 + z1)
        ny += (z0 - z1) * (x0 + x1)
        nz += (x0 - x1) * (y0 + y1)
    norm = max(math.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
    return np.array([nx / norm, ny / norm, nz / norm])


def octagon(xc: float, zc: float, r: float, y: float, outward: float) -> list[tuple[float, float, float]]:
    """An octagon in the x-z plane at `y`, counter-clockwise seen from the `outward` side (±1)."""
    angles = [math.pi / 8 + k * math.pi / 4 for k in range(8)]
    pts = [(xc + r * math.cos(a), y, zc + r * math.sin(a)) for a in angles]
    # seen from +y, increasing angle in x-z runs clockwise; reverse for that side
    return pts[::-1] if outward > 0 else pts
