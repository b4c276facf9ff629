"""The command gate: the last pure decision before a command reaches the vehicle.

It forwards the planner's commands while every input is fresh and replaces them with a
minimal-risk stop when one goes stale; every published command goes through
:func:`planning.limits.clamp`. The clock is injected (``now_ns`` arguments), so the gate is
deterministic: the same calls give the same outputs.

Stop choice: a comfortable stop (``comfortable_decel_mps2``, 1 m/s² by default) unless it
would bring the ego within a margin of the closest in-path object; then an emergency stop
(``emergency_decel_mps2``, 6 m/s²). The object is taken as last perceived and keeps its
speed along the path (the planner's own prediction): dead-reckoned closer by the closing
speed since, it is nearest when the braking ego has slowed to its speed, after
``(v_ego − v_object)² / (2 a)`` more metres of closing. A stopped object needs the whole
comfortable stopping distance; a car ahead at the ego's speed needs none (before, any car in
the path at 100 km/h, where a comfortable stop takes 386 m, gave an emergency stop). Within
one stale episode a comfortable stop can escalate to an emergency stop, never the reverse.

Recovery rule: back to normal only after every input has been fresh continuously for
``recovery_hold_ns`` AND a planner command stamped at or after the moment freshness
returned has arrived (so the vehicle never resumes on a plan made from stale inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from common.control import ControlCommand
from planning.limits import CommandLimits, clamp

PERCEPTION = "perception"
VEHICLE_STATE = "vehicle_state"
PLANNER = "planner"


class GateMode(StrEnum):
    """What the published command is doing."""

    NORMAL = "normal"
    COMFORTABLE_STOP = "comfortable_stop"
    EMERGENCY_STOP = "emergency_stop"


@dataclass(frozen=True, slots=True)
class GateEvent:
    """Something the safety log should record. ``severity``: info / warning / critical."""

    type: str
    severity: str
    details: dict[str, object]


@dataclass(frozen=True, slots=True)
class GateOutput:
    """Result of one tick: the command to publish (already clamped) and what happened."""

    command: ControlCommand
    mode: GateMode
    events: tuple[GateEvent, ...]
    clamped: frozenset[str]  # names from planning.limits.CLAMP_FIELDS


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Timeouts [ns] (from each topic's expected rate), stop behaviour and limits."""

    perception_timeout_ns: int = 300_000_000
    vehicle_state_timeout_ns: int = 200_000_000
    command_timeout_ns: int = 300_000_000
    comfortable_decel_mps2: float = 1.0
    emergency_decel_mps2: float = 6.0
    stop_margin_m: float = 5.0  # gap wanted in front of the object after stopping
    recovery_hold_ns: int = 500_000_000
    min_dt_s: float = 1e-3  # repeated or backward clock: treat as this short a step
    limits: CommandLimits = field(default_factory=CommandLimits)


class Gate:
    """Pure state machine; feed it inputs with their stamps, call :meth:`tick` at its rate."""

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config if config is not None else GateConfig()
        self._stamps: dict[str, int | None] = {PERCEPTION: None, VEHICLE_STATE: None, PLANNER: None}
        self._stale: dict[str, bool] = dict.fromkeys(self._stamps, False)
        self._command: ControlCommand | None = None
        self._closest_m: float | None = None
        self._closest_speed_mps = 0.0
        self._speed_mps = 0.0
        self._mode = GateMode.NORMAL
        self._fresh_since_ns: int | None = None
        self._prev_out: ControlCommand | None = None
        self._last_tick_ns: int | None = None

    @property
    def mode(self) -> GateMode:
        """Mode of the last tick."""
        return self._mode

    def on_command(self, command: ControlCommand, stamp_ns: int) -> None:
        """A planner command; ``stamp_ns`` is when the planner produced it."""
        self._command = command
        self._stamps[PLANNER] = stamp_ns

    def on_perception(self, stamp_ns: int, closest_in_path_m: float | None = None,
                      closest_speed_mps: float = 0.0) -> None:
        """A perception result: its source stamp, and the closest in-path object's distance [m]
        and speed along the path over the ground [m/s] (0: stopped; oncoming counts as 0)."""
        self._stamps[PERCEPTION] = stamp_ns
        self._closest_m = closest_in_path_m
        self._closest_speed_mps = max(closest_speed_mps, 0.0)

    def on_vehicle_state(self, stamp_ns: int, speed_mps: float) -> None:
        """A vehicle-state message: its stamp and the vehicle speed."""
        self._stamps[VEHICLE_STATE] = stamp_ns
        self._speed_mps = speed_mps

    def _timeouts(self) -> dict[str, int]:
        c = self.config
        return {
            PERCEPTION: c.perception_timeout_ns,
            VEHICLE_STATE: c.vehicle_state_timeout_ns,
            PLANNER: c.command_timeout_ns,
        }

    def _needs_emergency(self, now_ns: int) -> bool:
        closest = self._closest_m
        stamp = self._stamps[PERCEPTION]
        if closest is None or stamp is None:
            return False
        closing = max(self._speed_mps, 0.0) - self._closest_speed_mps
        if closing <= 0.0:  # the object is as fast or faster: slowing down only opens the gap
            return closest < self.config.stop_margin_m
        gap = closest - closing * max(now_ns - stamp, 0) / 1e9
        closed_while_braking = closing * closing / (2.0 * self.config.comfortable_decel_mps2)
        return gap - closed_while_braking < self.config.stop_margin_m

    def tick(self, now_ns: int) -> GateOutput:
        """Decide and clamp the command to publish at ``now_ns``."""
        events: list[GateEvent] = []
        stale_now: list[str] = []
        for name, timeout in self._timeouts().items():
            stamp = self._stamps[name]
            age = None if stamp is None else now_ns - stamp
            stale = age is None or age > timeout
            if stale and not self._stale[name]:
                events.append(GateEvent("stale_input", "warning",
                                        {"input": name, "age_ns": age, "timeout_ns": timeout}))
            elif not stale and self._stale[name]:
                events.append(GateEvent("input_fresh", "info", {"input": name, "age_ns": age}))
            self._stale[name] = stale
            if stale:
                stale_now.append(name)

        mode = self._mode
        if stale_now:
            self._fresh_since_ns = None
            emergency = self._needs_emergency(now_ns)
            if emergency and mode != GateMode.EMERGENCY_STOP:
                mode = GateMode.EMERGENCY_STOP
            elif mode == GateMode.NORMAL:
                mode = GateMode.COMFORTABLE_STOP
        elif mode != GateMode.NORMAL:
            if self._fresh_since_ns is None:
                self._fresh_since_ns = now_ns
            cmd_stamp = self._stamps[PLANNER]
            held = now_ns - self._fresh_since_ns >= self.config.recovery_hold_ns
            if held and cmd_stamp is not None and cmd_stamp >= self._fresh_since_ns:
                mode = GateMode.NORMAL
                events.append(GateEvent("recovered", "info", {"from_mode": str(self._mode)}))
                self._fresh_since_ns = None
        if mode != self._mode and mode != GateMode.NORMAL:
            severity = "critical" if mode == GateMode.EMERGENCY_STOP else "warning"
            events.append(GateEvent("minimal_risk_stop", severity, {
                "mode": str(mode), "stale_inputs": list(stale_now),
                "closest_in_path_m": self._closest_m, "speed_mps": self._speed_mps,
            }))
        self._mode = mode

        command = self._command_for(mode)
        dt_s = 0.0
        if self._last_tick_ns is not None:
            dt_s = max((now_ns - self._last_tick_ns) / 1e9, self.config.min_dt_s)
        prev = self._prev_out if self._last_tick_ns is not None else None
        out, clamped = clamp(command, prev, dt_s, self.config.limits)
        self._prev_out = out
        self._last_tick_ns = now_ns
        return GateOutput(command=out, mode=mode, events=tuple(events), clamped=clamped)

    def _command_for(self, mode: GateMode) -> ControlCommand:
        if mode == GateMode.NORMAL and self._command is not None:
            return self._command
        decel = (
            self.config.emergency_decel_mps2
            if mode == GateMode.EMERGENCY_STOP
            else self.config.comfortable_decel_mps2
        )
        steer = 0.0 if self._prev_out is None else self._prev_out.steering_tire_angle_rad
        # Hold the wheel where it is (no swerve); brake to a standstill and keep braking.
        return ControlCommand(
            steering_tire_angle_rad=steer,
            steering_tire_rotation_rate_radps=0.0,
            target_speed_mps=0.0,
            accel_mps2=-decel,
            jerk_mps3=0.0,
        )
