"""Ground-truth geometry: positions and velocities in the ego frame, boxes, serialisation."""

from __future__ import annotations

import json

import pytest

from common.control import ControlCommand
from simulators.world import World
from tests.unit.simulators.scenario_helpers import make_scenario


def test_position_velocity_and_box_of_a_car_ahead() -> None:
    actors = [{"id": "lead", "class": "car", "s_m": 30, "lane": 0, "speed_kph": 18,
               "behaviours": [{"type": "follow_lane", "speed_kph": 18}]}]
    world = World.from_scenario(make_scenario(actors=actors))  # ego 10 m/s, lead 5 m/s
    world.step(0.5)
    gt = world.ground_truth("front")
    obj = gt.objects[0]
    # lead centre at 32.5 m, ego rear axle at 5 m: 27.5 m ahead, on the lane centre
    assert obj.position_m[0] == pytest.approx(27.5, abs=1e-6)
    assert obj.position_m[1] == pytest.approx(0.0, abs=1e-6)
    assert obj.velocity_mps == pytest.approx((-5.0, 0.0), abs=1e-6)
    assert obj.ground_velocity_mps == pytest.approx((5.0, 0.0), abs=1e-6)
    assert obj.track_id == 1
    assert obj.class_id == 1
    assert obj.object_class == "car"
    x1, _y1, x2, _y2 = obj.box
    assert x1 < 320 < x2  # straight ahead: the box spans the image centre column
    d = gt.to_dict()
    json.dumps(d)
    assert d["objects"][0]["class"] == "car"
    assert d["objects"][0]["position_m"]["x"] == pytest.approx(27.5)
    assert d["ego_pose"]["x_m"] == pytest.approx(5.0)


def test_velocity_accounts_for_the_ego_turning() -> None:
    actors = [{"id": "still", "class": "parked_car", "s_m": 40, "lane": 0}]
    world = World.from_scenario(make_scenario(actors=actors))
    for _ in range(10):
        world.step(0.05, ControlCommand(steering_tire_angle_rad=0.05, accel_mps2=0.0))
    ego = world.ego_state()
    obj = world.ground_truth("front").objects[0]
    px, py, _ = obj.position_m
    # a standing object seen from a turning ego moves by -(v + ω × r) in the ego frame
    assert obj.velocity_mps[0] == pytest.approx(-ego.speed_mps + ego.yaw_rate_radps * py, rel=1e-6)
    assert obj.velocity_mps[1] == pytest.approx(-ego.yaw_rate_radps * px, rel=1e-6)
    assert obj.object_class == "car"  # a parked car is reported as a car


def test_objects_behind_the_camera_are_not_reported() -> None:
    actors = [{"id": "behind", "class": "car", "s_m": 30, "lane": 0},
              {"id": "ahead", "class": "truck", "s_m": 80, "lane": 1}]
    sc = make_scenario(actors=actors, ego={"lane": 0, "s_m": 60, "speed_kph": 0})
    ids = [o.actor_id for o in World.from_scenario(sc).ground_truth("front").objects]
    assert ids == ["ahead"]
