"""World-frame filters: the ego's own motion is taken out; an object's own motion is kept."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from common.classes import ObjectClass
from planning.ground_motion import GroundMotion


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


def feed(motion: GroundMotion, track: int, positions: list[tuple[float, float]],
         start_ns: int = 0) -> int:
    """Updates at 20 Hz from an ego standing at the origin; the last stamp [ns]."""
    stamp = start_ns
    for i, p in enumerate(positions):
        stamp = start_ns + i * 50_000_000
        motion.update(("front", track), stamp, (0.0, 0.0, 0.0), p, ObjectClass.CAR, (0.0, 0.0))
    return stamp


def test_a_car_that_leaves_the_view_beside_the_ego_is_coasted_for_a_while() -> None:
    motion = GroundMotion()
    # Dropping back along the next lane at 2 m/s, last seen 8 m ahead, 3.5 m to the right.
    last = feed(motion, 1, [(10.0 - 0.1 * i, -3.5) for i in range(21)])
    assert motion.coasted(last, set()) == []  # seen at that instant: nothing to coast
    later = last + round(2e9)
    (ghost,) = motion.coasted(later, set())
    assert ghost.key == ("front", 1)
    assert ghost.position_m == pytest.approx((8.0 - 2.0 * 2.0, -3.5), abs=0.3)  # still beside
    assert motion.coasted(later, {("front", 1)}) == []  # seen again: not a ghost
    assert motion.coasted(last + round(3.5e9), set()) == []  # its time ran out
    motion.prune(last + round(2.5e9))
    assert len(motion) == 1  # kept while it coasts, past the plain max_age_s
    motion.prune(last + round(3.5e9))
    assert len(motion) == 0


def test_a_lost_track_ahead_coasts_briefly_and_an_unconfirmed_one_not_at_all() -> None:
    motion = GroundMotion()
    last = feed(motion, 2, [(30.0, 0.0)] * 10)  # in the lane ahead: a detector miss
    assert len(motion.coasted(last + round(0.4e9), set())) == 1
    assert motion.coasted(last + round(0.7e9), set()) == []
    brief = feed(motion, 3, [(8.0, -3.5)] * 3, start_ns=last)  # three: maybe a false alarm
    assert [c.key for c in motion.coasted(brief + round(0.2e9), set())] == [("front", 2)]


def test_a_coasted_car_keeps_its_lane_and_a_coasted_pedestrian_keeps_crossing() -> None:
    motion = GroundMotion()
    # Its last frames at the image edge make a car beside the ego seem to drift towards it at
    # 2 m/s; unseen, it is dead-reckoned along the road only, never into the ego's lane.
    last = feed(motion, 1, [(10.0 - 0.1 * i, -4.5 + 0.1 * i) for i in range(21)])
    (ghost,) = motion.coasted(last + round(2e9), set())
    assert ghost.velocity_mps[1] == 0.0
    assert ghost.velocity_mps[0] == pytest.approx(-2.0, abs=0.3)
    assert ghost.position_m[1] == pytest.approx(-2.5, abs=0.3)  # where it was last seen
    # A pedestrian crossing at 1.4 m/s, lost in the lane ahead, goes on crossing.
    stamp = 0
    for i in range(10):
        stamp = last + (i + 1) * 50_000_000
        motion.update(("front", 2), stamp, (0.0, 0.0, 0.0), (20.0, -2.0 + 0.07 * i),
                      ObjectClass.PEDESTRIAN, (0.0, 0.0))
    walker = next(c for c in motion.coasted(stamp + round(0.3e9), set()) if c.key[1] == 2)
    assert walker.velocity_mps[1] > 0.8


def test_a_coasted_car_starts_from_where_it_was_last_seen_not_from_the_lagging_filter() -> None:
    motion = GroundMotion()
    # Beside the ego, its box cut by the image edge: the ranging jumps by 1.5 m sideways in the
    # last frames and the filter, following at its own pace, is left between the two.
    seen = [(8.0, -3.7)] * 12 + [(8.0, -2.2), (8.0, -2.2), (8.0, -3.7)]
    last = feed(motion, 1, seen)
    (ghost,) = motion.coasted(last + round(0.5e9), set())
    assert ghost.position_m[1] == pytest.approx(-3.7, abs=0.05)
