"""Open loop collides in CCRs; a trivial braking controller in closed loop avoids it."""

from __future__ import annotations

import pytest

from common.control import ControlCommand
from simulators.library import load_scenario
from simulators.world import World


def test_open_loop_ccrs_collides_at_full_speed() -> None:
    sc = load_scenario("ccrs_30kph")
    world = World.from_scenario(sc)
    while not world.done:
        world.step(0.05)
    m = world.metrics.summary()
    assert m["collision"] is True
    assert m["collision_actor"] == "target"
    assert m["impact_speed_mps"] == pytest.approx(30 / 3.6, rel=0.01)
    assert m["min_distance_m"] == 0.0
    assert m["progress"] < 1.0
    assert world.collisions[0].actor_class == "car"


def test_braking_controller_avoids_the_collision() -> None:
    sc = load_scenario("ccrs_30kph")
    world = World.from_scenario(sc)
    target = world.actors[0]
    while not world.done:
        ego = world.ego_state()
        gap = target.s_m - target.appearance.length_m / 2 - (ego.s_m + world.front_overhang_m)
        # brake when the distance left, less a margin, is what a 5 m/s² stop needs
        brake = ego.speed_mps**2 / (2 * max(gap - 2.0, 0.1)) > 5.0 or ego.speed_mps < 0.5
        cmd = ControlCommand(steering_tire_angle_rad=0.0, accel_mps2=-6.0 if brake else 0.0,
                             target_speed_mps=0.0 if brake else ego.speed_mps)
        world.step(0.05, cmd)
    m = world.metrics.summary()
    assert m["collision"] is False
    assert world.ego_state().speed_mps == 0.0
    assert 0.5 < m["min_distance_m"] < 4.0
    assert 4.0 < m["max_decel_mps2"] <= 6.0 + 1e-6
    assert m["max_jerk_mps3"] > 8.37  # 0 to -6 m/s² at once: a jolt past nuPlan's comfort bound
    assert m["min_ttc_s"] is not None
    assert m["min_ttc_s"] > 0.5
    assert world.t_s == pytest.approx(sc.duration_s)


def test_metrics_progress_and_lateral_deviation_on_a_free_run() -> None:
    world = World.from_scenario(load_scenario("curved_road"))
    while not world.done:
        world.step(0.05)
    m = world.metrics.summary()
    assert m["collision"] is False
    assert m["progress"] == pytest.approx(1.0, abs=0.01)
    assert m["max_lateral_deviation_m"] < 0.3  # the route driver keeps its lane on the bends
    assert m["max_jerk_mps3"] < 4.13  # nuPlan's comfort bound on longitudinal jerk
    assert m["min_ttc_s"] is None or m["min_ttc_s"] > 5.0
