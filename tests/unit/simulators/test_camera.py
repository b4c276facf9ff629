"""Pinhole projection and near-plane clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulators.camera import NEAR_M, Camera, clip_near


def camera(**kw: float) -> Camera:
    base = {"camera_id": "front", "width": 640, "height": 360, "fx": 500.0, "fy": 500.0,
            "cx": 320.0, "cy": 180.0, "mount_x_m": 1.5, "mount_y_m": 0.0, "mount_z_m": 1.4}
    base.update(kw)
    return Camera(**base)  # type: ignore[arg-type]


def test_point_ahead_lands_on_expected_pixel() -> None:
    cam = camera()
    # 10 m ahead of the camera, 2 m to the left, on the ground (1.4 m below the camera)
    p_ego = np.array([[11.5, 2.0, 0.0]])
    uv = cam.project(cam.ego_to_cam(p_ego))[0]
    assert uv[0] == pytest.approx(320 - 500 * 2.0 / 10.0)
    assert uv[1] == pytest.approx(180 + 500 * 1.4 / 10.0)


def test_pitch_down_moves_the_optical_axis_onto_the_ground() -> None:
    pitch = math.atan2(1.4, 20.0)  # looking at the ground 20 m ahead of the camera
    cam = camera(pitch_rad=pitch)
    uv = cam.project(cam.ego_to_cam(np.array([[21.5, 0.0, 0.0]])))[0]
    assert uv == pytest.approx([320.0, 180.0], abs=1e-9)


def test_yaw_left_shifts_points_right() -> None:
    cam = camera(yaw_rad=0.1)
    uv = cam.project(cam.ego_to_cam(np.array([[101.5, 0.0, 1.4]])))[0]
    assert uv[0] == pytest.approx(320 + 500 * math.tan(0.1), rel=1e-6)


def test_world_to_camera_follows_the_ego_pose() -> None:
    cam = camera()
    yaw = 0.7
    R, t = cam.world_to_cam_transform(3.0, -2.0, yaw)
    # a point 20 m ahead of the rear axle along the ego heading, at camera height
    p = np.array([3.0 + 20 * math.cos(yaw), -2.0 + 20 * math.sin(yaw), 1.4])
    pc = p @ R.T + t
    assert pc == pytest.approx([0.0, 0.0, 18.5])


def test_scaled_camera_keeps_the_field_of_view() -> None:
    cam = camera().scaled(1280, 720)
    assert (cam.fx, cam.cx, cam.cy) == (1000.0, 640.0, 360.0)
    assert cam.calibration()["width"] == 1280


def test_clip_near_cuts_a_polygon_crossing_the_near_plane() -> None:
    quad = np.array([[-1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, 3.0], [-1.0, 0.0, 3.0]])
    clipped = clip_near(quad)
    assert clipped[:, 2].min() == pytest.approx(NEAR_M)
    assert len(clipped) == 4
    assert len(clip_near(quad - [0, 0, 10])) == 0
