"""Light and weather: per-condition colours and lights, and per-camera precomputed layers.

Everything per pixel is computed once per camera here (sky, ground with distance haze, the
ego headlight pattern on the ground, sensor-noise and rain-streak banks); a frame then only
copies, offsets and adds these layers, so rendering stays cheap on one core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from simulators.camera import Camera
from simulators.scenario import EnvironmentSpec

BGR = tuple[int, int, int]
FloatArray = NDArray[np.float64]
U8 = NDArray[np.uint8]


@dataclass(frozen=True)
class Lighting:
    """Scene colours (albedo, BGR) and light strengths for one condition."""

    condition: str
    sky_top: BGR
    sky_horizon: BGR
    grass: BGR
    asphalt: BGR
    marking: BGR
    kerb: BGR
    verge: BGR
    hills: BGR
    fog: BGR
    ambient: float  # sky light on every face
    sun: float  # directional light
    sun_dir: tuple[float, float, float]  # world frame, towards the sun
    visibility_m: float  # haze or fog: colour → fog colour by exp(-d / visibility)
    headlights: float  # ego low-beam strength; > 0 means the ground is lit by a gain map
    lights_on: bool  # actors drive with lights on
    noise_sigma: float  # sensor noise [grey levels]
    rain: float  # streak density 0..1

    @property
    def uses_gain_map(self) -> bool:
        """Dark conditions light the ground per pixel (ambient + headlights)."""
        return self.headlights > 0

    @property
    def ground_shade(self) -> float:
        """Light on a horizontal surface without headlights."""
        return min(self.ambient + self.sun * self.sun_dir[2], 1.2)


def _sun(elevation_deg: float, azimuth_deg: float) -> tuple[float, float, float]:
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


def lighting_for(env: EnvironmentSpec) -> Lighting:
    """The lighting of a scenario environment."""
    base = {
        "grass": (62, 118, 84), "asphalt": (92, 94, 96), "marking": (226, 228, 228),
        "kerb": (150, 152, 155), "verge": (85, 105, 110), "hills": (120, 130, 110),
    }
    cond = env.condition
    if cond == "day":
        lt = Lighting(cond, (205, 150, 95), (235, 215, 195), fog=(225, 215, 205), ambient=0.62,
                      sun=0.55, sun_dir=_sun(45, 200), visibility_m=2500, headlights=0.0,
                      lights_on=False, noise_sigma=2.0, rain=0.0, **base)
    elif cond == "dusk":
        lt = Lighting(cond, (120, 75, 70), (110, 150, 225), fog=(120, 135, 170), ambient=0.34,
                      sun=0.25, sun_dir=_sun(6, 170), visibility_m=900, headlights=0.55,
                      lights_on=True, noise_sigma=3.5, rain=0.0, **base)
    elif cond == "night":
        lt = Lighting(cond, (22, 12, 8), (48, 34, 30), fog=(30, 24, 22), ambient=0.05, sun=0.0,
                      sun_dir=_sun(-30, 0), visibility_m=1500, headlights=1.0, lights_on=True,
                      noise_sigma=5.0, rain=0.0, **base)
    elif cond == "rain":
        lt = Lighting(cond, (150, 146, 142), (178, 174, 170), fog=(160, 158, 155), ambient=0.52,
                      sun=0.08, sun_dir=_sun(50, 200), visibility_m=220, headlights=0.0,
                      lights_on=True, noise_sigma=3.5, rain=env.rain_intensity,
                      **(base | {"asphalt": (62, 63, 65), "grass": (52, 98, 70)}))
    else:  # fog
        lt = Lighting(cond, (196, 196, 194), (204, 204, 202), fog=(200, 200, 198), ambient=0.66,
                      sun=0.05, sun_dir=_sun(40, 200), visibility_m=60, headlights=0.0,
                      lights_on=True, noise_sigma=3.0, rain=0.0, **base)
    if env.visibility_m is not None:
        lt = Lighting(**{**lt.__dict__, "visibility_m": env.visibility_m})
    return lt


def headlight_gain(x_ahead_m: FloatArray, y_m: FloatArray) -> FloatArray:
    """Relative low-beam illuminance on the ground ahead of the ego front (0..1).

    A cone of about ±25° that starts a few metres ahead and fades beyond ~40 m.
    """
    x = np.maximum(x_ahead_m, 1e-3)
    angle = np.arctan2(np.abs(y_m), x)
    beam = np.exp(-((angle / 0.42) ** 2))
    near = np.minimum(np.maximum((x - 0.3) / 5.0, 0.0), 1.0)
    far = 1.0 / (1.0 + (np.maximum(x - 12.0, 0.0) / 22.0) ** 2)
    return np.asarray(np.where(x_ahead_m > 0, beam * near * far, 0.0))


def fog_factor(distance_m: FloatArray | float, visibility_m: float) -> FloatArray:
    """Transmission exp(-d / visibility)."""
    return np.asarray(np.exp(-np.asarray(distance_m) / visibility_m))


@dataclass
class CameraLayers:
    """Per-camera precomputed images."""

    background: U8  # sky, hills and ground with haze, (H, W, 3)
    gain: U8 | None  # per-pixel light on the ground ×255, (H, W, 3), dark conditions only
    noise_pos: U8 | None  # noise bank, (H + P, W + P, 3), positive and negative parts
    noise_neg: U8 | None
    rain: U8 | None  # streak bank, (2H, W, 3)


def build_layers(camera: Camera, lt: Lighting, front_overhang_m: float,
                 rng: np.random.Generator, *, noise: bool, rain: bool) -> CameraLayers:
    """Build the background, light map, noise and rain banks of `camera` under `lt`."""
    h, w = camera.height, camera.width
    rays = camera.rays_ego()
    rz = rays[..., 2]
    horiz = np.hypot(rays[..., 0], rays[..., 1])
    elev = np.arctan2(rz, horiz)
    ground = rz < -1e-4
    t = np.where(ground, camera.mount_z_m / np.maximum(-rz, 1e-4), 0.0)
    gx = camera.mount_x_m + t * rays[..., 0]
    gy = camera.mount_y_m + t * rays[..., 1]
    dist = t * np.linalg.norm(rays, axis=-1)

    top, hor = np.array(lt.sky_top, float), np.array(lt.sky_horizon, float)
    a = np.clip(elev / 0.35, 0.0, 1.0)[..., None] ** 0.6
    sky = hor * (1 - a) + top * a
    # a low hill line on the horizon, seeded so each scenario keeps its own skyline
    cols = np.arange(w)
    phases = rng.uniform(0, 2 * math.pi, 3)
    profile = 0.010 + 0.006 * (np.sin(cols / w * 5.3 + phases[0]) + 0.6 * np.sin(cols / w * 13.1
                                + phases[1]) + 0.3 * np.sin(cols / w * 31.0 + phases[2]))
    hills = (elev >= -0.002) & (elev < profile[None, :])
    hill_c = np.array(lt.hills, float) * (lt.ambient + 0.3 * lt.sun)
    hill_t = float(fog_factor(3000.0, max(lt.visibility_m * 3, 300.0)))
    hill_c = hill_c * hill_t + np.array(lt.fog, float) * (1 - hill_t)
    sky = np.where(hills[..., None], hill_c, sky)
    if lt.visibility_m < 500:  # in fog and rain the sky itself is the fog
        sky = sky * 0.3 + np.array(lt.fog, float) * 0.7

    shade = 1.0 if lt.uses_gain_map else lt.ground_shade
    grass = np.array(lt.grass, float) * shade
    trans = fog_factor(dist, lt.visibility_m)[..., None]
    ground_c = grass * trans + np.array(lt.fog, float) * (1 - trans)
    bg = np.where(ground[..., None], ground_c, sky)
    background = np.clip(bg, 0, 255).astype(np.uint8)

    gain = None
    if lt.uses_gain_map:
        lit = lt.ambient + lt.sun * lt.sun_dir[2] + lt.headlights * headlight_gain(
            gx - front_overhang_m, gy)
        g = np.where(ground, np.clip(lit, 0.0, 1.0), 1.0)
        gain = np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2)

    noise_pos = noise_neg = None
    if noise and lt.noise_sigma > 0:
        pad = 32
        n = rng.standard_normal((h + pad, w + pad, 3), dtype=np.float32) * lt.noise_sigma
        noise_pos = np.minimum(np.maximum(n, 0), 255).astype(np.uint8)
        noise_neg = np.minimum(np.maximum(-n, 0), 255).astype(np.uint8)

    rain_bank = None
    if rain and lt.rain > 0:
        rain_bank = np.zeros((2 * h, w, 3), np.uint8)
        count = int(lt.rain * w * h / 450)
        scale = h / 360
        tilt = rng.uniform(-0.15, 0.15)
        xs = rng.uniform(0, w, count)
        ys = rng.uniform(0, 2 * h, count)
        lengths = rng.uniform(6, 26, count) * scale
        levels = rng.uniform(25, 70, count)
        for x, y, ln, lv in zip(xs, ys, lengths, levels, strict=True):
            p0 = (round(x), round(y))
            p1 = (round(x + tilt * ln), round(y + ln))
            c = float(lv)
            cv2.line(rain_bank, p0, p1, (c, c, c * 0.95), 1, cv2.LINE_AA)
    return CameraLayers(background, gain, noise_pos, noise_neg, rain_bank)
