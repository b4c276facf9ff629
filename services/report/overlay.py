"""Drawing on one camera frame: detections, the planned path, control values and events.

Pure numpy + OpenCV on BGR images. The planned path is in the ego frame at planning time; it is
projected with the frame's own calibration by `perception.ranging.Calibration.project`, the one
ego → pixel projection of the code base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from common.calibration import Calibration
from services.messages import PerceptionObjects, PlanningTrajectory, VehicleControl, VehicleState
from services.report.series import EventMark

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: BGR colours per object class (colour-blind-safe Okabe-Ito hues).
CLASS_COLOURS = {"car": (178, 114, 0), "truck": (0, 159, 230), "pedestrian": (167, 121, 204),
                 "cyclist": (66, 228, 240)}
SEVERITY_BGR = {"info": (200, 200, 200), "warning": (0, 165, 255), "critical": (40, 40, 230)}
MODE_BGR = {"normal": (120, 220, 120), "comfortable_stop": (0, 165, 255),
            "emergency_stop": (40, 40, 230)}
PATH_BGR = (90, 230, 90)
#: Half the drawn path's width [m]: the planned path is drawn as wide as a car. A drawing width
#: only, not the in-path test (that is `common.in_path.PATH_HALF_WIDTH_M`); the scenario's own
#: ego width is not in the recording.
EGO_HALF_WIDTH_M = 0.9
PATH_STEP_M = 0.5  # resampling step along the path before projection [m]
MIN_DEPTH_M = 1.0  # path points closer to the camera than this are not drawn [m]
TTC_LABEL_S = 10.0  # show an object's TTC when below this [s]


@dataclass(frozen=True)
class FrameAnnotations:
    """What to draw on one frame; every part is optional."""

    t_s: float
    seq: int
    camera_id: str
    objects: PerceptionObjects | None = None
    trajectory: PlanningTrajectory | None = None
    control: VehicleControl | None = None
    state: VehicleState | None = None
    event: EventMark | None = None
    collided: bool = False


def resample_path(xy_m: np.ndarray, step_m: float = PATH_STEP_M) -> np.ndarray:
    """Points every `step_m` along a polyline ``(N, 2)`` [m], ends included; ``(M, 2)``."""
    xy = np.asarray(xy_m, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 2:
        return xy
    seg = np.hypot(*np.diff(xy, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return xy[:1]
    grid = np.append(np.arange(0.0, s[-1], step_m), s[-1])
    return np.column_stack([np.interp(grid, s, xy[:, 0]), np.interp(grid, s, xy[:, 1])])


def path_ribbon_px(xy_m: np.ndarray, calib: Calibration, *,
                   half_width_m: float = EGO_HALF_WIDTH_M) -> tuple[np.ndarray, np.ndarray]:
    """The path on the ground (z = 0) in pixels: (centre ``(K, 2)``, ribbon polygon ``(2K, 2)``).

    Only points at least MIN_DEPTH_M in front of the camera are kept; empty arrays when none is.
    """
    xy = resample_path(xy_m)
    if len(xy) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    heading = np.gradient(xy, axis=0)
    heading /= np.maximum(np.linalg.norm(heading, axis=1, keepdims=True), 1e-9)
    normal = np.column_stack([-heading[:, 1], heading[:, 0]])  # points left of the path
    left, right = xy + half_width_m * normal, xy - half_width_m * normal
    ground = [np.column_stack([p, np.zeros(len(p))]) for p in (xy, left, right)]
    depth = np.min([calib.ego_to_optical(g)[:, 2] for g in ground], axis=0)
    keep = depth >= MIN_DEPTH_M
    if keep.sum() < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    centre, l_px, r_px = (calib.project(g[keep]) for g in ground)
    return centre, np.vstack([l_px, r_px[::-1]])


def _text(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int],
          scale: float = 0.5, thickness: int = 1) -> None:
    # One pass on a shaded panel: a thick dark pass as an outline does not line up with the thin
    # one in OpenCV 5's font renderer (thickness changes the glyph advance there).
    cv2.putText(img, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)


def _shade(img: np.ndarray, x1: int, y1: int, x2: int, y2: int, alpha: float = 0.65) -> None:
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(img.shape[1], x2), min(img.shape[0], y2)
    if x2 > x1 and y2 > y1:
        img[y1:y2, x1:x2] = (img[y1:y2, x1:x2] * (1 - alpha)).astype(img.dtype)


def draw_path(img: np.ndarray, trajectory: PlanningTrajectory, calib: Calibration,
              scale: float) -> None:
    """The planned path as a translucent car-wide ribbon with its centre line."""
    xy = np.array([[p.x_m, p.y_m] for p in trajectory.points])
    centre, ribbon = path_ribbon_px(xy, calib)
    if not len(centre):
        return
    limit = 4 * max(img.shape)  # far outside the image: keep int32 coordinates sane
    poly = np.clip(ribbon * scale, -limit, limit).round().astype(np.int32)
    layer = img.copy()
    cv2.fillPoly(layer, [poly], PATH_BGR, cv2.LINE_AA)
    cv2.addWeighted(layer, 0.25, img, 0.75, 0.0, dst=img)
    line = np.clip(centre * scale, -limit, limit).round().astype(np.int32)
    cv2.polylines(img, [line], False, PATH_BGR, 2, cv2.LINE_AA)


def draw_objects(img: np.ndarray, objects: PerceptionObjects, scale: float) -> None:
    """Boxes with class, track id, range [m] and, when closing, TTC [s]."""
    for obj in objects.objects:
        colour = CLASS_COLOURS.get(obj.object_class.value, (255, 255, 255))
        x1, y1, x2, y2 = (round(v * scale) for v in obj.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2, cv2.LINE_AA)
        label = f"{obj.object_class.value} #{obj.track_id}"
        if obj.position_m is not None:
            label += f" {math.hypot(obj.position_m.x, obj.position_m.y):.1f} m"
        if obj.ttc_s is not None and 0 <= obj.ttc_s < TTC_LABEL_S:
            label += f" TTC {obj.ttc_s:.1f} s"
        (w, h), base = cv2.getTextSize(label, FONT, 0.45, 1)
        top = y1 - h - base - 4 if y1 - h - base - 4 >= 0 else y2 + 2
        cv2.rectangle(img, (x1, top), (x1 + w + 6, top + h + base + 4), colour, cv2.FILLED)
        ink = (0, 0, 0) if sum(colour) > 400 else (255, 255, 255)  # readable on light fills
        cv2.putText(img, label, (x1 + 3, top + h + 2), FONT, 0.45, ink, 1, cv2.LINE_AA)


def draw_panel(img: np.ndarray, a: FrameAnnotations) -> None:
    """Control values and time, top left; the latest event, bottom; a collision banner."""
    lines: list[tuple[str, tuple[int, int, int]]] = [
        (f"t {a.t_s:6.2f} s   frame {a.seq}   {a.camera_id}", (230, 230, 230))]
    speed = f"speed {a.state.speed_mps:5.2f} m/s" if a.state else "speed -"
    if a.control:
        lines.append((f"{speed}   target {a.control.target_speed_mps:5.2f} m/s", (255, 255, 255)))
        lines.append((f"accel {a.control.accel_mps2:+5.2f} m/s2   steer "
                      f"{math.degrees(a.control.steering_tire_angle_rad):+5.1f} deg",
                      (255, 255, 255)))
        mode = a.control.mode.value
        behaviour = f"   plan {a.trajectory.behaviour}" if a.trajectory else ""
        lines.append((f"mode {mode}{behaviour}", MODE_BGR.get(mode, (255, 255, 255))))
    else:
        lines.append((f"{speed}   no control for this frame", (200, 200, 200)))
    widths = [cv2.getTextSize(t, FONT, 0.5, 1)[0][0] for t, _ in lines]
    _shade(img, 0, 0, max(widths) + 16, 10 + 20 * len(lines))
    for i, (text, colour) in enumerate(lines):
        _text(img, text, (8, 22 + 20 * i), colour)
    if a.event is not None:
        text = f"[{a.event.severity}] {a.event.text}"
        _shade(img, 0, img.shape[0] - 28, img.shape[1], img.shape[0])
        _text(img, text, (8, img.shape[0] - 9), SEVERITY_BGR.get(a.event.severity, (255, 255, 255)))
    if a.collided:
        cv2.rectangle(img, (0, 0), (img.shape[1] - 1, img.shape[0] - 1), (40, 40, 230), 6)
        (w, h), _ = cv2.getTextSize("COLLISION", FONT, 1.0, 2)
        _shade(img, img.shape[1] - w - 24, 6, img.shape[1] - 6, 16 + h + 10)
        _text(img, "COLLISION", (img.shape[1] - w - 14, 16 + h), (60, 60, 255), 1.0, 2)


def annotate(image_bgr: np.ndarray, a: FrameAnnotations, calib: Calibration,
             scale: float = 1.0) -> np.ndarray:
    """A new image: `image_bgr` resized by `scale` with every annotation of `a` drawn on it.

    Boxes and calibration are in the recorded image's pixels; `scale` only changes the canvas
    (text is drawn at the output size, so it stays sharp).
    """
    if scale == 1.0:
        img = image_bgr.copy()
    else:
        img = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    if a.trajectory is not None:
        draw_path(img, a.trajectory, calib, scale)
    if a.objects is not None:
        draw_objects(img, a.objects, scale)
    draw_panel(img, a)
    return img
