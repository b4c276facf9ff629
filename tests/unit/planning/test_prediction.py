"""Obstacle prediction for road users crossing the ego's path."""

from __future__ import annotations

from dataclasses import replace

import torch

from planning.config import PlannerConfig
from planning.obstacles import ObstacleTensors, predict_obstacles
from planning.types import EgoState, ObjectClass, Obstacle, VehicleParams

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
