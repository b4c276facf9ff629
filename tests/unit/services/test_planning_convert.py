"""Wire contract → planner types: relative motion from perception becomes motion over ground."""

from __future__ import annotations

import pytest

from services.messages import DetectedObject, ObjectClass, Vec2, Vec3
from services.messages.examples import perception_objects, vehicle_state
from services.planning import convert


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
    o = convert.obstacle(car(x, y, vx=-14.0 + omega * y, vy=-omega * x), state)
    assert o is not None
    assert (o.vx_mps, o.vy_mps) == pytest.approx((0.0, 0.0), abs=1e-9)


def test_acceleration_adds_the_egos_own() -> None:
    # Both braking at 2 m/s²: no relative acceleration, the lead still brakes over ground.
    state = vehicle_state().model_copy(update={"accel_mps2": -2.0})
    o = convert.obstacle(car(20.0, 0.0, vx=0.0, vy=0.0, ax=0.0), state)
    assert o is not None
    assert o.ax_mps2 == pytest.approx(-2.0)
    assert o.vx_mps == pytest.approx(state.speed_mps)
    unknown = convert.obstacle(car(20.0, 0.0, vx=0.0, vy=0.0), state)
    assert unknown is not None
    assert unknown.ax_mps2 == 0.0


def test_unranged_objects_are_left_out() -> None:
    result = perception_objects()
    unranged = result.objects[0].model_copy(update={"position_m": None})
    mixed = result.model_copy(update={"objects": [result.objects[0], unranged]})
    assert len(convert.obstacles([mixed], vehicle_state())) == 1


def test_closest_in_path_gives_the_nearest_object_ahead_and_its_speed_over_ground() -> None:
    state = vehicle_state().model_copy(update={"speed_mps": 20.0, "yaw_rate_radps": 0.0})
    lead = convert.obstacle(car(35.0, 0.4, vx=-5.0, vy=0.0), state)  # 15 m/s over ground
    far = convert.obstacle(car(60.0, 0.0, vx=0.0, vy=0.0), state)
    beside = convert.obstacle(car(10.0, 3.5, vx=0.0, vy=0.0), state)  # the next lane
    behind = convert.obstacle(car(-8.0, 0.0, vx=0.0, vy=0.0), state)
    found = [o for o in (lead, far, beside, behind) if o is not None]
    assert convert.closest_in_path(found) == pytest.approx((35.0, 15.0))
    assert convert.closest_in_path([o for o in found if o is not lead]) == pytest.approx((60.0, 20.0))
    assert convert.closest_in_path([]) is None
