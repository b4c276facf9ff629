"""Painting one posed mesh: back-face culling, shading, haze, lamps and their glow."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from simulators.camera import NEAR_M, Camera, clip_near, rot_z
from simulators.environment import Lighting, fog_factor, headlight_gain
from simulators.meshes import (
    BRAKE,
    GLASS,
    HEAD,
    IND_LEFT,
    IND_RIGHT,
    LIT_WINDOW,
    REFLECTOR,
    STREETLAMP,
    TAIL,
    Mesh,
)
from simulators.road_render import SHIFT, to_px

FloatArray = NDArray[np.float64]
U8 = NDArray[np.uint8]

TAIL_ON = np.array([55.0, 55.0, 225.0])
BRAKE_ON = np.array([90.0, 90.0, 255.0])
IND_ON = np.array([30.0, 165.0, 255.0])
HEAD_ON = np.array([235.0, 245.0, 250.0])
REFLECTOR_ON = np.array([70.0, 180.0, 255.0])
WINDOW_ON = np.array([90.0, 170.0, 215.0])
LAMP_ON = np.array([170.0, 225.0, 255.0])
GLOW_MATCH = 90  # summed |ΔBGR| under which a pixel still shows the lamp
DECAL_MIN_PX_PER_M = 3.0  # below this image scale, windows and lamps are not drawn


@dataclass(frozen=True)
class LampState:
    """Which lamps of an actor are lit."""

    lights_on: bool = False
    braking: bool = False
    indicator: int = 0  # -1 right, +1 left, blinking
    blink_on: bool = False


@dataclass
class Glow:
    """A light to bloom: pixel centre, radius [px], colour, and where a wet road mirrors it."""

    x: float
    y: float
    radius: float
    colour: tuple[float, float, float]
    mirror: tuple[float, float] | None = None  # pixel of the lamp mirrored in the ground
    size_px: float = 0.0  # the lamp's own extent in the image


def _face_colours(mesh: Mesh, n_world: FloatArray, lt: Lighting, lamps: LampState,
                  head_light: float, facing: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Shaded colour of every face, and which faces are lit lamps."""
    sun = np.array(lt.sun_dir)
    lam = np.maximum(n_world @ sun, 0.0)
    sky = 0.55 + 0.45 * n_world[:, 2]
    shade = lt.ambient * sky + lt.sun * lam + head_light * facing
    cols = mesh.colours * shade[:, None]
    kinds = mesh.kinds
    glass = (kinds == GLASS) | (kinds == LIT_WINDOW)
    if glass.any():  # glass mirrors the sky a little, mostly from faces tilted upwards
        refl = np.maximum(0.15 + 0.35 * n_world[glass, 2], 0.0)[:, None]
        sky_c = np.array(lt.sky_horizon, float) * (lt.ambient + 0.3 * lt.sun)
        cols[glass] = cols[glass] * (1 - refl) + sky_c * refl
    lit = np.zeros(len(kinds), dtype=bool)

    def light(mask: NDArray[np.bool_], colour: FloatArray) -> None:
        cols[mask] = colour
        lit[mask] = True

    if lt.lights_on or lamps.braking:
        light(kinds == TAIL, BRAKE_ON if lamps.braking else TAIL_ON)
    if lamps.braking:
        light(kinds == BRAKE, BRAKE_ON)
    if lamps.indicator and lamps.blink_on:
        light(kinds == (IND_LEFT if lamps.indicator > 0 else IND_RIGHT), IND_ON)
    if lt.lights_on:
        light(kinds == HEAD, HEAD_ON)
    if lt.uses_gain_map:
        cols[kinds == REFLECTOR] = REFLECTOR_ON * min(1.0, 0.2 + head_light * 1.5)
        cols[kinds == LIT_WINDOW] = WINDOW_ON
        light(kinds == STREETLAMP, LAMP_ON)
    return cols, lit


def sphere_in_view(cam: Camera, centre_cam: FloatArray, radius: float) -> bool:
    """Whether a sphere (optical frame) can reach into the image (frustum side planes)."""
    x, y, z = (float(v) for v in centre_cam)
    if z < NEAR_M - radius:
        return False
    return all(nx * x + ny * y + nz * z >= -radius for nx, ny, nz in cam.side_planes)


def paint_mesh(img: U8, mesh: Mesh, verts_local: FloatArray, pose: tuple[float, float, float],
               R: FloatArray, t: FloatArray, cam: Camera, lt: Lighting, lamps: LampState,
               ego_front: tuple[float, float, float], swing: dict[int, float],
               glows: list[Glow] | None, *, detail_px_per_m: float = DECAL_MIN_PX_PER_M,
               line_type: int = cv2.LINE_AA,
               shade_cache: dict[int, tuple[FloatArray, NDArray[np.bool_]]] | None = None,
               cache_key: int = 0) -> None:
    """Paint a mesh at world `pose` (x, y, yaw) seen from camera pose (R, t).

    `swing` maps animated part → current swing angle, to turn their normals with them;
    `ego_front` (x, y, yaw) places the ego headlights; lamps to bloom are added to `glows`.
    Decals are skipped below `detail_px_per_m` of image scale. A static mesh may keep its
    shading (before haze) in `shade_cache` under `cache_key` when no headlight reaches it.
    """
    x, y, yaw = pose
    Rw = rot_z(yaw)
    origin = np.array([x, y, 0.0])
    centre_cam = (Rw @ mesh.bound_centre + origin) @ R.T + t
    if not sphere_in_view(cam, centre_cam, mesh.bound_radius * 1.2):
        return
    world = verts_local @ Rw.T + origin
    vc = world @ R.T + t
    normals = mesh.normals
    if swing:
        normals = normals.copy()
        for part, angle in swing.items():
            sel = mesh.part_of == part
            c, s = math.cos(angle), math.sin(angle)
            n = normals[sel]
            normals[sel] = np.c_[c * n[:, 0] + s * n[:, 2], n[:, 1], -s * n[:, 0] + c * n[:, 2]]
    n_world = normals @ Rw.T
    n_cam = n_world @ R.T
    v0 = vc[mesh.first_vertex]
    facing_dot = np.einsum("ij,ij->i", n_cam, v0)
    visible = (facing_dot < 0).tolist()

    dist = float(np.linalg.norm(centre_cam))
    head_light = 0.0
    facing = np.zeros(len(mesh.faces))
    if lt.headlights > 0:
        ex, ey, eyaw = ego_front
        dx, dy = x - ex, y - ey
        ahead = math.cos(eyaw) * dx + math.sin(eyaw) * dy
        lateral = -math.sin(eyaw) * dx + math.cos(eyaw) * dy
        head_light = lt.headlights * float(headlight_gain(np.array(ahead), np.array(lateral)))
        facing = np.maximum(-facing_dot / np.maximum(np.linalg.norm(v0, axis=1), 1e-6), 0.0)
    cached = shade_cache.get(cache_key) if shade_cache is not None else None
    if cached is not None and head_light == 0.0:
        cols, emissive = cached
    else:
        cols, emissive = _face_colours(mesh, n_world, lt, lamps, head_light, facing)
        if shade_cache is not None and head_light == 0.0:
            shade_cache[cache_key] = (cols, emissive)
    tr = float(fog_factor(dist, lt.visibility_m))
    tr_lamp = float(fog_factor(dist, lt.visibility_m * 2.5))
    fog = np.array(lt.fog, float)
    cols = np.where(emissive[:, None], cols * tr_lamp + fog * (1 - tr_lamp), cols * tr + fog * (1 - tr))
    colours = cols.tolist()
    lit = emissive.tolist()

    safe = vc.copy()
    safe[:, 2] = np.maximum(safe[:, 2], NEAR_M)
    px = cam.project(safe)
    ipx = to_px(px)
    in_front = (vc[mesh.face_pad, 2].min(axis=1) >= NEAR_M).tolist()
    parents = mesh.parent.tolist()
    decals = cam.fx / max(dist, 1e-3) >= detail_px_per_m  # far away, details vanish

    groups = mesh.groups
    if len(groups) > 1:  # far → near by the distance of each group's vertex mean
        groups = sorted(groups, key=lambda g: -float(np.linalg.norm(vc[g[0]].mean(axis=0))))
    glow_scale = cam.fx / max(dist, 1.0)
    for _, parts in groups:
        for part, faces in parts:
            for f in faces:
                parent = parents[f]
                if parent >= 0 and not decals:
                    continue
                if not visible[f if parent < 0 else parent]:
                    continue
                ids = mesh.faces[f]
                if in_front[f]:
                    cv2.fillPoly(img, [ipx[ids]], colours[f], line_type, SHIFT)
                else:
                    poly = clip_near(vc[ids])
                    if len(poly) >= 3:
                        cv2.fillPoly(img, [to_px(cam.project(poly))], colours[f], line_type,
                                     SHIFT)
                if glows is not None and lit[f]:
                    c = px[ids].mean(axis=0)
                    size = float(max(np.ptp(px[ids][:, 0]), np.ptp(px[ids][:, 1])))
                    mirrored = world[ids].mean(axis=0) * (1.0, 1.0, -1.0) @ R.T + t
                    mirror = None
                    if mirrored[2] > NEAR_M:
                        mu, mv = cam.project(mirrored[None])[0]
                        mirror = (float(mu), float(mv))
                    glows.append(Glow(float(c[0]), float(c[1]), size * 0.45 + glow_scale * 0.04,
                                      (colours[f][0], colours[f][1], colours[f][2]), mirror,
                                      size))
            for ids, thick, lcol, lpart in mesh.lines:
                if lpart != part:
                    continue
                zs = vc[ids, 2]
                if zs.min() < NEAR_M:
                    continue
                width = max(1, round(cam.fx * thick / float(zs.mean())))
                lc = np.array(lcol, float) * (lt.ambient + 0.4 * lt.sun + head_light * 0.6)
                lc = lc * tr + fog * (1 - tr)
                cv2.polylines(img, [ipx[ids]], False, (float(lc[0]), float(lc[1]), float(lc[2])),
                              width, cv2.LINE_AA, SHIFT)


def paint_shadow(img: U8, footprint_world: FloatArray, R: FloatArray, t: FloatArray,
                 cam: Camera, colour: tuple[float, float, float]) -> None:
    """A soft-edged dark patch under an object (contact shadow)."""
    poly = clip_near(footprint_world @ R.T + t)
    if len(poly) >= 3:
        cv2.fillPoly(img, [to_px(cam.project(poly))], colour, cv2.LINE_AA, SHIFT)


def paint_glows(img: U8, glows: list[Glow], strength: float, *, wet: bool = False,
                scale: float = 0.25) -> None:
    """Bloom lamps: draw them small at low resolution, blur, upsample and add.

    On a wet road each lamp also leaves a vertical streak where the road mirrors it.
    """
    if not glows:
        return
    h, w = img.shape[:2]
    sw, sh = max(1, int(w * scale)), max(1, int(h * scale))
    layer = np.zeros((sh, sw, 3), np.uint8)
    for g in glows:
        # a lamp painted over by something nearer does not bloom (lamps of a few pixels are
        # blended by anti-aliasing, so they are not tested)
        gx, gy = round(g.x), round(g.y)
        if g.size_px >= 4 and 0 <= gx < w and 0 <= gy < h:
            patch = img[max(gy - 1, 0) : gy + 2, max(gx - 1, 0) : gx + 2].astype(np.int16)
            if np.abs(patch - np.array(g.colour, np.int16)).sum(axis=-1).min() > GLOW_MATCH:
                continue
        r = g.radius * scale
        c = tuple(min(255.0, v * strength) for v in g.colour)
        centre = (round(g.x * scale), round(g.y * scale))
        if wet and g.mirror is not None:  # a streak on the wet road below the lamp
            dim = tuple(v * 0.3 for v in c)
            mirror = (round(g.mirror[0] * scale), round(g.mirror[1] * scale))
            cv2.ellipse(layer, mirror, (max(1, round(r * 0.6)), max(1, round(r * 2.5))), 0, 0,
                        360, dim, -1)
        cv2.circle(layer, centre, max(1, round(r)), c, -1, cv2.LINE_AA)
    k = max(3, (int(max(sw, sh) / 40) | 1))
    layer = np.asarray(cv2.GaussianBlur(layer, (k, k), 0), dtype=np.uint8)
    up = np.asarray(cv2.resize(layer, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    cv2.add(img, up, dst=img)
