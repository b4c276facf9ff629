"""A run's collision-risk events, replayed from its perception results under two rules.

The monitor's collision-risk rule (`evaluation.safety.RiskTracker`) runs over a run's
``perception.objects`` twice: once as the monitor runs it (tracks on a collision course) and
once counting every closing track (an unbounded path). Per scenario of the run's summary it
counts the warning and critical rises of each. Use it to see what a change of the rule or of
its thresholds does to a run's events without driving it again; ``python -m
services.monitor.risk_replay RUN_DIR`` reads a run directory and prints the result.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from evaluation.safety import SEVERITY, RiskRule, RiskTracker
from evaluation.scorecard import RunSummary
from services.messages import PerceptionObjects

RULES = ("every_closing_track", "collision_course")
_SEVERITIES = ("warning", "critical")


def replay(summary: RunSummary, objects: Iterable[tuple[str, PerceptionObjects]],
           rule: RiskRule | None = None) -> list[dict[str, Any]]:
    """Per scorecard row: ``{"name", rule: {"warning": n, "critical": n}}`` for each rule.

    ``objects`` are the run's perception results in recorded order, each with its Kafka key
    (``vehicle_id/camera_id``); ``rule`` gives the thresholds (the monitor's defaults when
    None). Row i is the run's scenario ``<run_id>-<i:02d>``, as the main job names them.
    """
    rule = rule or RiskRule()
    counts: dict[str, dict[str, Counter[str]]] = {name: {} for name in RULES}
    trackers = {"every_closing_track": RiskTracker(replace(rule, half_width_m=math.inf)),
                "collision_course": RiskTracker(rule)}
    for key, po in objects:
        for name, tracker in trackers.items():
            for _, level in tracker.update(key, po.objects, po.stamp_ns):
                counts[name].setdefault(po.run_id, Counter())[SEVERITY[level].value] += 1
    rows = []
    for i, row in enumerate(summary.scenarios):
        rid = f"{summary.run_id}-{i:02d}"
        rows.append({"name": row.name, **{
            name: {sev: counts[name].get(rid, Counter())[sev] for sev in _SEVERITIES}
            for name in RULES}})
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The replay as a Markdown table, totals last."""
    lines = ["| scenario | every closing track: warning / critical "
             "| on a collision course: warning / critical |", "|---|---|---|"]
    totals = {name: Counter[str]() for name in RULES}
    for row in rows:
        for name in RULES:
            totals[name].update(row[name])
        lines.append(f"| {row['name']} | " + " | ".join(
            f"{row[name]['warning']} / {row[name]['critical']}" for name in RULES) + " |")
    lines.append("| **all** | " + " | ".join(
        f"{totals[name]['warning']} / {totals[name]['critical']}" for name in RULES) + " |")
    return "\n".join(lines)
