"""Oriented-box overlap (SAT), gaps and impact speed."""

from __future__ import annotations

import math

import pytest

from simulators.collision import OrientedBox, box_distance, boxes_overlap, impact_speed


def test_overlapping_and_separate_boxes() -> None:
    a = OrientedBox(0.0, 0.0, 0.0, 4.0, 2.0)
    assert boxes_overlap(a, OrientedBox(3.5, 0.5, 0.0, 4.0, 2.0))
    assert not boxes_overlap(a, OrientedBox(4.5, 0.0, 0.0, 4.0, 2.0))
    assert box_distance(a, OrientedBox(4.5, 0.0, 0.0, 4.0, 2.0)) == pytest.approx(0.5)
    assert box_distance(a, OrientedBox(0.0, 3.0, 0.0, 4.0, 2.0)) == pytest.approx(1.0)


def test_rotated_boxes_use_their_own_axes() -> None:
    a = OrientedBox(0.0, 0.0, 0.0, 2.0, 2.0)
    # a diamond whose axis-aligned bounds overlap `a`, but whose edge x + y = 4.6 - √2 passes
    # the square's corner (1, 1) at a distance
    b = OrientedBox(2.3, 2.3, math.pi / 4, 2.0, 2.0)
    assert not boxes_overlap(a, b)
    assert box_distance(a, b) == pytest.approx((4.6 - math.sqrt(2) - 2) / math.sqrt(2), abs=1e-9)
    # moved in until that edge crosses the corner, they overlap
    assert boxes_overlap(a, OrientedBox(1.6, 1.6, math.pi / 4, 2.0, 2.0))
    # a long thin box crossing at 90° overlaps
    assert boxes_overlap(OrientedBox(0, 0, 0, 6, 0.5), OrientedBox(0, 0, math.pi / 2, 6, 0.5))


def test_impact_speed_is_the_relative_speed() -> None:
    assert impact_speed((10.0, 0.0), (4.0, 0.0)) == pytest.approx(6.0)
    assert impact_speed((10.0, 0.0), (0.0, 1.5)) == pytest.approx(math.hypot(10, 1.5))
