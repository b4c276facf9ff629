"""The command gate: the last pure decision before a command reaches the vehicle.

It forwards the planner's commands while every input is fresh and replaces them with a
minimal-risk stop when one goes stale; every published command goes through
:func:`planning.limits.clamp`. The clock is injected (``now_ns`` arguments), so the gate is
deterministic: the same calls give the same outputs.

An input is stale at a tick when its newest message is older than its timeout, when none has
come yet, when that message was stamped more than ``future_tolerance_ns`` ahead of the gate's
clock (a ``clock_skew`` warning, once per episode and input: a stamp from the future would
otherwise stay "fresh" for as long as it is ahead), or when that message carried a non-finite
number (NaN, ±inf, in a stamp, a speed, a distance or a command field). Such a message is
discarded: the gate keeps acting on the last valid values (so a NaN speed can never turn an
emergency stop into a comfortable one) and no non-finite number reaches an output or event.

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

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum

from common.control import ControlCommand
from planning.limits import CommandLimits, clamp

PERCEPTION = "perception"
VEHICLE_STATE = "vehicle_state"
PLANNER = "planner"

# Why an input is stale, beyond its timeout (stale_input events name these as ``reason``).
FUTURE_STAMP = "future_stamp"
NON_FINITE = "non_finite"

_INT64_MAX = 2**63 - 1
_MAX_SPAN_NS = 10**18  # ~31 years: longer spans are clipped before any float conversion


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
    """Timeouts [ns] (from each topic's expected rate), stop behaviour and limits.

    ``future_tolerance_ns``: how far ahead of the gate's clock a stamp may be and still count.
    Inputs are stamped on other hosts' clocks (camera capture, vehicle bus), which synchronised
    hosts keep within milliseconds of each other; 500 ms leaves room for a loosely synchronised
    host while bounding the harm of a skewed clock: a stamp within the tolerance keeps its
    input fresh at most that much longer than its timeout, so a stop comes at worst 500 ms
    late — and a stamp beyond it is refused at once.
    """

    perception_timeout_ns: int = 300_000_000
    vehicle_state_timeout_ns: int = 200_000_000
    command_timeout_ns: int = 300_000_000
    comfortable_decel_mps2: float = 1.0
    emergency_decel_mps2: float = 6.0
    stop_margin_m: float = 5.0  # gap wanted in front of the object after stopping
    recovery_hold_ns: int = 500_000_000
    min_dt_s: float = 1e-3  # repeated or backward clock: treat as this short a step
    future_tolerance_ns: int = 500_000_000
    limits: CommandLimits = field(default_factory=CommandLimits)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, CommandLimits):
                continue
            zero_ok = f.name in _MAY_BE_ZERO
            if not (_finite(value) and (value >= 0 if zero_ok else value > 0)):
                raise ValueError(f"GateConfig.{f.name} must be a finite number "
                                 f"{'≥ 0' if zero_ok else '> 0'}, got {value!r}")


_MAY_BE_ZERO = frozenset({"stop_margin_m", "recovery_hold_ns", "future_tolerance_ns"})


def _finite(value: object) -> bool:
    """True for an integer or a finite real number (a stamp or a value the gate may use)."""
    if isinstance(value, int):
        return True
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except (TypeError, OverflowError):
        return False


def _span_ns(span_ns: int) -> int:
    """A span [ns] clipped to ±31 years, so that absurd stamps never overflow a float."""
    return min(max(span_ns, -_MAX_SPAN_NS), _MAX_SPAN_NS)


def _detail_ns(value: int | None) -> int | None:
    """A span or stamp for an event's details, clipped to the wire's int64 range."""
    return None if value is None else min(max(value, -_INT64_MAX), _INT64_MAX)


@dataclass(slots=True)
class _Input:
    """What the gate knows of one input: its last valid stamp and how its last message was."""

    timeout_ns: int
    stamp_ns: int | None = None  # stamp of the newest valid message
    non_finite: str | None = None  # field of the newest message that was not finite
    stale: bool = False  # as judged at the last tick
    skewed: bool = False  # stamped beyond the future tolerance at the last tick

    def receive(self, stamp_ns: int, values: dict[str, object]) -> bool:
        """Take a message; False (and the input marked non-finite) when it must be discarded."""
        checked = {"stamp_ns": stamp_ns, **values}.items()
        bad = next((n for n, v in checked if v is not None and not _finite(v)), None)
        self.non_finite = bad
        if bad is None:
            self.stamp_ns = stamp_ns
        return bad is None


class Gate:
    """Pure state machine; feed it inputs with their stamps, call :meth:`tick` at its rate.

    A message holding a non-finite number is discarded and leaves its input stale until the
    next valid one; :meth:`tick` refuses a non-finite clock (ValueError).
    """

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config if config is not None else GateConfig()
        c = self.config
        self._inputs = {PERCEPTION: _Input(c.perception_timeout_ns),
                        VEHICLE_STATE: _Input(c.vehicle_state_timeout_ns),
                        PLANNER: _Input(c.command_timeout_ns)}
        self._command: ControlCommand | None = None
        self._closest_m: float | None = None
        self._closest_speed_mps = 0.0
        self._object_stamp_ns: int | None = None  # when the closest object was where it was
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
        # the command's own stamp is passed through to the output: it must be finite too
        values = {"command_" + f.name if f.name == "stamp_ns" else f.name: getattr(command, f.name)
                  for f in fields(command)}
        if self._inputs[PLANNER].receive(stamp_ns, values):
            self._command = command

    def on_perception(self, stamp_ns: int, closest_in_path_m: float | None = None,
                      closest_speed_mps: float = 0.0) -> None:
        """A perception result: its source stamp, and the closest in-path object's distance [m]
        and speed along the path over the ground [m/s] (0: stopped; oncoming counts as 0)."""
        if self._inputs[PERCEPTION].receive(stamp_ns, {"closest_in_path_m": closest_in_path_m,
                                                       "closest_speed_mps": closest_speed_mps}):
            self._closest_m = closest_in_path_m
            self._closest_speed_mps = max(closest_speed_mps, 0.0)
            self._object_stamp_ns = stamp_ns

    def on_vehicle_state(self, stamp_ns: int, speed_mps: float) -> None:
        """A vehicle-state message: its stamp and the vehicle speed."""
        if self._inputs[VEHICLE_STATE].receive(stamp_ns, {"speed_mps": speed_mps}):
            self._speed_mps = speed_mps

    def _needs_emergency(self, now_ns: int) -> bool:
        closest = self._closest_m
        stamp = self._object_stamp_ns
        if closest is None or stamp is None:
            return False
        closing = max(self._speed_mps, 0.0) - self._closest_speed_mps
        if closing <= 0.0:  # the object is as fast or faster: slowing down only opens the gap
            return closest < self.config.stop_margin_m
        gap = closest - closing * max(_span_ns(now_ns - stamp), 0) / 1e9
        closed_while_braking = closing * closing / (2.0 * self.config.comfortable_decel_mps2)
        return gap - closed_while_braking < self.config.stop_margin_m

    def _judge(self, name: str, inp: _Input, now_ns: int, events: list[GateEvent]) -> bool:
        """Whether ``inp`` is stale at ``now_ns``; appends the events of any change."""
        age = None if inp.stamp_ns is None else now_ns - inp.stamp_ns
        reason = None
        if inp.non_finite is not None:
            reason = NON_FINITE
        elif age is not None and age < -self.config.future_tolerance_ns:
            reason = FUTURE_STAMP
        stale = reason is not None or age is None or age > inp.timeout_ns
        skewed = reason == FUTURE_STAMP
        if skewed and not inp.skewed and age is not None:
            events.append(GateEvent("clock_skew", "warning", {
                "input": name, "stamp_ns": _detail_ns(now_ns - age), "now_ns": _detail_ns(now_ns),
                "ahead_ns": _detail_ns(-age), "tolerance_ns": self.config.future_tolerance_ns}))
        if stale and not inp.stale:
            details: dict[str, object] = {"input": name, "age_ns": _detail_ns(age),
                                          "timeout_ns": inp.timeout_ns}
            if reason is not None:  # timed out (or never seen) needs no further word
                details["reason"] = reason
            if reason == NON_FINITE:
                details["field"] = inp.non_finite
            events.append(GateEvent("stale_input", "warning", details))
        elif not stale and inp.stale:
            events.append(GateEvent("input_fresh", "info",
                                    {"input": name, "age_ns": _detail_ns(age)}))
        inp.stale, inp.skewed = stale, skewed
        return stale

    def tick(self, now_ns: int) -> GateOutput:
        """Decide and clamp the command to publish at ``now_ns`` (an integer stamp [ns])."""
        if not _finite(now_ns):
            raise ValueError(f"Gate.tick: now_ns must be a finite stamp [ns], got {now_ns!r}")
        events: list[GateEvent] = []
        stale_now = [name for name, inp in self._inputs.items()
                     if self._judge(name, inp, now_ns, events)]
        if self._object_stamp_ns is not None:
            # The object was seen no later than now, whatever its stamp says: dead reckoning
            # from a future (or, after a backward clock jump, later) stamp would stand still.
            self._object_stamp_ns = min(self._object_stamp_ns, now_ns)

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
            cmd_stamp = self._inputs[PLANNER].stamp_ns
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
            dt_s = max(_span_ns(now_ns - self._last_tick_ns) / 1e9, self.config.min_dt_s)
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
