"""Latency: per-stage delays read from message stamps, checked against budgets.

Stages (all from stamps the producers write, so they include queueing and transport):

| stage | topic | measured as |
|---|---|---|
| `perception` | perception.objects | objects `stamp_ns` − source frame `stamp_ns` (capture) |
| `perception.<name>` | perception.objects | its `latencies_ms[<name>]` (decode, infer, track …) |
| `planning` | planning.trajectory | trajectory `stamp_ns` − `perception_stamp_ns` |
| `control` | vehicle.control | command `stamp_ns` − source frame `stamp_ns` (end to end) |

On the simulation clock (lockstep) a stage is judged only when both its stamps are on the data
clock: the simulator waits for the stack, so in simulation time perception and planning take no
time, and their publish stamps (perception's wall clock) are minutes ahead of the data. There
`perception` and `planning` are left out; `control` counts when the command is stamped on its
inputs' clock (`clock: source`), and perception's own measured durations always count.

A stage is only checked when it has a budget. A burst over budget is one
`latency_budget_exceeded` finding per (stage, vehicle) per window; the next one says how many
went over in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.messages import (
    ControlClock,
    EventRefs,
    PerceptionObjects,
    PlanningTrajectory,
    Severity,
    VehicleControl,
)
from services.monitor.findings import LATENCY_BUDGET_EXCEEDED, NS_PER_S, Finding, Observation

Stamped = PerceptionObjects | PlanningTrajectory | VehicleControl


def stage_latencies_s(payload: Stamped, *, simulation: bool = False) -> dict[str, float]:
    """The stage delays [s] a payload's stamps reveal (see the module table); negatives dropped.

    `simulation`: the data runs on simulation time; stages measured between a wall-clock stamp
    and a data stamp are left out (module docstring).
    """
    out: dict[str, float] = {}
    if isinstance(payload, PerceptionObjects):
        if not simulation:
            out["perception"] = (payload.stamp_ns - payload.source.stamp_ns) / NS_PER_S
        for name, ms in payload.latencies_ms.items():
            out[f"perception.{name}"] = ms / 1000.0
    elif isinstance(payload, PlanningTrajectory):
        if payload.perception_stamp_ns is not None and not simulation:
            out["planning"] = (payload.stamp_ns - payload.perception_stamp_ns) / NS_PER_S
    elif payload.source is not None and (not simulation or payload.clock == ControlClock.SOURCE):
        out["control"] = (payload.stamp_ns - payload.source.stamp_ns) / NS_PER_S
    # A negative delay means the producers' clocks disagree: not a latency we can judge.
    return {k: v for k, v in out.items() if v >= 0}


@dataclass
class _Window:
    last_event_ns: int
    over_since: int = 0
    worst_s: float = 0.0


class LatencyCheck:
    """Budgets per stage with one finding per (stage, vehicle) per window."""

    def __init__(self, budgets_ms: Mapping[str, float], *, window_s: float = 10.0) -> None:
        self._budgets_s = {k: v / 1000.0 for k, v in budgets_ms.items()}
        self._window_ns = int(window_s * NS_PER_S)
        self._windows: dict[tuple[str, str], _Window] = {}

    def budget_s(self, stage: str) -> float | None:
        """The budget of a stage [s], or None when it is not checked."""
        return self._budgets_s.get(stage)

    def observe(self, obs: Observation, latencies_s: Mapping[str, float], now_ns: int, *,
                refs: EventRefs | None = None) -> list[Finding]:
        """Check each budgeted stage; findings for stages over budget outside a quiet window."""
        out: list[Finding] = []
        for stage, latency in latencies_s.items():
            budget = self._budgets_s.get(stage)
            if budget is None or latency <= budget:
                continue
            win = self._windows.get((stage, obs.vehicle_id))
            if win is not None and now_ns - win.last_event_ns < self._window_ns:
                win.over_since += 1
                win.worst_s = max(win.worst_s, latency)
                continue
            details = {"stage": stage, "latency_ms": round(latency * 1000, 3),
                       "budget_ms": round(budget * 1000, 3), "topic": obs.topic,
                       "window_s": self._window_ns / NS_PER_S}
            if win is not None:
                details["exceeded_since_last_event"] = win.over_since
                details["worst_since_last_event_ms"] = round(win.worst_s * 1000, 3)
            self._windows[(stage, obs.vehicle_id)] = _Window(now_ns)
            out.append(Finding(LATENCY_BUDGET_EXCEEDED, Severity.WARNING, obs.vehicle_id,
                               details=details, refs=refs or obs.refs(), run_id=obs.run_id))
        return out

    def prune(self, now_ns: int, older_than_s: float) -> None:
        """Forget rate-limit windows whose last event is older than this [s]."""
        limit = now_ns - int(older_than_s * NS_PER_S)
        for k in [k for k, w in self._windows.items() if w.last_event_ns < limit]:
            del self._windows[k]
