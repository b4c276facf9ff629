"""The collision-risk rule on perception's objects: which are on a collision course, and each
track's risk level with its hysteresis.

The geometry is `common.in_path` (plain floats, shared with the command gate); here it is
applied to `DetectedObject` (position and velocity relative to the ego, TTC). The monitor's
`collision_risk` events, the run report's TTC plot and the risk replay all come from here.

A track's level (`RiskTracker`) rises as soon as its TTC on a collision course falls below the
warning or critical threshold; it comes down only when the TTC is clearly above the threshold
again, or the track clearly off the path (`RELEASE_FACTOR`), so TTC noise at a threshold does
not repeat a rise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from common.in_path import PATH_HALF_WIDTH_M, collision_course_ttc
from common.in_path import lateral_miss_m as _lateral_miss_m
from services.messages import DetectedObject, Severity

#: A level is released only above threshold × this, or once the track is predicted to pass
#: wider than the path's half-width × this: TTC and velocity estimates are noisy frame to frame.
RELEASE_FACTOR: Final = 1.2
_NS_PER_S: Final = 1_000_000_000


class RiskLevel(IntEnum):
    """A track's collision-risk level."""

    NONE = 0
    WARNING = 1
    CRITICAL = 2


#: The safety-event severity of each raised level.
SEVERITY: Final = {RiskLevel.WARNING: Severity.WARNING, RiskLevel.CRITICAL: Severity.CRITICAL}


def lateral_miss_m(obj: DetectedObject) -> float | None:
    """Where the object's centre will be across the ego's axis when its TTC runs out [m].

    ``None`` when the object is not closing or has no position or velocity to predict from.
    """
    if obj.ttc_s is None or obj.ttc_s < 0 or obj.position_m is None or obj.velocity_mps is None:
        return None
    return _lateral_miss_m(obj.position_m.y, obj.velocity_mps.y, obj.ttc_s)


def in_path_ttc(obj: DetectedObject, half_width_m: float = PATH_HALF_WIDTH_M) -> float | None:
    """The object's TTC when it is on a collision course with the ego, else ``None``
    (`common.in_path.collision_course_ttc` on its lateral position and relative velocity)."""
    return collision_course_ttc(
        obj.ttc_s, obj.position_m.y if obj.position_m is not None else None,
        obj.velocity_mps.y if obj.velocity_mps is not None else None, half_width_m)


@dataclass(frozen=True)
class RiskRule:
    """The thresholds of the collision-risk rule (the monitor's settings give them)."""

    warning_s: float = 3.0  # TTC below this: warning [s]
    critical_s: float = 1.5  # TTC below this: critical [s]
    forget_s: float = 2.0  # a track not seen this long is forgotten [s]
    half_width_m: float = PATH_HALF_WIDTH_M  # the path's half-width [m]; inf: every closing track

    def __post_init__(self) -> None:
        if not 0 < self.critical_s < self.warning_s:
            raise ValueError("need 0 < critical_s < warning_s")


@dataclass
class _Track:
    level: RiskLevel
    last_seen_ns: int


class RiskTracker:
    """Per (camera key, track id) risk level; reports each rise once."""

    def __init__(self, rule: RiskRule | None = None) -> None:
        self.rule = rule or RiskRule()
        self._forget_ns = int(self.rule.forget_s * _NS_PER_S)
        self._tracks: dict[tuple[str, int], _Track] = {}

    def level(self, ttc_s: float | None, previous: RiskLevel = RiskLevel.NONE) -> RiskLevel:
        """The level for a TTC on a collision course, given the track's previous level."""
        rule = self.rule
        if ttc_s is None or ttc_s < 0:
            return RiskLevel.NONE
        level = (RiskLevel.CRITICAL if ttc_s < rule.critical_s
                 else RiskLevel.WARNING if ttc_s < rule.warning_s else RiskLevel.NONE)
        if level < previous:
            # Hold the higher level until the TTC is clearly above its threshold.
            hold = rule.critical_s if previous == RiskLevel.CRITICAL else rule.warning_s
            if ttc_s < hold * RELEASE_FACTOR:
                return previous
        return level

    def threshold_s(self, level: RiskLevel) -> float:
        """The TTC threshold of a raised level [s]."""
        return self.rule.critical_s if level == RiskLevel.CRITICAL else self.rule.warning_s

    def update(self, key: str, objects: Iterable[DetectedObject],
               now_ns: int) -> list[tuple[DetectedObject, RiskLevel]]:
        """The objects of one frame of camera ``key`` whose level rose, with their new level.

        ``now_ns`` is the frame's time on the clock the data runs on; tracks not seen for
        ``forget_s`` before it are forgotten.
        """
        out: list[tuple[DetectedObject, RiskLevel]] = []
        for obj in objects:
            track_key = (key, obj.track_id)
            track = self._tracks.get(track_key)
            previous = track.level if track is not None else RiskLevel.NONE
            # a raised track stays raised until clearly off the path too, as for its TTC
            half = self.rule.half_width_m * (RELEASE_FACTOR if previous > RiskLevel.NONE else 1.0)
            level = self.level(in_path_ttc(obj, half), previous)
            self._tracks[track_key] = _Track(level, now_ns)
            if level > previous:
                out.append((obj, level))
        self.prune(now_ns)
        return out

    def prune(self, now_ns: int) -> None:
        """Forget tracks not seen recently (a new object may reuse nothing of theirs)."""
        limit = now_ns - self._forget_ns
        for k in [k for k, t in self._tracks.items() if t.last_seen_ns < limit]:
            del self._tracks[k]
