"""World-frame filters: the ego's own motion is taken out; an object's own motion is kept."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from planning.ground_motion import GroundMotion
from planning.types import ObjectClass


def seen_from(pose: tuple[float, float, float], world: tuple[float, float]) -> tuple[float, float]:
    """A world point in the ego frame of ``pose``."""
    x0, y0, yaw = pose
    dx, dy = world[0] - x0, world[1] - y0
    c, s = math.cos(yaw), math.sin(yaw)
    return c * dx + s * dy, -s * dx + c * dy


def drive(motion: GroundMotion, track: int, object_class: ObjectClass,
          world_at: Callable[[float], tuple[float, float]], *,
          seconds: float, yaw_rate: float = 0.0, speed: float = 14.0,
          prior: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """Ego driving at ``speed`` and turning at ``yaw_rate``; 20 Hz frames of one object."""
    x = y = yaw = 0.0
    v = (0.0, 0.0)
    for i in range(round(seconds * 20)):
        t = i / 20
        pose = (x, y, yaw)
        v = motion.update(("front", track), round(t * 1e9), pose, seen_from(pose, world_at(t)),
                          object_class, prior)
        x += speed * math.cos(yaw) / 20
        y += speed * math.sin(yaw) / 20
        yaw += yaw_rate / 20
    return v


def test_a_parked_car_stays_parked_while_the_ego_steers() -> None:
    # Relative to an ego at 14 m/s turning at 0.1 rad/s, a car 60 m ahead sweeps sideways
    # at 6 m/s; over the ground it does not move.
    vx, vy = drive(GroundMotion(), 1, ObjectClass.CAR, lambda t: (60.0, 2.0), seconds=1.5,
                   yaw_rate=0.1, prior=(0.0, 0.0))
    assert math.hypot(vx, vy) < 0.3


def test_a_crossing_pedestrian_is_seen_crossing() -> None:
    vx, vy = drive(GroundMotion(), 2, ObjectClass.PEDESTRIAN,
                   lambda t: (40.0, -4.0 + 1.4 * t), seconds=1.5, yaw_rate=0.05)
    assert vy == pytest.approx(1.4, abs=0.25)
    assert abs(vx) < 0.4


def test_a_new_pedestrian_starts_at_rest_and_a_new_car_at_its_prior() -> None:
    motion = GroundMotion()
    # The prior is the over-ground value of a brand-new relative estimate: the ego's speed.
    ped = motion.update(("front", 3), 0, (0.0, 0.0, 0.0), (30.0, -3.0),
                        ObjectClass.PEDESTRIAN, (14.0, 0.0))
    car = motion.update(("front", 4), 0, (0.0, 0.0, 0.0), (30.0, 0.0), ObjectClass.CAR,
                        (14.0, 0.0))
    assert ped == (0.0, 0.0)
    assert car == (14.0, 0.0)


def test_a_track_unseen_for_too_long_starts_afresh_and_is_pruned() -> None:
    motion = GroundMotion()
    drive(motion, 5, ObjectClass.CAR, lambda t: (30.0 + 10.0 * t, 0.0), seconds=1.0, speed=0.0)
    late = round(3e9)
    assert motion.update(("front", 5), late, (0.0, 0.0, 0.0), (90.0, 0.0), ObjectClass.CAR,
                         (-1.0, 0.0)) == (-1.0, 0.0)  # not the old track's 10 m/s
    motion.prune(late + round(2e9))
    assert len(motion) == 0
