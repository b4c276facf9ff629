"""Risk: time-to-collision of tracked objects, and stops commanded by the gate.

`CollisionRiskCheck` raises `collision_risk` when a track on a collision course
(`in_path_ttc`) has a TTC below the warning (warning) or critical (critical) threshold; only an
escalation is reported, once per track and level. A track's level comes down only when its
TTC is clearly above the threshold again (`RELEASE_FACTOR`), so TTC noise at a threshold does
not repeat the event.

`ControlModeCheck` raises `emergency_stop` (critical) and `minimal_risk_stop` (warning) when a
vehicle's command mode changes to a stop, and `control_resumed` (info) when it is back to normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from services.messages import (
    ControlMode,
    DetectedObject,
    PerceptionObjects,
    Severity,
    VehicleControl,
)
from services.monitor.findings import (
    COLLISION_RISK,
    CONTROL_RESUMED,
    EMERGENCY_STOP,
    MINIMAL_RISK_STOP,
    NS_PER_S,
    Finding,
    Observation,
)

#: A level is released only above threshold × this, or once the track is predicted to pass
#: wider than the path's half-width × this: TTC and velocity estimates are noisy frame to frame.
RELEASE_FACTOR: Final = 1.2
_NONE, _WARNING, _CRITICAL = 0, 1, 2
_SEVERITY = {_WARNING: Severity.WARNING, _CRITICAL: Severity.CRITICAL}
#: Half-width of the ego's path for the collision-course test [m]: half an ego's width (0.95 m),
#: half a car's (0.9 m) and a little margin. A parked car beside the lane sits 2.5-3.5 m off.
PATH_HALF_WIDTH_M: Final = 2.0


def lateral_miss_m(obj: DetectedObject) -> float | None:
    """Where the object's centre will be across the ego's axis when its TTC runs out [m].

    Constant relative velocity: ``y + vy · ttc``. ``None`` when the object is not closing or
    has no position or velocity to predict from.
    """
    if obj.ttc_s is None or obj.ttc_s < 0 or obj.position_m is None or obj.velocity_mps is None:
        return None
    return obj.position_m.y + obj.velocity_mps.y * obj.ttc_s


def in_path_ttc(obj: DetectedObject, half_width_m: float = PATH_HALF_WIDTH_M) -> float | None:
    """The object's TTC when it is on a collision course with the ego, else ``None``.

    Perception's TTC is range over range rate, and every object the ego passes closes: a car
    parked beside the lane reaches a TTC of a second or less as the ego drives by it. On a
    collision course the object is within ``half_width_m`` of the ego's axis now, or its
    predicted place across the axis at its TTC (`lateral_miss_m`) is: a pedestrian stepping
    into the lane is, the parked car is not. The "now" keeps a car ahead in the path counted
    while the ego steers: its yaw turns the ego frame, and the relative velocity across it then
    swings by metres a second. An object closing without a position or velocity to test keeps
    its TTC (the cautious reading).
    """
    if obj.ttc_s is None or obj.ttc_s < 0:
        return None
    miss = lateral_miss_m(obj)
    if miss is None or obj.position_m is None:
        return obj.ttc_s
    if abs(obj.position_m.y) > half_width_m and abs(miss) > half_width_m:
        return None
    return obj.ttc_s


@dataclass
class _Track:
    level: int
    last_seen_ns: int


class CollisionRiskCheck:
    """Per (camera key, track id) TTC level with escalation-only findings."""

    def __init__(self, *, warning_s: float = 3.0, critical_s: float = 1.5,
                 forget_s: float = 2.0, half_width_m: float = PATH_HALF_WIDTH_M) -> None:
        if not 0 < critical_s < warning_s:
            raise ValueError("need 0 < critical_s < warning_s")
        self._half_width_m = half_width_m
        self._warning = warning_s
        self._critical = critical_s
        self._forget_ns = int(forget_s * NS_PER_S)
        self._tracks: dict[tuple[str, int], _Track] = {}

    def level(self, ttc_s: float | None, previous: int = _NONE) -> int:
        """0 none, 1 warning, 2 critical for a TTC, given the track's previous level."""
        if ttc_s is None or ttc_s < 0:
            return _NONE
        level = _CRITICAL if ttc_s < self._critical else _WARNING if ttc_s < self._warning else _NONE
        if level < previous:
            # Hold the higher level until the TTC is clearly above its threshold.
            hold = self._critical if previous == _CRITICAL else self._warning
            if ttc_s < hold * RELEASE_FACTOR:
                return previous
        return level

    def observe(self, obs: Observation, objects: PerceptionObjects, now_ns: int) -> list[Finding]:
        """Findings for tracks whose risk level rose in this frame."""
        out: list[Finding] = []
        for obj in objects.objects:
            key = (obs.key, obj.track_id)
            track = self._tracks.get(key)
            previous = track.level if track is not None else _NONE
            # a raised track stays raised until clearly off the path too, as for its TTC
            half = self._half_width_m * (RELEASE_FACTOR if previous > _NONE else 1.0)
            level = self.level(in_path_ttc(obj, half), previous)
            self._tracks[key] = _Track(level, now_ns)
            if level > previous:
                out.append(Finding(COLLISION_RISK, _SEVERITY[level], objects.vehicle_id, details={
                    "camera_id": objects.camera_id, "track_id": obj.track_id,
                    "class": obj.object_class.value, "score": obj.score, "ttc_s": obj.ttc_s,
                    "position_m": [obj.position_m.x, obj.position_m.y] if obj.position_m else None,
                    "velocity_mps": [obj.velocity_mps.x, obj.velocity_mps.y]
                    if obj.velocity_mps else None,
                    "lateral_miss_m": lateral_miss_m(obj),
                    "threshold_s": self._critical if level == _CRITICAL else self._warning,
                    "model_version": objects.model_version},
                    refs=obs.refs(frame_seq=objects.source.seq), run_id=objects.run_id))
        self.prune(now_ns)
        return out

    def prune(self, now_ns: int) -> None:
        """Forget tracks not seen recently (a new object may reuse nothing of theirs)."""
        limit = now_ns - self._forget_ns
        for k in [k for k, t in self._tracks.items() if t.last_seen_ns < limit]:
            del self._tracks[k]


@dataclass
class _Vehicle:
    mode: ControlMode
    seq: int
    run_id: str


class ControlModeCheck:
    """Per (vehicle, run) command mode; a finding on each change (duplicates and reorders
    ignored).

    Per run as well as per vehicle: when one run ends and the next begins, the gate keeps
    commanding the ended run's stop for a while (its inputs went silent) while the new run's
    commands are normal. Keyed by vehicle alone, the two streams interleaved read as a mode
    change on every command: a real-time run of the scenario library raised 3 650
    `control_resumed`, 3 189 `minimal_risk_stop` and 577 `emergency_stop` events, none of them
    a change in any one run. At most ``max_runs`` (vehicle, run) pairs are remembered, the
    least recently seen forgotten first.
    """

    def __init__(self, max_runs: int = 1024) -> None:
        self._vehicles: dict[tuple[str, str], _Vehicle] = {}
        self._max_runs = max_runs

    def observe(self, obs: Observation, control: VehicleControl) -> list[Finding]:
        """A finding when this command changes its vehicle's mode in its run."""
        key = (control.vehicle_id, control.run_id)
        state = self._vehicles.pop(key, None)
        if state is not None and control.seq <= state.seq:
            self._vehicles[key] = state
            return []  # a redelivery or an older command: the gate's seq is monotonic per run
        previous = state.mode if state is not None else ControlMode.NORMAL
        self._vehicles[key] = _Vehicle(control.mode, control.seq, control.run_id)
        while len(self._vehicles) > self._max_runs:
            del self._vehicles[next(iter(self._vehicles))]
        if control.mode == previous:
            return []
        if control.mode == ControlMode.EMERGENCY_STOP:
            type_, severity = EMERGENCY_STOP, Severity.CRITICAL
        elif control.mode == ControlMode.COMFORTABLE_STOP:
            type_, severity = MINIMAL_RISK_STOP, Severity.WARNING
        else:
            type_, severity = CONTROL_RESUMED, Severity.INFO
        return [Finding(type_, severity, control.vehicle_id, details={
            "from_mode": previous.value, "to_mode": control.mode.value,
            "target_speed_mps": control.target_speed_mps, "accel_mps2": control.accel_mps2},
            refs=obs.refs(command_seq=control.seq,
                          frame_seq=control.source.seq if control.source else None),
            run_id=control.run_id)]
