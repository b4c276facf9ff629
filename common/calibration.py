"""The pinhole camera calibration and its geometry, defined once.

One type serves both sides: ranging and the report's overlay use its geometry, and the
``camera.frames`` calibration header (``services.messages.FrameMeta``) carries it on the wire.
It is therefore a pydantic model whose fields, descriptions and docstring *are* the published
header schema: add fields only, never rename or re-type one (docs/schemas would change).

Frames: ego ISO 8855 (x forward, y left, z up, origin on the ground under the rear axle); camera
OpenCV optical (x right, y down, z forward). Mount rotation R = Rz(yaw)·Ry(pitch)·Rx(roll) about
the ego axes (pitch positive looks down, yaw positive looks left), so a camera-body vector
(x forward, y left, z up) maps to the ego frame by R.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Optical axes expressed in the camera body frame (x fwd, y left, z up): x_opt = −y, y_opt = −z,
# z_opt = x. Rows map a body vector to optical coordinates.
OPT_FROM_BODY = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
MAX_SIDE_PX = 65535  # JPEG cannot hold a wider or taller image; no camera comes near it


# The class docstring is the schema's description: keep it as published.
class Calibration(BaseModel):
    """Pinhole camera calibration; the mount pose is in the ego frame (OpenCV optical axes)."""

    # As every nested part of a payload: unknown keys are ignored (a header or a simulator
    # camera may carry more), a calibration never changes once built, and every number is
    # finite (an infinite focal length would turn ranges into NaN downstream).
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    fx: float = Field(gt=0, description="Focal length x [px].")
    fy: float = Field(gt=0, description="Focal length y [px].")
    cx: float = Field(description="Principal point x [px].")
    cy: float = Field(description="Principal point y [px].")
    width: int = Field(gt=0, le=MAX_SIDE_PX, description="Image width [px].")
    height: int = Field(gt=0, le=MAX_SIDE_PX, description="Image height [px].")
    mount_x_m: float = Field(default=1.5, description="Camera position, ego x [m].")
    mount_y_m: float = Field(default=0.0, description="Camera position, ego y [m].")
    mount_z_m: float = Field(default=1.4, description="Camera height above ground [m].")
    # Pitch beyond ±π/2 would look backwards upside down: yaw and roll say that instead.
    pitch_rad: float = Field(default=0.0, ge=-math.pi / 2, le=math.pi / 2,
                             description="Mount pitch, positive looks down [rad].")
    yaw_rad: float = Field(default=0.0, ge=-math.pi, le=math.pi,
                           description="Mount yaw, positive looks left [rad].")
    roll_rad: float = Field(default=0.0, ge=-math.pi, le=math.pi, description="Mount roll [rad].")

    @property
    def rotation(self) -> np.ndarray:
        """``(3, 3)`` rotation from camera body axes to ego axes."""
        cy_, sy_ = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        cp, sp = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        cr, sr = math.cos(self.roll_rad), math.sin(self.roll_rad)
        Rz = np.array([[cy_, -sy_, 0.0], [sy_, cy_, 0.0], [0.0, 0.0, 1.0]])
        Ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        Rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
        return Rz @ Ry @ Rx

    @property
    def mount_m(self) -> np.ndarray:
        """Camera centre in the ego frame ``(3,)`` [m]."""
        return np.array([self.mount_x_m, self.mount_y_m, self.mount_z_m])

    def ego_to_optical(self, points_ego: np.ndarray) -> np.ndarray:
        """Ego-frame points ``(N, 3)`` [m] → camera optical frame ``(N, 3)`` [m]."""
        p = np.asarray(points_ego, dtype=np.float64).reshape(-1, 3)
        return (p - self.mount_m) @ self.rotation @ OPT_FROM_BODY.T

    def project(self, points_ego: np.ndarray) -> np.ndarray:
        """Ego-frame points ``(N, 3)`` [m] → pixels ``(N, 2)`` ``(u, v)``; NaN behind the camera."""
        p = self.ego_to_optical(points_ego)
        out = np.full((p.shape[0], 2), np.nan)
        front = p[:, 2] > 1e-9
        out[front, 0] = self.fx * p[front, 0] / p[front, 2] + self.cx
        out[front, 1] = self.fy * p[front, 1] / p[front, 2] + self.cy
        return out

    def pixel_ray(self, u: float, v: float) -> np.ndarray:
        """Unit ray ``(3,)`` in the ego frame through pixel ``(u, v)``."""
        d_opt = np.array([(u - self.cx) / self.fx, (v - self.cy) / self.fy, 1.0])
        d = self.rotation @ (OPT_FROM_BODY.T @ d_opt)
        return np.asarray(d / np.linalg.norm(d))

    def pixel_to_ground(self, u: float, v: float) -> tuple[float, float] | None:
        """Ego ``(x, y)`` [m] where the ray through pixel ``(u, v)`` meets the ground (z = 0).

        ``None`` when the ray does not descend (pixel at or above the horizon).
        """
        d = self.pixel_ray(u, v)
        if d[2] >= -1e-9:
            return None
        s = -self.mount_z_m / d[2]
        return float(self.mount_x_m + s * d[0]), float(self.mount_y_m + s * d[1])
