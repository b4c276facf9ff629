"""Fusion: relative motion from perception becomes motion over the ground.

The inputs are built as the wire messages a vehicle sends and converted as the planning
service converts them (services/planning/convert.py), so these also cover the conversion.
"""

from __future__ import annotations

import math

import pytest

from common.classes import ObjectClass as PlannerClass
from planning import fusion
from planning.ground_motion import Coasted, GroundMotion
from planning.types import Obstacle
from services.messages import (
    DetectedObject,
    FrameRef,
    ObjectClass,
    PerceptionObjects,
    Pose2D,
    Vec2,
    Vec3,
    VehicleState,
)
from services.messages.examples import perception_objects, vehicle_state
from services.planning import convert


def obstacle(obj: DetectedObject, state: VehicleState) -> Obstacle | None:
    return fusion.obstacle(convert.seen_object(obj), convert.vehicle_input(state))


def obstacles(results: list[PerceptionObjects], state: VehicleState,
              motion: GroundMotion | None = None,
              states: dict[int, VehicleState] | None = None) -> list[Obstacle]:
    inputs = None if states is None else {k: convert.vehicle_input(v) for k, v in states.items()}
    return fusion.obstacles([convert.camera_objects(r) for r in results],
                            convert.vehicle_input(state), motion, inputs)


def car(x: float, y: float, vx: float, vy: float, ax: float | None = None) -> DetectedObject:
    return DetectedObject(track_id=1, object_class=ObjectClass.CAR, score=0.9,
                          box=(0.0, 0.0, 10.0, 10.0), position_m=Vec3(x=x, y=y, z=0.75),
                          velocity_mps=Vec2(x=vx, y=vy),
                          accel_mps2=None if ax is None else Vec2(x=ax, y=0.0))


def test_a_parked_car_stands_still_while_the_ego_turns() -> None:
    # Ego at 14 m/s turning left at 0.1 rad/s: a parked car 40 m ahead, 1 m left, seems to
    # move back at 14 m/s and to the right at 4 m/s (and forward by ω·y) in the ego frame.
    state = vehicle_state().model_copy(update={"speed_mps": 14.0, "yaw_rate_radps": 0.1})
    omega, x, y = 0.1, 40.0, 1.0
    o = obstacle(car(x, y, vx=-14.0 + omega * y, vy=-omega * x), state)
    assert o is not None
    assert (o.vx_mps, o.vy_mps) == pytest.approx((0.0, 0.0), abs=1e-9)


def test_a_resolved_acceleration_adds_the_egos_own_an_unresolved_one_is_none() -> None:
    # The ego brakes at 2 m/s², the lead's relative acceleration resolved at -1: it brakes at 3.
    state = vehicle_state().model_copy(update={"accel_mps2": -2.0})
    o = obstacle(car(20.0, 0.0, vx=0.0, vy=0.0, ax=-1.0), state)
    assert o is not None
    assert o.ax_mps2 == pytest.approx(-3.0)
    assert o.vx_mps == pytest.approx(state.speed_mps)
    # Perception's 0 is "not resolved": not the ego's braking (or every car ahead would brake
    # whenever the ego does, and the ego brake harder for it).
    for ax in (0.0, None):
        unknown = obstacle(car(20.0, 0.0, vx=0.0, vy=0.0, ax=ax), state)
        assert unknown is not None
        assert unknown.ax_mps2 == 0.0


def _drive(lead_accel_mps2: float, ego_accel_mps2: float) -> list[float]:
    """Lead and ego from 14 m/s, the lead 20 m ahead, each braking at its rate (ego from
    0.5 s); perception's relative acceleration unresolved (0) throughout. The lead's ax."""
    motion = GroundMotion()
    state = vehicle_state()
    seen = []
    ego_x = lead_x = 0.0
    ego_v = lead_v = 14.0
    lead_x = 20.0
    for k in range(60):  # 3 s at 20 Hz
        t_s = 0.05 * k
        ego_a = ego_accel_mps2 if t_s >= 0.5 else 0.0
        stamp = state.stamp_ns + k * 50_000_000
        s = state.model_copy(update={
            "accel_mps2": ego_a, "speed_mps": ego_v, "stamp_ns": stamp, "yaw_rate_radps": 0.0,
            "pose": Pose2D(x_m=ego_x, y_m=0.0, yaw_rad=0.0)})
        result = perception_objects().model_copy(update={
            "objects": [car(lead_x - ego_x, 0.0, vx=lead_v - ego_v, vy=0.0, ax=0.0)],
            "source": FrameRef(seq=k, stamp_ns=stamp)})
        (o,) = obstacles([result], s, motion, {stamp: s})
        seen.append(o.ax_mps2)
        ego_x, ego_v = ego_x + ego_v * 0.05, max(0.0, ego_v + ego_a * 0.05)
        lead_x, lead_v = lead_x + lead_v * 0.05, max(0.0, lead_v + lead_accel_mps2 * 0.05)
    return seen


def test_a_car_ahead_does_not_seem_to_brake_because_the_ego_brakes() -> None:
    # Perception cannot resolve the relative acceleration (it reads 0). The lead keeps its
    # speed while the ego brakes at 3 m/s²: it must not seem to brake with the ego.
    assert max(abs(a) for a in _drive(0.0, -3.0)[20:]) < 0.5


def test_a_lead_braking_in_step_with_the_ego_is_seen_braking() -> None:
    # Both brake at 2 m/s²: nothing relative to resolve, the world-frame filter sees it.
    assert _drive(-2.0, -2.0)[-1] == pytest.approx(-2.0, abs=0.5)


def test_unranged_objects_are_left_out() -> None:
    result = perception_objects()
    unranged = result.objects[0].model_copy(update={"position_m": None})
    mixed = result.model_copy(update={"objects": [result.objects[0], unranged]})
    assert len(obstacles([mixed], vehicle_state())) == 1


def test_closest_in_path_gives_the_nearest_object_ahead_and_its_speed_over_ground() -> None:
    state = vehicle_state().model_copy(update={"speed_mps": 20.0, "yaw_rate_radps": 0.0})
    lead = obstacle(car(35.0, 0.4, vx=-5.0, vy=0.0), state)  # 15 m/s over ground
    far = obstacle(car(60.0, 0.0, vx=0.0, vy=0.0), state)
    beside = obstacle(car(10.0, 3.5, vx=0.0, vy=0.0), state)  # the next lane
    behind = obstacle(car(-8.0, 0.0, vx=0.0, vy=0.0), state)
    found = [o for o in (lead, far, beside, behind) if o is not None]
    assert fusion.closest_in_path(found) == pytest.approx((35.0, 15.0))
    assert fusion.closest_in_path([o for o in found if o is not lead]) == pytest.approx((60.0, 20.0))
    assert fusion.closest_in_path([]) is None


def test_with_world_filters_a_lagging_relative_velocity_does_not_slide_a_parked_car() -> None:
    # The ego (14 m/s) starts turning at 0.1 rad/s; perception's relative velocity has not
    # caught up yet (still "straight ahead"). Adding ω × r at once makes the parked car 40 m
    # ahead slide sideways at 4 m/s; its world-frame filter, fed the ego pose of each frame,
    # keeps it parked.
    motion = GroundMotion()
    x = y = yaw = 0.0
    base = vehicle_state()
    for i in range(30):
        stamp = base.stamp_ns + i * 50_000_000
        state = base.model_copy(update={
            "stamp_ns": stamp, "speed_mps": 14.0, "yaw_rate_radps": 0.1 if i >= 10 else 0.0,
            "pose": Pose2D(x_m=x, y_m=y, yaw_rad=yaw)})
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dy = 60.0 - x, 1.0 - y  # the car, parked at (60, 1) in the world
        seen = car(c * dx + s * dy, -s * dx + c * dy, vx=-14.0, vy=0.0)
        result = perception_objects().model_copy(update={
            "objects": [seen], "source": FrameRef(seq=i, stamp_ns=stamp)})
        naive = obstacles([result], state)[0]
        filtered = obstacles([result], state, motion, {stamp: state})[0]
        x, y = x + 14.0 * c / 20, y + 14.0 * s / 20
        yaw += state.yaw_rate_radps / 20
    assert naive.vy_mps > 3.0  # ω·x with x ≈ 40 m
    assert abs(filtered.vy_mps) < 0.3
    assert filtered.vx_mps == naive.vx_mps  # along the road a car keeps perception's estimate


def test_a_track_missing_from_the_result_is_planned_with_while_it_coasts() -> None:
    motion = GroundMotion()
    base = vehicle_state().model_copy(update={"speed_mps": 0.0, "yaw_rate_radps": 0.0,
                                              "pose": Pose2D(x_m=0.0, y_m=0.0, yaw_rad=0.0)})
    beside = car(6.0, -3.5, vx=0.0, vy=0.0)
    for i in range(8):
        stamp = base.stamp_ns + i * 50_000_000
        result = perception_objects().model_copy(update={
            "objects": [beside], "source": FrameRef(seq=i, stamp_ns=stamp)})
        state = base.model_copy(update={"stamp_ns": stamp})
        assert len(obstacles([result], state, motion, {stamp: state})) == 1
    stamp += 500_000_000
    empty = perception_objects().model_copy(update={
        "objects": [], "source": FrameRef(seq=99, stamp_ns=stamp)})
    state = base.model_copy(update={"stamp_ns": stamp})
    (ghost,) = obstacles([empty], state, motion, {stamp: state})
    assert (ghost.x_m, ghost.y_m) == pytest.approx((6.0, -3.5), abs=0.2)
    assert obstacles([empty], state) == []  # without the filters: forgotten


@pytest.mark.parametrize(("lane_index", "seen_y_m", "coasted_y_m"), [
    (1, -2.9, -3.55),  # ranged 0.65 m towards the ego: back on its lane's centre (-3.5 - 0.05)
    (1, 3.0, 3.0),  # to the left of the leftmost lane: not on a lane, left where it was
    (0, -2.9, -2.9),  # to the right of the rightmost lane (the shoulder): the same
])
def test_a_coasted_car_is_placed_on_its_lane_centre(lane_index: int, seen_y_m: float,
                                                    coasted_y_m: float) -> None:
    motion = GroundMotion()
    example = vehicle_state()
    assert example.lane is not None
    base = example.model_copy(update={
        "speed_mps": 0.0, "yaw_rate_radps": 0.0, "pose": Pose2D(x_m=0.0, y_m=0.0, yaw_rad=0.0),
        "lane": example.lane.model_copy(update={"lane_index": lane_index})})
    beside = car(6.0, seen_y_m, vx=0.0, vy=0.0)
    for i in range(8):
        stamp = base.stamp_ns + i * 50_000_000
        result = perception_objects().model_copy(update={
            "objects": [beside], "source": FrameRef(seq=i, stamp_ns=stamp)})
        state = base.model_copy(update={"stamp_ns": stamp})
        (seen,) = obstacles([result], state, motion, {stamp: state})
        assert seen.y_m == pytest.approx(seen_y_m)  # a car in view is where perception says
    stamp += 500_000_000
    empty = perception_objects().model_copy(update={
        "objects": [], "source": FrameRef(seq=99, stamp_ns=stamp)})
    state = base.model_copy(update={"stamp_ns": stamp})
    (ghost,) = obstacles([empty], state, motion, {stamp: state})
    assert (ghost.x_m, ghost.y_m) == pytest.approx((6.0, coasted_y_m), abs=0.05)


def test_a_coasted_car_moves_along_its_lane_not_along_the_egos_old_heading() -> None:
    # Last seen while the ego was changing lanes, 0.03 rad to the left of its lane: dead-
    # reckoned along that heading, the car beside would drift into the ego's lane.
    example = vehicle_state()
    assert example.lane is not None
    state = example.model_copy(update={
        "pose": Pose2D(x_m=0.0, y_m=0.0, yaw_rad=0.03),
        "lane": example.lane.model_copy(update={"lane_index": 1, "heading_rel_rad": 0.03,
                                                 "lateral_offset_m": 0.0})})
    ghost = Coasted(("front", 1), PlannerClass.CAR, (5.0, -3.35),
                    (25.0 * math.cos(0.03), 25.0 * math.sin(0.03)), keeps_lane=True)
    (obstacle,) = fusion.coasted([ghost], convert.vehicle_input(state))
    # In the ego's axes the lane runs 0.03 rad to the right: so does the car.
    assert math.atan2(obstacle.vy_mps, obstacle.vx_mps) == pytest.approx(-0.03, abs=1e-3)
    assert math.hypot(obstacle.vx_mps, obstacle.vy_mps) == pytest.approx(25.0, abs=0.05)
