"""The collision-course ("in path") rule, defined once, on plain floats.

Ego frame: x forward, y to the left [m], the ego's axis is y = 0. The command gate asks "what is
the closest object in my path?" (`closest_in_path`); the monitor, the run report and the risk
replay ask "is this closing object on a collision course, and what is its TTC?"
(`collision_course_ttc`). Both use `PATH_HALF_WIDTH_M` and the one test `in_path`.
`evaluation.safety` applies the rule to perception's `DetectedObject`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

#: Half-width of the ego's path [m]: half an ego's width (0.95 m), half a car's (0.9 m) and a
#: little margin, so a car whose side reaches into the ego's lane is in it. A car parked beside
#: the lane sits 2.5-3.5 m off the axis and is not.
PATH_HALF_WIDTH_M: Final = 2.0


def in_path(y_m: float, half_width_m: float = PATH_HALF_WIDTH_M) -> bool:
    """Whether a point ``y_m`` across the ego's axis [m] lies in the path (border included).

    A NaN offset counts as in the path: an unknown place is the cautious reading.
    """
    return not abs(y_m) > half_width_m


def closest_in_path(points: Iterable[tuple[float, float, float]],
                    half_width_m: float = PATH_HALF_WIDTH_M) -> tuple[float, float] | None:
    """The nearest object ahead in the ego's path, if any: its distance ahead [m] and its speed
    along the ego's axis [m/s].

    ``points`` are ``(x_m, y_m, vx_mps)`` per object: its position in the ego frame and its
    speed along the ego's axis. Ahead means ``x_m > 0``; objects level with or behind the ego
    are not the gate's. Of two objects equally far, the slower comes first.
    """
    ahead = [(x_m, vx_mps) for x_m, y_m, vx_mps in points
             if x_m > 0 and in_path(y_m, half_width_m)]
    return min(ahead) if ahead else None


def lateral_miss_m(y_m: float, vy_mps: float, ttc_s: float) -> float:
    """Where an object's centre will be across the ego's axis when its TTC runs out [m].

    Constant relative velocity: ``y + vy · ttc`` (``vy_mps`` relative to the ego).
    """
    return y_m + vy_mps * ttc_s


def collision_course_ttc(ttc_s: float | None, y_m: float | None = None,
                         vy_mps: float | None = None,
                         half_width_m: float = PATH_HALF_WIDTH_M) -> float | None:
    """``ttc_s`` when the object is on a collision course with the ego, else ``None``.

    A TTC of range over range rate comes down for every object the ego passes: a car parked
    beside the lane reaches a second or less as the ego drives by. On a collision course the
    object is in the path now (``y_m``), or its predicted place across the axis at its TTC
    (`lateral_miss_m`) is: a pedestrian stepping into the lane is, the parked car is not. The
    "now" keeps a car ahead in the path counted while the ego steers: its yaw turns the ego
    frame, and the relative velocity across it then swings by metres a second. ``None`` or a
    negative ``ttc_s`` is not closing. A closing object without a position or relative
    velocity to test keeps its TTC (the cautious reading).
    """
    if ttc_s is None or ttc_s < 0:
        return None
    if y_m is None or vy_mps is None:
        return ttc_s
    if not in_path(y_m, half_width_m) and not in_path(lateral_miss_m(y_m, vy_mps, ttc_s),
                                                      half_width_m):
        return None
    return ttc_s
