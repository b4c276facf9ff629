"""Obstacle prediction for road users crossing the ego's path."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from common.classes import ObjectClass
from planning.config import PlannerConfig
from planning.frames import lane_centre_point, previewed_frenet, road_xy_to_frenet
from planning.obstacles import ObstacleTensors, predict_obstacles
from planning.types import EgoState, Obstacle, VehicleParams
from tests.unit.planning.curves import CURVE_START_M, PREVIEW, RADIUS_M, on_curve

CONFIG = PlannerConfig()
T = torch.arange(0.0, 5.01, 0.5, dtype=torch.float64)


def predict(*objects: Obstacle, config: PlannerConfig = CONFIG) -> ObstacleTensors:
    return predict_obstacles(list(objects), EgoState(speed_mps=11.0), T, config, VehicleParams())


def walker(vx: float, vy: float, cls: ObjectClass = ObjectClass.PEDESTRIAN) -> Obstacle:
    return Obstacle(x_m=30.0, y_m=-4.0, vx_mps=vx, vy_mps=vy, object_class=cls)


def test_a_pedestrian_seen_starting_to_cross_is_predicted_at_walking_pace() -> None:
    starting = predict(walker(0.0, 0.6))
    assert float(starting.vd_mps[0]) == CONFIG.crossing_speed_mps[ObjectClass.PEDESTRIAN]
    standing = predict(walker(0.0, 0.3))  # tracker noise of a pedestrian standing still
    assert float(standing.vd_mps[0]) == 0.3
    running = predict(walker(0.0, 3.0))
    assert float(running.vd_mps[0]) == 3.0  # faster than the pace: its own speed


def test_a_crossing_road_user_claims_the_strip_ahead_of_it() -> None:
    plain = replace(CONFIG, crossing_margin_s=0.0)
    lead = 1.5 * CONFIG.crossing_margin_s  # what it walks in the margin
    for cls, claimed in ((ObjectClass.PEDESTRIAN, lead), (ObjectClass.CYCLIST, lead),
                         (ObjectClass.CAR, 0.0)):
        with_margin, without = predict(walker(0.0, 1.5, cls)), predict(walker(0.0, 1.5, cls),
                                                                       config=plain)
        # Stretched ahead of it (to the left, where it walks), not behind it.
        assert torch.allclose(with_margin.left_m - without.left_m,
                              torch.full_like(without.left_m, claimed)), cls
        assert torch.equal(with_margin.right_m, without.right_m), cls
    cyclist = predict(walker(0.0, 1.5, ObjectClass.CYCLIST))
    assert float(cyclist.vd_mps[0]) == 1.5  # the margin, but no walking pace for cyclists


def test_a_pedestrian_is_never_predicted_to_walk_away_along_the_road() -> None:
    away = predict(walker(2.5, 0.0))
    assert float(away.vs_mps[0]) == 0.0
    assert float(away.s_end_m[0]) == float(away.s0_m[0])
    towards = predict(walker(-1.0, 0.0))
    assert float(towards.vs_mps[0]) < -0.9  # towards the ego: kept
    lead = predict(walker(2.5, 0.0, ObjectClass.CAR))
    assert float(lead.vs_mps[0]) > 2.4  # a car moving away is a car moving away


def test_previewed_frenet_follows_a_curve_that_begins_ahead() -> None:
    points = [(s, d) for s in (-20.0, 0.0, 25.0, 60.0, 80.0, 140.0) for d in (-3.5, 0.0, 3.5)]
    xy = [on_curve(s, d) for s, d in points]
    x = torch.tensor([p[0] for p in xy], dtype=torch.float64)
    y = torch.tensor([p[1] for p in xy], dtype=torch.float64)
    s, d, heading, kappa = previewed_frenet(x, y, 0.0, PREVIEW, 5.0)
    for i, (s_true, d_true) in enumerate(points):
        assert float(s[i]) == pytest.approx(s_true, abs=0.05), points[i]
        assert float(d[i]) == pytest.approx(d_true, abs=0.02), points[i]
        assert float(heading[i]) == pytest.approx(xy[i][2], abs=1e-3), points[i]
    assert float(kappa[-1]) == pytest.approx(1.0 / RADIUS_M)
    # Without a preview the same points are read against a straight line: 80 m ahead the
    # right-hand lane's centre seems 1.5 m from the ego's line, not 3.5 m.
    _, d_straight, _, _ = previewed_frenet(x, y, 0.0, (), 5.0)
    assert float(d_straight[12]) == pytest.approx(-3.5 + (80 - CURVE_START_M) ** 2 / (2 * RADIUS_M),
                                                  abs=0.05)
    # A constant preview gives the closed-form circle.
    s_c, d_c, _, _ = previewed_frenet(x, y, 1.0 / RADIUS_M, (1.0 / RADIUS_M,) * 40, 5.0)
    s_ref, d_ref = road_xy_to_frenet(x, y, 1.0 / RADIUS_M)
    assert torch.allclose(s_c, s_ref, atol=0.02)
    assert torch.allclose(d_c, d_ref, atol=0.01)


def test_a_car_in_the_next_lane_of_a_curve_ahead_is_not_predicted_to_cut_in() -> None:
    x, y, phi = on_curve(80.0, -3.5)
    truck = Obstacle(x_m=x, y_m=y, vx_mps=22.0 * math.cos(phi), vy_mps=22.0 * math.sin(phi),
                     object_class=ObjectClass.TRUCK)
    ego = EgoState(speed_mps=27.8, lane_index=1, n_lanes=2, speed_limit_mps=27.8)
    previewed = predict_obstacles([truck], replace(ego, curvature_preview_1pm=PREVIEW,
                                                   preview_step_m=5.0), T, CONFIG, VehicleParams())
    assert float(previewed.d0_m[0]) == pytest.approx(-3.5, abs=0.05)
    assert abs(float(previewed.vd_mps[0])) < 0.05
    assert float(previewed.left_m[0, -1]) < -1.0  # it stays clear of the ego's lane
    # Without the preview the truck following the curve seems to drift towards the ego.
    straight = predict_obstacles([truck], ego, T, CONFIG, VehicleParams())
    assert float(straight.vd_mps[0]) > 0.8


def test_lane_centre_point_follows_the_previewed_curve() -> None:
    ego = EgoState(speed_mps=27.8, lane_index=1, n_lanes=2, lane_width_m=3.5,
                   curvature_preview_1pm=PREVIEW, preview_step_m=5.0)
    # A car in the right lane 80 m ahead, half a metre off its centre towards the ego.
    x, y, _ = on_curve(80.0, -3.0)
    centre = on_curve(80.0, -3.5)
    assert lane_centre_point(x, y, ego) == pytest.approx(centre, abs=0.03)
    # Beyond the road's right edge (lane -1): left where it is.
    x, y, phi = on_curve(80.0, -7.2)
    assert lane_centre_point(x, y, ego) == pytest.approx((x, y, phi), abs=1e-3)
