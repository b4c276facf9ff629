"""A run's collision-risk events, replayed from its recording under two rules.

``python -m services.monitor.risk_replay RUN_DIR [--json]`` reads ``perception.objects`` from
``RUN_DIR/recording.mcap`` and replays the monitor's collision-risk rule over it twice, with the
monitor's settings (``ROADSTREAM_MONITOR_*``): once as the monitor runs it (tracks on a
collision course) and once counting every closing track (an unbounded path). It prints, per
scenario of ``RUN_DIR/summary.json``, the warning and critical events of each. Use it to see
what a change of the rule or of its thresholds does to a run's events without driving it
again; the first column is what a monitor of the every-closing-track kind raised live. The
replay itself is `evaluation.risk_replay`; this module reads the run directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from evaluation.risk_replay import markdown, replay
from evaluation.safety import RiskRule
from evaluation.scorecard import SummaryError, read_summary
from services.messages import PERCEPTION_OBJECTS, MessageError, PerceptionObjects
from services.monitor.settings import MonitorSettings
from services.recording.envelope import KafkaRecord, RecordingError
from services.recording.mcap_io import read_recording


def recorded_objects(records: Iterable[KafkaRecord]) -> Iterator[tuple[str, PerceptionObjects]]:
    """The ``perception.objects`` payloads among ``records`` with their keys, in order.

    A record that does not decode is skipped: it went to the DLQ in the run, and the monitor
    raised no risk from it.
    """
    for rec in records:
        if rec.topic != PERCEPTION_OBJECTS.name:
            continue
        try:
            objects = PerceptionObjects.decode(rec.value)
        except MessageError:
            continue
        yield (rec.key.decode(errors="replace") if rec.key else ""), objects


def monitor_rule(options: MonitorSettings | None = None) -> RiskRule:
    """The collision-risk thresholds of the monitor's settings."""
    options = options or MonitorSettings()
    return RiskRule(warning_s=options.ttc_warning_s, critical_s=options.ttc_critical_s,
                    forget_s=options.track_forget_s, half_width_m=options.risk_path_half_width_m)


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 with one line naming a missing or unreadable file."""
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
        summary = read_summary(summary_path)
        records = read_recording(recording, [PERCEPTION_OBJECTS.name])
    except (SummaryError, RecordingError) as exc:  # each names the file and what is wrong
        print(str(exc), file=sys.stderr)
        return 2
    rows = replay(summary, recorded_objects(records), monitor_rule())
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
