"""Closed-loop run metrics, accumulated step by step by the world.

Jerk is what a passenger feels, measured as nuPlan's comfort metrics do: the ego's measured
acceleration, averaged over 0.1 s, differentiated with a Savitzky-Golay filter (window 5,
quadratic), i.e. over 0.5 s. The actuator's own 10 ms steps are not counted: a 20 Hz command
held between updates moves the actuator at its 30 m/s³ limit for 10 ms on every small change,
and the raw figure read 30 in every scenario, a calm cruise included.

TTC counts only actors in the ego's path: laterally overlapping the ego's corridor along the
road and ahead of its front bumper, while the gap closes. Lateral deviation is measured from
the centre of the lane the ego is in, so a planned lane change is not counted as drift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.signal import savgol_filter

from simulators.actors import Actor
from simulators.collision import OrientedBox, box_distance
from simulators.driver import Route
from simulators.kinematics import BicycleState
from simulators.road import Road

PATH_MARGIN_M = 0.2  # [m] added to the half widths when deciding "in the ego path"


def planned_distance(route: Route, s0_m: float, v0_mps: float, duration_s: float,
                     accel_mps2: float = 2.0, dt: float = 0.05) -> float:
    """Distance [m] the route asks for over `duration_s`, reaching its speeds at `accel_mps2`."""
    s, v, t = s0_m, v0_mps, 0.0
    while t < duration_s - 1e-9:
        _, target = route.target(s)
        v = min(target, v + accel_mps2 * dt) if v < target else max(target, v - accel_mps2 * dt)
        s += v * dt
        t += dt
    return s - s0_m


class ComfortJerk:
    """Largest |jerk| [m/s³] of a measured acceleration, nuPlan-style (see the module doc)."""

    BIN_S = 0.1  # [s] nuPlan's 10 Hz history
    WINDOW = 5  # samples of the Savitzky-Golay filter
    ORDER = 2

    def __init__(self) -> None:
        self._bins: list[float] = []  # mean acceleration of each complete 0.1 s bin
        self._index = 0
        self._sum = 0.0
        self._n = 0

    def add(self, t_s: float, accel_mps2: float) -> None:
        """Fold in the acceleration measured over the step that ended at ``t_s``."""
        index = int((t_s - 1e-9) // self.BIN_S)
        if index != self._index and self._n:
            self._bins.append(self._sum / self._n)
            self._sum, self._n = 0.0, 0
        self._index = index
        self._sum += accel_mps2
        self._n += 1

    def max_abs(self) -> float:
        """The largest |jerk| so far (0 with fewer than three 0.1 s samples)."""
        a = np.array(self._bins + ([self._sum / self._n] if self._n else []))
        if a.size < 3:
            return 0.0
        window = min(self.WINDOW, a.size if a.size % 2 else a.size - 1)
        jerk = savgol_filter(a, window, min(self.ORDER, window - 1), deriv=1, delta=self.BIN_S)
        return float(np.abs(jerk).max())


class RunMetrics:
    """Safety and comfort figures of one run; `summary()` gives them as a dict."""

    def __init__(self, planned_m: float, start_s_m: float) -> None:
        self.planned_m = planned_m
        self.start_s_m = start_s_m
        self.s_m = start_s_m
        self.t_s = 0.0
        self.collision = False
        self.collision_t_s: float | None = None
        self.collision_actor: str | None = None
        self.impact_speed_mps = 0.0
        self.min_distance_m = math.inf
        self.min_ttc_s = math.inf
        self.max_decel_mps2 = 0.0
        self.jerk = ComfortJerk()
        self.max_lateral_deviation_m = 0.0
        self.max_speed_mps = 0.0

    def record_collision(self, t_s: float, actor_id: str, impact_speed_mps: float) -> None:
        """Note a collision; only the first one sets the impact speed."""
        if not self.collision:
            self.collision = True
            self.collision_t_s = t_s
            self.collision_actor = actor_id
            self.impact_speed_mps = impact_speed_mps

    def update(self, t_s: float, ego: BicycleState, ego_box: OrientedBox, ego_s_m: float,
               ego_d_m: float, front_overhang_m: float, road: Road,
               actors: Sequence[Actor]) -> None:
        """Fold one simulation step into the metrics."""
        self.t_s = t_s
        self.s_m = ego_s_m
        self.max_speed_mps = max(self.max_speed_mps, ego.speed_mps)
        self.max_decel_mps2 = max(self.max_decel_mps2, -ego.accel_mps2)
        self.jerk.add(t_s, ego.accel_mps2)
        lane_centre = road.lane_d(road.lane_of(ego_d_m))
        self.max_lateral_deviation_m = max(self.max_lateral_deviation_m, abs(ego_d_m - lane_centre))
        reach = math.hypot(ego_box.length_m, ego_box.width_m) / 2
        front_s = ego_s_m + front_overhang_m
        for actor in actors:
            box = actor.box()
            centre_gap = math.hypot(box.x_m - ego_box.x_m, box.y_m - ego_box.y_m)
            if centre_gap - reach - math.hypot(box.length_m, box.width_m) / 2 < self.min_distance_m:
                self.min_distance_m = min(self.min_distance_m, box_distance(ego_box, box))
            half = (ego_box.width_m + actor.appearance.width_m) / 2 + PATH_MARGIN_M
            if abs(actor.d_m - ego_d_m) > half:
                continue
            gap = actor.s_m - actor.appearance.length_m / 2 - front_s
            closing = ego.speed_mps - actor.speed_mps
            if gap > 0 and closing > 1e-3:
                self.min_ttc_s = min(self.min_ttc_s, gap / closing)

    @property
    def progress(self) -> float:
        """Distance achieved over distance planned, in [0, 1]."""
        if self.planned_m <= 1e-6:
            return 1.0
        return min(max((self.s_m - self.start_s_m) / self.planned_m, 0.0), 1.0)

    def summary(self) -> dict[str, Any]:
        """The metrics as JSON-ready values (None where a figure never applied)."""
        return {
            "collision": self.collision,
            "collision_t_s": self.collision_t_s,
            "collision_actor": self.collision_actor,
            "impact_speed_mps": round(self.impact_speed_mps, 4),
            "min_distance_m": None if math.isinf(self.min_distance_m) else round(self.min_distance_m, 4),
            "min_ttc_s": None if math.isinf(self.min_ttc_s) else round(self.min_ttc_s, 4),
            "progress": round(self.progress, 4),
            "distance_m": round(self.s_m - self.start_s_m, 3),
            "planned_distance_m": round(self.planned_m, 3),
            "max_decel_mps2": round(self.max_decel_mps2, 4),
            "max_jerk_mps3": round(self.jerk.max_abs(), 4),
            "max_lateral_deviation_m": round(self.max_lateral_deviation_m, 4),
            "max_speed_mps": round(self.max_speed_mps, 4),
            "duration_s": round(self.t_s, 4),
        }
