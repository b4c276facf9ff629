"""Painter's order and ground-truth occlusion: a near object hides a far one."""

from __future__ import annotations

import numpy as np

from simulators.render import RenderOptions
from simulators.world import World
from tests.unit.simulators.scenario_helpers import make_scenario

CLEAN = RenderOptions(noise=False, motion_blur=False, weather=False, glow=False, shadows=False)
RED, BLUE = (40, 38, 190), (170, 90, 30)  # BGR of the palette's red and blue


def scene(with_near: bool) -> World:
    actors = [{"id": "far", "class": "car", "s_m": 45, "lane": 0,
               "appearance": {"body": "sedan", "colour": "blue"}}]
    if with_near:
        actors.append({"id": "near", "class": "car", "s_m": 18, "lane": 0,
                       "appearance": {"body": "van", "colour": "red"}})
    sc = make_scenario(actors=actors, ego={"lane": 0, "speed_kph": 0})
    return World.from_scenario(sc)


def test_near_object_lowers_the_far_objects_visible_fraction() -> None:
    alone = {o.actor_id: o for o in scene(False).ground_truth("front").objects}
    both = {o.actor_id: o for o in scene(True).ground_truth("front").objects}
    assert alone["far"].visible_fraction > 0.95
    assert both["near"].visible_fraction > 0.95
    assert both["far"].occlusion > 0.3
    assert both["far"].visible_fraction < alone["far"].visible_fraction - 0.3


def test_near_object_is_drawn_on_top() -> None:
    world = scene(True)
    img = world.render("front", CLEAN)
    far = next(o for o in world.ground_truth("front").objects if o.actor_id == "far")
    cam = world.cameras["front"]
    # a point on the sedan's rear body between plate and lamps (0.3 m right of its centre
    # line, 0.75 m up); the van 18 m ahead stands in front of it
    x_rear = far.position_m[0] - far.size_m[0] / 2
    u, v = cam.project(cam.ego_to_cam(np.array([[x_rear, -0.3, 0.75]])))[0]
    pixel = img[int(v), int(u)].astype(float)
    assert pixel[2] > pixel[0] + 40, pixel  # red paint of the van
    alone = scene(False).render("front", CLEAN)[int(v), int(u)].astype(float)
    assert alone[0] > alone[2] + 40, alone  # without the van, the blue sedan shows there


def test_truncation_at_the_image_border() -> None:
    actors = [{"id": "side", "class": "car", "s_m": 9, "lane": 1}]
    world = World.from_scenario(make_scenario(actors=actors, ego={"lane": 0, "speed_kph": 0}))
    obj = world.ground_truth("front").objects[0]
    assert obj.truncation > 0.1
    assert obj.box[0] >= 0
    assert obj.box[2] <= 640
    assert obj.visible_fraction == np.round((1 - obj.truncation) * (1 - obj.occlusion), 4)
