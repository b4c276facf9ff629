"""Scripted behaviours and their triggers."""

from __future__ import annotations

import pytest

from simulators.world import World
from tests.unit.simulators.scenario_helpers import make_scenario


def run(world: World, until_s: float) -> None:
    while world.t_s < until_s - 1e-9:
        world.step(0.05)


def test_brake_on_time_trigger_then_follow_lane() -> None:
    actors = [{"id": "lead", "class": "car", "s_m": 60, "lane": 1, "speed_kph": 36,
               "behaviours": [{"type": "brake", "decel_mps2": 5, "trigger": {"time_s": 1.0}},
                              {"type": "follow_lane", "speed_kph": 18, "accel_mps2": 1,
                               "trigger": {"time_s": 4.0}}]}]
    world = World.from_scenario(make_scenario(actors=actors))
    lead = world.actors[0]
    run(world, 1.0)
    assert lead.speed_mps == pytest.approx(10.0)
    run(world, 1.5)
    assert lead.speed_mps == pytest.approx(7.5, abs=0.06)
    assert lead.brake_lights
    run(world, 3.5)
    assert lead.speed_mps == 0.0
    assert lead.brake_lights
    run(world, 9.5)
    assert lead.speed_mps == pytest.approx(5.0)
    assert not lead.brake_lights


def test_cut_in_moves_to_the_target_lane_centre_in_its_duration() -> None:
    actors = [{"id": "cutter", "class": "car", "s_m": 30, "lane": 1, "speed_kph": 36,
               "behaviours": [{"type": "follow_lane", "speed_kph": 36},
                              {"type": "cut_in", "target_lane": 0, "duration_s": 2.0,
                               "trigger": {"time_s": 1.0}}]}]
    world = World.from_scenario(make_scenario(actors=actors))
    cutter = world.actors[0]
    run(world, 2.0)
    assert cutter.d_m == pytest.approx(0.0, abs=0.05)  # half-way between the lane centres
    assert cutter.indicator == -1
    run(world, 3.05)
    assert cutter.d_m == pytest.approx(world.road.lane_d(0))
    assert cutter.indicator == 0


def test_pedestrian_crosses_when_the_ego_comes_within_the_distance() -> None:
    actors = [{"id": "walker", "class": "pedestrian", "s_m": 50, "d_m": -5.0,
               "behaviours": [{"type": "cross", "speed_kph": 5.4, "direction": "left",
                               "distance_m": 4.0, "trigger": {"distance_m": 30}}]}]
    world = World.from_scenario(make_scenario(actors=actors))
    walker = world.actors[0]
    # ego front starts at 3.6 m and drives 10 m/s: within 30 m of (50, -5) after ~1.67 s
    run(world, 1.6)
    assert walker.d_m == -5.0
    run(world, 8.0)
    assert walker.d_m == pytest.approx(-1.0, abs=1e-3)
    assert walker.lat_speed_mps == 0.0
    assert walker.pose()[2] == pytest.approx(1.5708, abs=1e-3)  # faced the way it walked


def test_ttc_trigger_times_the_crossing() -> None:
    actors = [{"id": "walker", "class": "pedestrian", "s_m": 60, "d_m": -5.0,
               "behaviours": [{"type": "cross", "speed_kph": 5, "direction": "left",
                               "distance_m": 8, "trigger": {"ttc_s": 2.0}}]}]
    world = World.from_scenario(make_scenario(actors=actors))
    walker = world.actors[0]
    # the ego front (3.6 m at 10 m/s) is 2 s from station 60 at t = 3.64 s
    run(world, 3.6)
    assert walker.lat_speed_mps == 0.0
    run(world, 3.75)
    assert walker.lat_speed_mps > 0.0


def test_due_cameras_follow_each_cameras_rate() -> None:
    cams = [{"id": "front", "hfov_deg": 60, "rate_hz": 20},
            {"id": "wide", "hfov_deg": 100, "rate_hz": 10}]
    world = World.from_scenario(make_scenario(cameras=cams))
    counts = {"front": 0, "wide": 0}
    for cam_id in world.due_cameras():
        counts[cam_id] += 1
    for _ in range(40):  # 2 s in 50 ms steps
        world.step(0.05)
        for cam_id in world.due_cameras():
            counts[cam_id] += 1
    assert counts == {"front": 41, "wide": 21}
