"""Frame annotations: the planned path projected with the frame's calibration, boxes, text."""

from __future__ import annotations

import numpy as np
import pytest

from common.calibration import Calibration
from services.messages import (
    ControlMode,
    DetectedObject,
    FrameRef,
    ObjectClass,
    PerceptionObjects,
    PlanningTrajectory,
    TrajectoryPoint,
    Vec3,
    VehicleControl,
)
from services.report.overlay import (
    EGO_HALF_WIDTH_M,
    MIN_DEPTH_M,
    FrameAnnotations,
    annotate,
    path_ribbon_px,
    resample_path,
)
from services.report.series import EventMark

# A level camera 1.5 m ahead of the rear axle, 1.4 m up: ground point (X, Y, 0) in the ego frame
# is at depth X − 1.5, u = cx − fx·Y / depth, v = cy + fy·1.4 / depth.
CALIB = Calibration(fx=500.0, fy=500.0, cx=320.0, cy=180.0, width=640, height=360,
                    mount_x_m=1.5, mount_y_m=0.0, mount_z_m=1.4)


def test_resample_path_steps_evenly_and_keeps_both_ends() -> None:
    pts = resample_path(np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]]), step_m=1.0)
    assert pts[0].tolist() == [0.0, 0.0]
    assert pts[-1].tolist() == [3.0, 4.0]
    gaps = np.hypot(*np.diff(pts, axis=0).T)
    assert np.all(gaps <= 1.0 + 1e-9)
    assert len(pts) == 8


def test_straight_path_projects_on_the_ground_ahead() -> None:
    path = np.array([[0.0, 0.0], [30.0, 0.0]])  # starts under the rear axle: behind the camera
    centre, ribbon = path_ribbon_px(path, CALIB)
    assert np.isfinite(centre).all()
    assert np.isfinite(ribbon).all()
    depth = (centre[:, 1] - CALIB.cy) / CALIB.fy  # = 1.4 / (X − 1.5)
    x_m = 1.5 + 1.4 / depth
    assert x_m.min() >= 1.5 + MIN_DEPTH_M - 1e-6  # nothing behind or at the camera is drawn
    assert x_m.max() == pytest.approx(30.0)
    np.testing.assert_allclose(centre[:, 0], CALIB.cx)
    # the ribbon is the car's width: ±EGO_HALF_WIDTH_M at every depth
    n = len(centre)
    left, right = ribbon[:n], ribbon[n:][::-1]
    np.testing.assert_allclose(left[:, 0], CALIB.cx - CALIB.fx * EGO_HALF_WIDTH_M / (x_m - 1.5))
    np.testing.assert_allclose(right[:, 0], CALIB.cx + CALIB.fx * EGO_HALF_WIDTH_M / (x_m - 1.5))


def test_path_to_the_left_moves_left_in_the_image() -> None:
    centre, _ = path_ribbon_px(np.array([[5.0, 0.0], [20.0, 3.0]]), CALIB)
    assert centre[-1, 0] < CALIB.cx  # ego +y (left) is image −u
    assert centre[-1, 1] < centre[0, 1]  # farther is higher up, towards the horizon


def test_a_path_entirely_behind_the_camera_draws_nothing() -> None:
    centre, ribbon = path_ribbon_px(np.array([[0.0, 0.0], [1.0, 0.0]]), CALIB)
    assert centre.shape == (0, 2)
    assert ribbon.shape == (0, 2)


def _annotations(**kw: object) -> FrameAnnotations:
    obj = DetectedObject(track_id=7, object_class=ObjectClass.CAR, score=0.9,
                         box=(300.0, 150.0, 340.0, 190.0), position_m=Vec3(x=20.0, y=0.0),
                         ttc_s=2.0)
    objects = PerceptionObjects(vehicle_id="ego", camera_id="front",
                                source=FrameRef(seq=3, stamp_ns=0), stamp_ns=0,
                                model_version="t", objects=[obj])
    traj = PlanningTrajectory(vehicle_id="ego", stamp_ns=0, behaviour="cruise",
                              points=[TrajectoryPoint(t_s=i, x_m=5.0 * i, y_m=0.0, v_mps=5.0)
                                      for i in range(6)])
    control = VehicleControl(vehicle_id="ego", stamp_ns=0, seq=1, valid_until_ns=0,
                             steering_tire_angle_rad=0.0, target_speed_mps=8.0, accel_mps2=-2.0,
                             mode=ControlMode.EMERGENCY_STOP)
    base: dict[str, object] = {"t_s": 0.15, "seq": 3, "camera_id": "front", "objects": objects,
                               "trajectory": traj, "control": control,
                               "event": EventMark(0.1, "collision_risk", "critical", "monitor",
                                                  "collision_risk: car #7 TTC 2.00 s")}
    base.update(kw)
    return FrameAnnotations(**base)  # type: ignore[arg-type]


def test_annotate_scales_the_canvas_and_draws_every_part() -> None:
    image = np.full((360, 640, 3), 128, np.uint8)
    out = annotate(image, _annotations(), CALIB, scale=1.5)
    same = annotate(image, _annotations(), CALIB)
    assert same is not image
    assert out.shape == (540, 960, 3)
    assert image.mean() == 128  # the input is left alone
    box_edge = out[round(150 * 1.5):round(190 * 1.5), round(300 * 1.5) - 1:round(300 * 1.5) + 2]
    assert np.abs(box_edge.astype(int) - 128).max() > 60  # the box outline
    road = out[480, 470:490]  # the path ribbon near the bottom centre is tinted green
    assert (road[:, 1].astype(int) - road[:, 2].astype(int)).mean() > 20
    assert out[:60, :200].mean() < 128  # the shaded control panel, top left
    assert out[-20:, :].mean() < 128  # the event bar at the bottom


def test_collision_frames_get_a_red_border() -> None:
    image = np.full((360, 640, 3), 128, np.uint8)
    plain = annotate(image, _annotations(), CALIB)
    hit = annotate(image, _annotations(collided=True), CALIB)
    assert tuple(hit[200, 1]) != tuple(plain[200, 1])
    assert hit[200, 1, 2] > 200
    assert hit[200, 1, 0] < 100
