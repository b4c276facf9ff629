"""Pinhole cameras: calibration, mount pose in the ego frame, world → optical frame → pixels.

Optical frame is OpenCV's (x right, y down, z forward). With zero mount angles the optical
axis is the ego +x axis; the mount rotation is yaw (about ego z, + left), then pitch (about
ego y, + looks down), then roll (about the optical axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from simulators.scenario import CameraSpec

FloatArray = NDArray[np.float64]
NEAR_M = 0.3  # [m] near clipping plane

# columns: optical x, y, z axes expressed in the ego frame at zero mount angles
_EGO_FROM_OPTICAL0 = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rot_z(a: float) -> FloatArray:
    """Rotation about +z by `a` [rad]."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(a: float) -> FloatArray:
    """Rotation about +y by `a` [rad]."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(a: float) -> FloatArray:
    """Rotation about +x by `a` [rad]."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@dataclass(frozen=True)
class Camera:
    """A calibrated camera mounted on the ego."""

    camera_id: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    mount_x_m: float
    mount_y_m: float
    mount_z_m: float
    pitch_rad: float = 0.0
    yaw_rad: float = 0.0
    roll_rad: float = 0.0
    rate_hz: float = 20.0
    ego_from_cam: FloatArray = field(init=False, repr=False, compare=False)

    side_planes: tuple[tuple[float, float, float], ...] = field(init=False, repr=False,
                                                               compare=False)

    def __post_init__(self) -> None:
        mount = rot_z(self.yaw_rad) @ rot_y(self.pitch_rad) @ rot_x(self.roll_rad)
        object.__setattr__(self, "ego_from_cam", mount @ _EGO_FROM_OPTICAL0)
        # inward unit normals of the left, right, top and bottom frustum planes (optical frame)
        planes = []
        for n in ((self.fx, 0.0, self.cx), (-self.fx, 0.0, self.width - self.cx),
                  (0.0, self.fy, self.cy), (0.0, -self.fy, self.height - self.cy)):
            norm = math.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2)
            planes.append((n[0] / norm, n[1] / norm, n[2] / norm))
        object.__setattr__(self, "side_planes", tuple(planes))

    @classmethod
    def from_spec(cls, spec: CameraSpec) -> Camera:
        """Build from a scenario camera block (hfov or focal lengths)."""
        hfov = math.radians(spec.hfov_deg if spec.hfov_deg is not None else 60.0)
        focal = spec.width / 2 / math.tan(hfov / 2)
        given = spec.fx if spec.fx is not None else spec.fy  # one focal length implies both
        fx = spec.fx if spec.fx is not None else given if given is not None else focal
        fy = spec.fy if spec.fy is not None else given if given is not None else focal
        m = spec.mount
        return cls(
            camera_id=spec.id, width=spec.width, height=spec.height, fx=fx, fy=fy,
            cx=spec.cx if spec.cx is not None else spec.width / 2,
            cy=spec.cy if spec.cy is not None else spec.height / 2,
            mount_x_m=m.x_m, mount_y_m=m.y_m, mount_z_m=m.z_m,
            pitch_rad=m.pitch_rad, yaw_rad=m.yaw_rad, roll_rad=m.roll_rad, rate_hz=spec.rate_hz,
        )

    def scaled(self, width: int, height: int) -> Camera:
        """The same camera at another resolution (intrinsics scaled with it)."""
        sx, sy = width / self.width, height / self.height
        return replace(self, width=width, height=height, fx=self.fx * sx, fy=self.fy * sy,
                       cx=self.cx * sx, cy=self.cy * sy)

    @property
    def intrinsic_matrix(self) -> FloatArray:
        """3×3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def position_ego(self) -> FloatArray:
        """Mount position in the ego frame [m]."""
        return np.array([self.mount_x_m, self.mount_y_m, self.mount_z_m])

    def calibration(self) -> dict[str, float | int]:
        """The calibration as the frame metadata carries it (services' `Calibration` fields)."""
        return {
            "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
            "width": self.width, "height": self.height,
            "mount_x_m": self.mount_x_m, "mount_y_m": self.mount_y_m, "mount_z_m": self.mount_z_m,
            "pitch_rad": self.pitch_rad, "yaw_rad": self.yaw_rad, "roll_rad": self.roll_rad,
        }

    def ego_to_cam(self, points: FloatArray) -> FloatArray:
        """Points (N, 3) in the ego frame → optical frame."""
        return np.asarray((points - self.position_ego) @ self.ego_from_cam)

    def world_to_cam_transform(self, ego_x: float, ego_y: float, ego_yaw: float
                               ) -> tuple[FloatArray, FloatArray]:
        """(R, t) with p_cam = p_world @ R.T + t for the ego at (x, y, yaw)."""
        cam_from_ego = self.ego_from_cam.T
        R = cam_from_ego @ rot_z(-ego_yaw)
        t = -R @ np.array([ego_x, ego_y, 0.0]) - cam_from_ego @ self.position_ego
        return R, t

    def project(self, points_cam: FloatArray) -> FloatArray:
        """Optical-frame points (N, 3) with z > 0 → pixels (N, 2)."""
        z = points_cam[:, 2]
        return np.stack(
            [self.fx * points_cam[:, 0] / z + self.cx, self.fy * points_cam[:, 1] / z + self.cy],
            axis=1,
        )

    def rays_ego(self) -> FloatArray:
        """Unnormalised view ray of every pixel in the ego frame, shape (H, W, 3)."""
        u = (np.arange(self.width) + 0.5 - self.cx) / self.fx
        v = (np.arange(self.height) + 0.5 - self.cy) / self.fy
        uu, vv = np.meshgrid(u, v)
        rays_cam = np.stack([uu, vv, np.ones_like(uu)], axis=-1)
        return np.asarray(rays_cam @ self.ego_from_cam.T)


def clip_near(poly: FloatArray, near: float = NEAR_M) -> FloatArray:
    """Clip a polygon (N, 3) in the optical frame to z >= near (Sutherland–Hodgman)."""
    z = poly[:, 2]
    if z.min() >= near:
        return poly
    if z.max() < near:
        return poly[:0]
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if out else poly[:0]
