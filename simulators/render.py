"""Camera renderer: road, roadside scenery and actors painted far → near, then light and sensor.

Per frame: copy the precomputed background, paint the road, light it with the headlight map
(dark conditions), paint shadows and meshes in painter's order (far → near, polygons clipped
to the near plane), bloom lamps, add rain streaks, zoom motion blur proportional to the ego
speed, and Gaussian sensor noise from a precomputed bank. Output: BGR uint8 (H, W, 3).
Randomness comes from the scenario seed, the camera and the sim time only, so the same
scenario, seed and step sequence give the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

from simulators.actors import Actor
from simulators.bodies import build_mesh
from simulators.camera import Camera
from simulators.collision import OrientedBox
from simulators.environment import build_layers, fog_factor, lighting_for
from simulators.mesh_render import Glow, LampState, paint_glows, paint_mesh, paint_shadow
from simulators.meshes import Mesh
from simulators.road_render import RoadPainter
from simulators.scenery import Scenery, SceneryItem

if TYPE_CHECKING:
    from simulators.world import World

U8 = NDArray[np.uint8]
LAYER_STREAM, FRAME_STREAM, SCENERY_STREAM, ROAD_STREAM = 3, 4, 5, 6  # seed sub-streams
EXPOSURE_ZOOM_PER_MPS = 0.0011  # zoom-blur factor per m/s of ego speed (≈10 ms exposure at 9 m)
SCENERY_RANGE_M = 220.0  # [m] roadside objects drawn up to this distance ahead
SCENERY_DETAIL_PX_PER_M = 7.0  # windows of far buildings are left out below this image scale
BLINK_HZ = 1.5
GLOW_STRENGTH = {"day": 0.3, "dusk": 0.7, "night": 0.9, "rain": 0.7, "fog": 0.8}
SHADOW_GROW_M = {"car": (0.25, 0.2), "truck": (0.3, 0.2), "pedestrian": (0.0, -0.1),
                 "cyclist": (-0.2, -0.35)}  # [m] contact shadow vs. footprint, length/width


@dataclass(frozen=True)
class RenderOptions:
    """Switches for the costlier or random parts of the image (tests turn some off)."""

    noise: bool = True
    motion_blur: bool = True
    weather: bool = True  # rain streaks
    glow: bool = True
    shadows: bool = True
    max_range_m: float = 480.0  # [m] road drawn up to this distance


def encode_jpeg(img: U8, quality: int = 85) -> bytes:
    """JPEG bytes of a BGR uint8 image; ValueError if encoding fails."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())


class CameraRenderer:
    """Everything precomputed for one camera of one world; `render(world)` makes a frame."""

    def __init__(self, world: World, camera: Camera, options: RenderOptions | None = None) -> None:
        self.options = options or RenderOptions()
        self.camera = camera
        self.lighting = lt = lighting_for(world.scenario.environment)
        self.cam_index = world.camera_index.get(camera.camera_id, 0)
        rng = np.random.default_rng([world.seed, LAYER_STREAM, self.cam_index, camera.width,
                                     camera.height])
        self.layers = build_layers(camera, lt, world.front_overhang_m, rng,
                                   noise=self.options.noise, rain=self.options.weather)
        road_range = min(self.options.max_range_m, lt.visibility_m * 5)
        # the camera-independent parts are built once per world and shared by its cameras
        shared = world.render_cache
        key = ("road", road_range)
        if key not in shared:
            shared[key] = RoadPainter(world.road, lt, road_range,
                                      np.random.default_rng([world.seed, ROAD_STREAM]))
        self.road: RoadPainter = shared[key]
        if "meshes" not in shared:
            shared["meshes"] = {a.index: build_mesh(a.appearance) for a in world.actors}
        self.meshes: dict[int, Mesh] = shared["meshes"]
        if "scenery" not in shared:
            spec = world.scenario.road
            shared["scenery"] = Scenery(world.road, spec.scenery, spec.posts,
                                        np.random.default_rng([world.seed, SCENERY_STREAM]))
        self.scenery: Scenery = shared["scenery"]
        self.object_range_m = min(600.0, lt.visibility_m * 6)
        self._shade_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        shade = 0.0 if lt.uses_gain_map else lt.ground_shade
        self.shadow_albedo = np.array(lt.asphalt, float) * shade * 0.45

    def render(self, world: World) -> U8:
        """The frame of this camera at the world's current time."""
        cam, lt, opts = self.camera, self.lighting, self.options
        ego = world.ego_state()
        R, t = cam.world_to_cam_transform(ego.x_m, ego.y_m, ego.yaw_rad)
        img = self.layers.background.copy()
        s_cam = ego.s_m + cam.mount_x_m
        self.road.paint(img, cam, R, t, s_cam)
        if self.layers.gain is not None:
            cv2.multiply(img, self.layers.gain, dst=img, scale=1.0 / 255.0)

        front = world.front_overhang_m
        ego_front = (ego.x_m + front * math.cos(ego.yaw_rad),
                     ego.y_m + front * math.sin(ego.yaw_rad), ego.yaw_rad)
        glows: list[Glow] | None = [] if opts.glow else None
        blink = (world.t_s * BLINK_HZ) % 1.0 < 0.5
        items: list[tuple[float, int, object]] = []
        for actor in world.actors:
            x, y, _ = actor.pose()
            d = float(np.linalg.norm(R @ np.array([x, y, 0.0]) + t))
            if d < self.object_range_m:
                items.append((d, 1, actor))
        for item in self.scenery.between(s_cam - 8, s_cam + min(SCENERY_RANGE_M, self.object_range_m)):
            centre = R @ np.array([item.x_m, item.y_m, 0.0]) + t
            if centre[2] > -15.0:  # behind the camera only if large and close
                items.append((float(np.linalg.norm(centre)), 0, item))
        items.sort(key=lambda item: -item[0])
        static_lamps = LampState(lights_on=lt.lights_on)
        for dist, _, obj in items:
            if isinstance(obj, SceneryItem):
                mesh = self.scenery.meshes[obj.mesh]
                paint_mesh(img, mesh, mesh.vertices, (obj.x_m, obj.y_m, obj.yaw_rad), R, t, cam,
                           lt, static_lamps, ego_front, {}, glows,
                           detail_px_per_m=SCENERY_DETAIL_PX_PER_M, line_type=cv2.LINE_8,
                           shade_cache=self._shade_cache, cache_key=id(obj))
                continue
            assert isinstance(obj, Actor)
            actor = obj
            mesh = self.meshes[actor.index]
            if opts.shadows and not lt.uses_gain_map:
                box = actor.box()
                grow = SHADOW_GROW_M.get(actor.appearance.gt_class, (0.0, 0.0))
                grown = OrientedBox(box.x_m, box.y_m, box.yaw_rad, box.length_m + grow[0],
                                    box.width_m + grow[1])
                fp = np.c_[grown.corners(), np.full(4, 0.01)]
                tr = float(fog_factor(dist, lt.visibility_m))
                c = self.shadow_albedo * tr + np.array(lt.fog, float) * (1 - tr)
                paint_shadow(img, fp, R, t, cam, (float(c[0]), float(c[1]), float(c[2])))
            angles = mesh.swing_angles(actor.gait_phase_rad)
            parked = actor.appearance.actor_class == "parked_car"
            lamps = LampState(lights_on=lt.lights_on and not parked, braking=actor.brake_lights,
                              indicator=actor.indicator, blink_on=blink)
            paint_mesh(img, mesh, mesh.posed(angles), actor.pose(), R, t, cam, lt, lamps,
                       ego_front, angles, glows)
        if glows:
            paint_glows(img, glows, GLOW_STRENGTH[lt.condition], wet=lt.rain > 0)

        rng = np.random.default_rng([world.seed, FRAME_STREAM, self.cam_index,
                                     round(world.t_s * 1000)])
        h, w = cam.height, cam.width
        if self.layers.rain is not None:
            off = int(rng.integers(h))
            cv2.add(img, self.layers.rain[off : off + h], dst=img)
        if opts.motion_blur:
            img = self._motion_blur(img, ego.speed_mps)
        if self.layers.noise_pos is not None and self.layers.noise_neg is not None:
            ox, oy = (int(v) for v in rng.integers(0, 32, 2))
            cv2.add(img, self.layers.noise_pos[oy : oy + h, ox : ox + w], dst=img)
            cv2.subtract(img, self.layers.noise_neg[oy : oy + h, ox : ox + w], dst=img)
        return img

    def _motion_blur(self, img: U8, speed_mps: float) -> U8:
        """Blend with a slightly zoomed copy about the focus of expansion (forward motion)."""
        cam = self.camera
        k = EXPOSURE_ZOOM_PER_MPS * speed_mps
        w, h = cam.width, cam.height
        if k * max(w, h) / 2 < 0.75:
            return img
        foe_x = min(max(cam.cx + cam.fx * math.tan(cam.yaw_rad), 0.0), w - 1.0)
        foe_y = min(max(cam.cy - cam.fy * math.tan(cam.pitch_rad), 0.0), h - 1.0)
        # the crop that, scaled up by 1 + k about the focus of expansion, fills the image
        x0, y0 = round(foe_x * k / (1 + k)), round(foe_y * k / (1 + k))
        x1, y1 = x0 + round(w / (1 + k)), y0 + round(h / (1 + k))
        zoomed = cv2.resize(img[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_LINEAR)
        return np.asarray(cv2.addWeighted(img, 0.5, zoomed, 0.5, 0.0), dtype=np.uint8)
