"""Ranging geometry: projection, ray–ground intersection, size priors, TTC, ego-frame filter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.calibration import Calibration
from common.classes import CLASS_IDS
from perception.motion import EgoMotionFilter
from perception.ranging import estimate_range, time_to_collision

FRONT = Calibration(
    fx=640.0, fy=640.0, cx=320.0, cy=180.0, width=640, height=360,
    mount_x_m=1.5, mount_y_m=0.0, mount_z_m=1.4, pitch_rad=0.02,
)
MOUNTS = [
    FRONT,
    Calibration(fx=500.0, fy=520.0, cx=330.0, cy=170.0, width=640, height=360,
                mount_x_m=2.0, mount_y_m=0.3, mount_z_m=1.6, pitch_rad=0.1, yaw_rad=0.2,
                roll_rad=0.03),
    Calibration(fx=800.0, fy=800.0, cx=640.0, cy=360.0, width=1280, height=720,
                mount_x_m=1.0, mount_y_m=-0.5, mount_z_m=2.5, pitch_rad=-0.05, yaw_rad=-0.4),
]


def box_of(calib: Calibration, centre_x: float, centre_y: float, width: float, height: float,
           depth: float = 0.0) -> np.ndarray:
    """Image box of an upright cuboid whose near face is at ``centre_x`` (ego frame)."""
    corners = np.array([
        [centre_x + dx, centre_y + dy, z]
        for dx in (0.0, depth) for dy in (-width / 2, width / 2) for z in (0.0, height)
    ])
    uv = calib.project(corners)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])


def test_optical_axes_follow_the_convention() -> None:
    level = Calibration(fx=100, fy=100, cx=50, cy=40, width=100, height=80, mount_z_m=1.0)
    # A point straight ahead at camera height lands on the principal point; left is smaller u;
    # higher is smaller v.
    ahead, left, up = level.project(np.array([[11.5, 0, 1.0], [11.5, 1.0, 1.0], [11.5, 0, 2.0]]))
    assert ahead == pytest.approx([50.0, 40.0])
    assert left[0] < 50.0
    assert left[1] == pytest.approx(40.0)
    assert up[1] < 40.0
    assert up[0] == pytest.approx(50.0)


def test_positive_pitch_looks_down_and_positive_yaw_looks_left() -> None:
    point = np.array([[20.0, 0.0, 1.4]])
    down = Calibration(**{**FRONT.__dict__, "pitch_rad": 0.1})
    left = Calibration(**{**FRONT.__dict__, "pitch_rad": 0.0, "yaw_rad": 0.1})
    assert down.project(point)[0, 1] < FRONT.cy  # the scene moves up in the image
    assert left.project(point)[0, 0] > FRONT.cx  # the scene moves right in the image


@pytest.mark.parametrize("calib", MOUNTS)
def test_ground_point_round_trip(calib: Calibration) -> None:
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.uniform(5, 60, 50), rng.uniform(-8, 8, 50), np.zeros(50)])
    uv = calib.project(points)
    visible = ~np.isnan(uv).any(axis=1)
    assert visible.sum() > 10
    for (u, v), p in zip(uv[visible], points[visible], strict=True):
        ground = calib.pixel_to_ground(u, v)
        assert ground is not None
        assert ground == pytest.approx((p[0], p[1]), abs=1e-6)


def test_points_behind_the_camera_do_not_project() -> None:
    assert np.isnan(FRONT.project(np.array([[-5.0, 0.0, 0.0]]))).all()


def test_pixel_above_the_horizon_has_no_ground_point() -> None:
    assert FRONT.pixel_to_ground(320.0, 10.0) is None


def test_ground_range_of_a_car_box() -> None:
    box = box_of(FRONT, 25.0, 1.0, 1.8, 1.5, depth=4.5)
    est = estimate_range(box, CLASS_IDS["car"], FRONT)
    assert est is not None
    assert est.method == "ground"
    assert est.consistent is True
    assert est.contact_m == pytest.approx((25.0, 1.0), abs=0.05)
    assert est.range_m == pytest.approx(math.hypot(25.0, 1.0), abs=0.05)
    assert est.implied_height_m == pytest.approx(1.5, rel=0.05)
    # The centre lies beyond the near face, along the line of sight.
    assert est.position_m[0] > 25.0


def test_truncated_bottom_falls_back_to_the_size_prior() -> None:
    # A pedestrian close in front whose feet are below the image edge.
    box = box_of(FRONT, 4.0, 0.0, 0.5, 1.7)
    assert box[3] > FRONT.height
    clipped = box.copy()
    clipped[3] = FRONT.height
    clipped[1] = max(clipped[1], 0.0)
    est = estimate_range(clipped, CLASS_IDS["pedestrian"], FRONT)
    assert est is not None
    assert est.method == "size"
    # Apparent height is cut, so the prior over-estimates range; it stays the right order.
    assert 3.0 < est.contact_m[0] < 12.0


def test_car_cut_off_at_the_bottom_is_ranged_by_its_width() -> None:
    # A car 3 m ahead of the camera: its bumper is below the image edge, which cuts its height
    # too; the rear width (1.8 m prior) still gives the range.
    box = box_of(FRONT, 4.5, 0.0, 1.8, 1.5, depth=4.5)
    assert box[3] > FRONT.height
    clipped = box.copy()
    clipped[3] = FRONT.height
    est = estimate_range(clipped, CLASS_IDS["car"], FRONT)
    assert est is not None
    assert est.method == "width"
    assert est.contact_m[0] == pytest.approx(4.5, rel=0.05)
    # Cut at a side as well, the width is no use: back to the (too long) height prior.
    side = clipped.copy()
    side[0] = 0.0
    assert estimate_range(side, CLASS_IDS["car"], FRONT).method == "size"  # type: ignore[union-attr]


def test_implausible_height_uses_the_size_prior() -> None:
    # A "car" box 3× taller than a car at its ground range: likely a wrong contact point.
    box = box_of(FRONT, 20.0, 0.0, 1.8, 4.5)
    est = estimate_range(box, CLASS_IDS["car"], FRONT)
    assert est is not None
    assert est.method == "size"
    assert est.consistent is False
    # The prior assumes 1.5 m, so the object reads three times nearer than the ground says.
    assert est.contact_m[0] == pytest.approx(1.5 + (20.0 - 1.5) * 1.5 / 4.5, rel=0.1)


def test_contact_above_the_horizon_uses_the_size_prior() -> None:
    # A truck on a rise: its wheels stand 2 m above our ground plane, so the contact ray never
    # meets the ground. Its apparent height still gives its range.
    corners = np.array([[80.0, dy, 2.0 + z] for dy in (-1.25, 1.25) for z in (0.0, 3.2)])
    uv = FRONT.project(corners)
    box = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
    assert FRONT.pixel_to_ground(float(box[0] + box[2]) / 2, float(box[3])) is None
    est = estimate_range(box, CLASS_IDS["truck"], FRONT)
    assert est is not None
    assert est.method == "size"
    assert est.contact_m[0] == pytest.approx(80.0, rel=0.02)
    assert est.contact_m[1] == pytest.approx(0.0, abs=0.2)


def test_degenerate_box_gives_none() -> None:
    assert estimate_range(np.array([10, 10, 10, 50]), 1, FRONT) is None


@pytest.mark.parametrize(
    ("pos", "vel", "expected"),
    [
        ((20.0, 0.0), (-10.0, 0.0), 2.0),
        ((20.0, 0.0), (5.0, 0.0), None),
        ((20.0, 0.0), (0.0, 3.0), None),  # crossing: range not shrinking
        ((30.0, 40.0), (-3.0, -4.0), 10.0),
    ],
)
def test_time_to_collision(pos: tuple[float, float], vel: tuple[float, float],
                           expected: float | None) -> None:
    ttc = time_to_collision(pos, vel)
    if expected is None:
        assert ttc is None
    else:
        assert ttc == pytest.approx(expected)


def test_ego_filter_recovers_closing_speed_and_ttc() -> None:
    motion = EgoMotionFilter()
    result = None
    for k in range(30):
        t_s = k * 0.1
        x = 40.0 - 8.0 * t_s  # closing at 8 m/s
        box = box_of(FRONT, x, 0.5, 1.8, 1.5, depth=4.5)
        est = estimate_range(box, CLASS_IDS["car"], FRONT)
        assert est is not None
        result = motion.update(7, est, FRONT, int(t_s * 1e9))
    assert result is not None
    assert result.velocity_mps[0] == pytest.approx(-8.0, abs=0.3)
    assert result.range_rate_mps == pytest.approx(-8.0, abs=0.3)
    assert result.ttc_s is not None
    assert result.ttc_s == pytest.approx(result.range_m / 8.0, rel=0.05)


def test_ego_filter_sees_a_car_ahead_braking() -> None:
    # Euro NCAP CCRb seen from the ego at constant speed: the car 20 m ahead brakes at 4 m/s².
    motion = EgoMotionFilter()
    result = None
    for k in range(51):  # 1 s steady, then 1.5 s of braking
        t_s = k * 0.05
        brake_s = max(0.0, t_s - 1.0)
        x = 20.0 - 0.5 * 4.0 * brake_s * brake_s
        est = estimate_range(box_of(FRONT, x, 0.0, 1.8, 1.5, depth=4.5), CLASS_IDS["car"], FRONT)
        assert est is not None
        result = motion.update(3, est, FRONT, int(t_s * 1e9))
    assert result is not None
    assert result.accel_mps2 == pytest.approx((-4.0, 0.0), abs=1.0)
    assert result.velocity_mps[0] < -3.0  # closing (the constant-velocity estimate lags)


def test_ego_filter_reports_no_acceleration_it_cannot_resolve() -> None:
    # A car 65 m ahead at a steady gap, its box bottom jittering by a pixel: the range jumps by
    # metres, its second derivative is noise, and no braking is reported.
    rng = np.random.default_rng(4)
    motion = EgoMotionFilter()
    reported = []
    for k in range(100):
        box = box_of(FRONT, 65.0, 0.0, 1.8, 1.5, depth=4.5)
        box[3] += rng.normal(0.0, 1.0)
        est = estimate_range(box, CLASS_IDS["car"], FRONT)
        assert est is not None
        reported.append(motion.update(5, est, FRONT, int(k * 0.05e9)).accel_mps2[0])
    assert sum(a != 0.0 for a in reported[20:]) <= 4


def test_ego_filter_forgets_idle_tracks() -> None:
    motion = EgoMotionFilter()
    est = estimate_range(box_of(FRONT, 20.0, 0.0, 1.8, 1.5), 1, FRONT)
    assert est is not None
    motion.update(1, est, FRONT, 0)
    motion.prune(int(0.5e9))
    assert 1 in motion
    motion.prune(int(2e9))
    assert 1 not in motion


def clipped_box_of(calib: Calibration, centre: tuple[float, float], length: float,
                   width: float, height: float) -> np.ndarray:
    """Image box, clipped to the image, of an upright cuboid centred at ``centre`` (ego frame),
    from a dense sample of its surface (parts behind the camera or outside the image left out)."""
    xs = np.linspace(centre[0] - length / 2, centre[0] + length / 2, 90)
    ys = np.linspace(centre[1] - width / 2, centre[1] + width / 2, 40)
    zs = np.linspace(0.0, height, 30)
    faces = [np.array([[x, y, z] for y in ys for z in zs]) for x in (xs[0], xs[-1])]
    faces += [np.array([[x, y, z] for x in xs for z in zs]) for y in (ys[0], ys[-1])]
    uv = calib.project(np.concatenate(faces))
    inside = (np.isfinite(uv).all(axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] <= calib.width - 1)
              & (uv[:, 1] >= 0) & (uv[:, 1] <= calib.height - 1))
    uv = uv[inside]
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])


@pytest.mark.parametrize("centre_x", [6.0, 8.0])
@pytest.mark.parametrize("centre_y", [-3.75, 3.5])
def test_a_car_beside_cut_by_the_image_side_is_ranged_from_its_near_side(
        centre_x: float, centre_y: float) -> None:
    # A car in the next lane, mostly beside the camera: the bottom-centre contact point of its
    # cut box stays near the edge ray (x ≈ 8-9 m whatever its place) and lands 0.3-0.8 m
    # towards the ego; its near side and front corner give both right.
    box = clipped_box_of(FRONT, (centre_x, centre_y), 4.5, 1.8, 1.5)
    assert box[0] <= 2.0 or box[2] >= FRONT.width - 2.0  # the image cuts it
    est = estimate_range(box, CLASS_IDS["car"], FRONT)
    assert est is not None
    assert est.method == "side"
    assert est.position_m[0] == pytest.approx(centre_x, abs=0.3)
    assert est.position_m[1] == pytest.approx(centre_y, abs=0.1)


def test_a_car_ahead_barely_cut_by_the_image_side_is_ranged_from_its_rear_corner() -> None:
    # Cut only at its far corner: the box bottom is its near rear corner, not a point of its
    # near side where the image cuts it (read that way, it would come out metres farther).
    box = clipped_box_of(FRONT, (14.0, -4.5), 4.5, 1.8, 1.5)
    assert box[2] >= FRONT.width - 2.0
    est = estimate_range(box, CLASS_IDS["car"], FRONT)
    assert est is not None
    assert est.method == "side"
    assert est.position_m[:2] == pytest.approx((14.0, -4.5), abs=0.15)


def test_a_car_nearing_the_image_side_moves_smoothly_from_ground_to_side_ranging() -> None:
    # The ground and side estimates of a car ahead in the next lane differ by a few tenths of
    # a metre across; as its box nears the side (100 px to 0 px, 2 px a step) the estimate
    # moves from one to the other without a jump (a jump reads as sideways motion): its
    # offset from the ground estimate of the same box grows by at most 3 cm a step.
    whole = box_of(FRONT, 16.0, -3.6, 1.8, 1.5, depth=4.5)
    offsets, methods = [], []
    for gap_px in np.arange(100.0, -1.0, -2.0):
        box = whole + np.array([1.0, 0.0, 1.0, 0.0]) * (FRONT.width - gap_px - whole[2])
        est = estimate_range(box, CLASS_IDS["car"], FRONT)
        ground = estimate_range(box, CLASS_IDS["car"], FRONT, side_band_px=0.0)
        assert est is not None
        assert ground is not None
        assert ground.method == "ground"
        offsets.append(est.position_m[1] - ground.position_m[1])
        methods.append(est.method)
    assert methods[0] == "ground"
    assert methods[-1] == "side"
    assert abs(offsets[-1]) > 0.1  # the two differ here
    assert np.abs(np.diff(offsets)).max() < 0.03


def test_a_small_box_too_tall_for_its_class_keeps_its_ground_range() -> None:
    # A 100° camera sees a car 45 m ahead 11 px tall; the detector's box came out twice as
    # tall. Its contact point is right; the size prior would put the car 21 m ahead.
    wide = Calibration(fx=268.5, fy=268.5, cx=320.0, cy=180.0, width=640, height=360,
                       mount_x_m=1.9, mount_z_m=1.35, pitch_rad=0.03)
    box = box_of(wide, 45.0, 0.0, 1.8, 1.5, depth=4.5)
    box[1] -= box[3] - box[1]  # twice as tall, from the top
    est = estimate_range(box, CLASS_IDS["car"], wide)
    assert est is not None
    assert est.method == "ground"
    assert est.consistent is False
    assert est.position_m[0] == pytest.approx(45.0 + 2.25, rel=0.05)
    big = estimate_range(box, CLASS_IDS["car"], wide, min_size_px=0.0)
    assert big is not None
    assert big.method == "size"  # what it was
    assert big.position_m[0] < 35.0
