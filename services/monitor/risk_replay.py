"""A run's collision-risk events, replayed from its recording under two rules.

``python -m services.monitor.risk_replay RUN_DIR [--json]`` reads ``perception.objects`` from
``RUN_DIR/recording.mcap`` and runs the monitor's `CollisionRiskCheck` over it twice, with the
monitor's settings (``ROADSTREAM_MONITOR_*``): once as the monitor runs it (tracks on a
collision course) and once counting every closing track (an unbounded path). It prints, per
scenario of ``RUN_DIR/summary.json``, the warning and critical events of each. Use it to see
what a change of the rule or of its thresholds does to a run's events without driving it
again; the first column is what a monitor of the every-closing-track kind raised live.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.messages import PERCEPTION_OBJECTS, MessageError, PerceptionObjects
from services.monitor.findings import Observation
from services.monitor.risk import CollisionRiskCheck
from services.monitor.settings import MonitorSettings
from services.recording.envelope import KafkaRecord, RecordingError
from services.recording.mcap_io import read_recording

RULES = ("every_closing_track", "collision_course")


def replay(summary: dict[str, Any], records: Sequence[KafkaRecord],
           options: MonitorSettings | None = None) -> list[dict[str, Any]]:
    """Per scorecard row: ``{"name", rule: {"warning": n, "critical": n}}`` for each rule.

    Row i is the run's scenario ``<run_id>-<i:02d>``, as the main job names them.
    """
    options = options or MonitorSettings()
    counts: dict[str, dict[str, Counter[str]]] = {rule: {} for rule in RULES}
    checks = {rule: CollisionRiskCheck(
        warning_s=options.ttc_warning_s, critical_s=options.ttc_critical_s,
        forget_s=options.track_forget_s,
        half_width_m=math.inf if rule == "every_closing_track" else options.risk_path_half_width_m)
        for rule in RULES}
    for rec in records:
        if rec.topic != PERCEPTION_OBJECTS.name:
            continue
        try:
            objects = PerceptionObjects.decode(rec.value)
        except MessageError:
            continue  # it went to the DLQ in the run; the monitor raised no risk from it
        key = rec.key.decode(errors="replace") if rec.key else ""
        obs = Observation(rec.topic, key, objects.vehicle_id, objects.stamp_ns, 0, 0,
                          objects.run_id)
        for rule, check in checks.items():
            for finding in check.observe(obs, objects, objects.stamp_ns):
                counts[rule].setdefault(objects.run_id, Counter())[finding.severity.value] += 1
    run_id = str(summary.get("run_id", ""))
    rows = []
    for i, row in enumerate(summary.get("scenarios", [])):
        rid = f"{run_id}-{i:02d}"
        rows.append({"name": row.get("name", rid), **{
            rule: {sev: counts[rule].get(rid, Counter())[sev] for sev in ("warning", "critical")}
            for rule in RULES}})
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The replay as a Markdown table, totals last."""
    lines = ["| scenario | every closing track: warning / critical "
             "| on a collision course: warning / critical |", "|---|---|---|"]
    totals = {rule: Counter[str]() for rule in RULES}
    for row in rows:
        for rule in RULES:
            totals[rule].update(row[rule])
        lines.append(f"| {row['name']} | " + " | ".join(
            f"{row[rule]['warning']} / {row[rule]['critical']}" for rule in RULES) + " |")
    lines.append("| **all** | " + " | ".join(
        f"{totals[rule]['warning']} / {totals[rule]['critical']}" for rule in RULES) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.monitor.risk_replay",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("run_dir", type=Path, help="a run directory of `roadstream run`")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    summary_path, recording = args.run_dir / "summary.json", args.run_dir / "recording.mcap"
    for path in (summary_path, recording):
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        print(f"{summary_path}: not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        records = read_recording(recording, [PERCEPTION_OBJECTS.name])
    except RecordingError as exc:  # names the file and what is wrong with it
        print(str(exc), file=sys.stderr)
        return 2
    rows = replay(summary, records)
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
