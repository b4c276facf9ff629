"""Per-camera ground truth: 2D boxes, truncation and occlusion, 3D position and velocity.

An object's silhouette is the convex hull of its 3D box (clipped to the near plane) in the
image. Truncation is the share of the silhouette outside the image; occlusion the share of
the in-image part hidden by nearer objects (rasterised far → near at half resolution, the
same order the renderer paints in). `visible_fraction = (1 − truncation)(1 − occlusion)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from common.classes import CLASS_IDS
from simulators.camera import NEAR_M, Camera

if TYPE_CHECKING:
    from simulators.actors import Actor
    from simulators.world import World, WorldEgoState

OCCLUSION_SCALE = 0.5  # resolution of the occlusion buffer relative to the image
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
          (0, 4), (1, 5), (2, 6), (3, 7))


@dataclass(frozen=True)
class GroundTruthObject:
    """One actor as one camera sees it. Positions/velocities are in the ego frame."""

    track_id: int
    actor_id: str
    object_class: str  # car, truck, pedestrian, cyclist
    class_id: int  # 1..4
    box: tuple[float, float, float, float]  # [x1, y1, x2, y2] px, clipped to the image
    visible_fraction: float
    truncation: float
    occlusion: float
    position_m: tuple[float, float, float]  # box centre
    velocity_mps: tuple[float, float]  # relative to the ego, as a tracker in the ego sees it
    ground_velocity_mps: tuple[float, float]  # over ground, in ego axes
    size_m: tuple[float, float, float]  # length, width, height
    yaw_rad: float  # relative to the ego heading
    range_m: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `class` as the wire name, vectors as {x, y[, z]}."""
        d = asdict(self)
        d["class"] = d.pop("object_class")
        d["position_m"] = dict(zip("xyz", self.position_m, strict=True))
        d["velocity_mps"] = dict(zip("xy", self.velocity_mps, strict=True))
        d["ground_velocity_mps"] = dict(zip("xy", self.ground_velocity_mps, strict=True))
        return d


@dataclass(frozen=True)
class FrameGroundTruth:
    """Ground truth of one camera frame."""

    t_s: float
    camera_id: str
    ego: WorldEgoState
    objects: list[GroundTruthObject] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the ego pose and the objects."""
        e = self.ego
        return {
            "t_s": self.t_s,
            "camera_id": self.camera_id,
            "ego_pose": {"x_m": e.x_m, "y_m": e.y_m, "yaw_rad": e.yaw_rad},
            "ego": e.to_dict(),
            "objects": [o.to_dict() for o in self.objects],
        }


def box_corners_world(actor: Actor) -> NDArray[np.float64]:
    """The 8 corners of an actor's 3D box in the world frame, bottom 4 first."""
    fp = actor.box().corners()
    h = actor.appearance.height_m
    return np.vstack([np.c_[fp, np.zeros(4)], np.c_[fp, np.full(4, h)]])


def silhouette(corners_cam: NDArray[np.float64], camera: Camera) -> NDArray[np.float32] | None:
    """Convex hull (K, 1, 2) of a box's image, near-plane clipped; None if behind the camera."""
    z = corners_cam[:, 2]
    if z.max() < NEAR_M:
        return None
    pts = [corners_cam[z >= NEAR_M]]
    for a, b in _EDGES:
        za, zb = z[a], z[b]
        if (za < NEAR_M) != (zb < NEAR_M):
            t = (NEAR_M - za) / (zb - za)
            pts.append((corners_cam[a] + t * (corners_cam[b] - corners_cam[a]))[None])
    px = camera.project(np.vstack(pts)).astype(np.float32)
    return np.asarray(cv2.convexHull(px), dtype=np.float32)


def compute_ground_truth(world: World, camera: Camera) -> FrameGroundTruth:
    """Ground truth of every actor whose silhouette reaches into `camera`'s image."""
    ego = world.ego_state()
    R, t = camera.world_to_cam_transform(ego.x_m, ego.y_m, ego.yaw_rad)
    w, h = camera.width, camera.height
    rect = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    found = []
    for actor in world.actors:
        cam_pts = box_corners_world(actor) @ R.T + t
        hull = silhouette(cam_pts, camera)
        if hull is None:
            continue
        area = float(cv2.contourArea(hull))
        inside, clipped = cv2.intersectConvexConvex(hull, rect)
        if area < 1e-6 or inside <= 0 or clipped is None:
            continue
        depth = float(np.linalg.norm(cam_pts.mean(axis=0)))
        found.append((depth, actor, hull, area, float(inside), clipped.reshape(-1, 2)))

    sw, sh = max(1, round(w * OCCLUSION_SCALE)), max(1, round(h * OCCLUSION_SCALE))
    labels = np.zeros((sh, sw), dtype=np.uint16)
    found.sort(key=lambda item: -item[0])  # far → near, as painted
    own = np.zeros(len(found) + 1)
    for n, (_, _, hull, _, _, _) in enumerate(found, start=1):
        pts = np.round(hull.reshape(-1, 2) * OCCLUSION_SCALE * 16).astype(np.int32)
        cv2.fillConvexPoly(labels, pts, n, lineType=cv2.LINE_8, shift=4)
        own[n] = _pixel_count(pts, sw, sh)
    visible = np.bincount(labels.ravel(), minlength=len(found) + 1)

    ex, ey = world.ego_velocity()
    cy, sy = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    objects = []
    for n, (depth, actor, _, area, inside, clipped) in enumerate(found, start=1):
        truncation = min(max(1.0 - inside / area, 0.0), 1.0)
        occlusion = 1.0 - visible[n] / own[n] if own[n] > 0 else 0.0
        occlusion = min(max(occlusion, 0.0), 1.0)
        x1, y1 = clipped.min(axis=0)
        x2, y2 = clipped.max(axis=0)
        ax, ay, ayaw = actor.pose()
        dx, dy = ax - ego.x_m, ay - ego.y_m
        px, py = cy * dx + sy * dy, -sy * dx + cy * dy
        vx, vy = actor.velocity()
        gvx, gvy = cy * vx + sy * vy, -sy * vx + cy * vy
        rvx, rvy = cy * (vx - ex) + sy * (vy - ey), -sy * (vx - ex) + cy * (vy - ey)
        omega = ego.yaw_rate_radps  # the ego frame rotates: subtract ω × r
        rvx, rvy = rvx + omega * py, rvy - omega * px
        app = actor.appearance
        yaw_rel = math.atan2(math.sin(ayaw - ego.yaw_rad), math.cos(ayaw - ego.yaw_rad))
        objects.append(GroundTruthObject(
            track_id=actor.track_id, actor_id=actor.actor_id, object_class=app.gt_class,
            class_id=CLASS_IDS[app.gt_class],
            box=(float(x1), float(y1), float(x2), float(y2)),
            visible_fraction=round((1 - truncation) * (1 - occlusion), 4),
            truncation=round(truncation, 4), occlusion=round(occlusion, 4),
            position_m=(px, py, app.height_m / 2), velocity_mps=(rvx, rvy),
            ground_velocity_mps=(gvx, gvy), size_m=(app.length_m, app.width_m, app.height_m),
            yaw_rad=yaw_rel, range_m=depth,
        ))
    objects.sort(key=lambda o: o.track_id)
    return FrameGroundTruth(t_s=world.t_s, camera_id=camera.camera_id, ego=ego, objects=objects)


def _pixel_count(pts: NDArray[np.int32], w: int, h: int) -> int:
    """Pixels of a convex polygon (shift-4 coordinates) inside a w×h image."""
    x0 = max(int(pts[:, 0].min()) >> 4, 0)
    y0 = max(int(pts[:, 1].min()) >> 4, 0)
    x1 = min((int(pts[:, 0].max()) >> 4) + 2, w)
    y1 = min((int(pts[:, 1].max()) >> 4) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return 0
    roi = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    shifted = pts - np.array([x0 << 4, y0 << 4], dtype=np.int32)
    cv2.fillConvexPoly(roi, shifted, 1, lineType=cv2.LINE_8, shift=4)
    return int(cv2.countNonZero(roi))
