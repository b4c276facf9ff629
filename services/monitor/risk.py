"""Risk: time-to-collision of tracked objects, and stops commanded by the gate.

`CollisionRiskCheck` raises `collision_risk` when a track on a collision course has a TTC below
the warning (warning) or critical (critical) threshold; only an escalation is reported, once per
track and level. The rule, its levels and their hysteresis are `evaluation.safety` (shared with
the run report and the risk replay); this check turns each rise into a finding.

`ControlModeCheck` raises `emergency_stop` (critical) and `minimal_risk_stop` (warning) when a
vehicle's command mode changes to a stop, and `control_resumed` (info) when it is back to normal.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.in_path import PATH_HALF_WIDTH_M
from evaluation.safety import SEVERITY, RiskRule, RiskTracker, lateral_miss_m
from services.messages import (
    ControlMode,
    PerceptionObjects,
    Severity,
    VehicleControl,
)
from services.monitor.findings import (
    COLLISION_RISK,
    CONTROL_RESUMED,
    EMERGENCY_STOP,
    MINIMAL_RISK_STOP,
    Finding,
    Observation,
)


class CollisionRiskCheck:
    """Per (camera key, track id) TTC level with escalation-only findings."""

    def __init__(self, *, warning_s: float = 3.0, critical_s: float = 1.5,
                 forget_s: float = 2.0, half_width_m: float = PATH_HALF_WIDTH_M) -> None:
        self._tracker = RiskTracker(RiskRule(warning_s=warning_s, critical_s=critical_s,
                                             forget_s=forget_s, half_width_m=half_width_m))

    def observe(self, obs: Observation, objects: PerceptionObjects, now_ns: int) -> list[Finding]:
        """Findings for tracks whose risk level rose in this frame."""
        return [Finding(COLLISION_RISK, SEVERITY[level], objects.vehicle_id, details={
            "camera_id": objects.camera_id, "track_id": obj.track_id,
            "class": obj.object_class.value, "score": obj.score, "ttc_s": obj.ttc_s,
            "position_m": [obj.position_m.x, obj.position_m.y] if obj.position_m else None,
            "velocity_mps": [obj.velocity_mps.x, obj.velocity_mps.y] if obj.velocity_mps else None,
            "lateral_miss_m": lateral_miss_m(obj),
            "threshold_s": self._tracker.threshold_s(level),
            "model_version": objects.model_version},
            refs=obs.refs(frame_seq=objects.source.seq), run_id=objects.run_id)
            for obj, level in self._tracker.update(obs.key, objects.objects, now_ns)]

    def prune(self, now_ns: int) -> None:
        """Forget tracks not seen recently (a new object may reuse nothing of theirs)."""
        self._tracker.prune(now_ns)


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
