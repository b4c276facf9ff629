"""`roadstream report RUN_DIR`: (re)make a run's report.html from its summary and recording."""

from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.scorecard import SummaryError
from services.cli.common import CommandError, emit
from services.cli.progress import ScenarioProgress, progress_bar
from services.recording.envelope import RecordingError


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `report`."""
    p = sub.add_parser(
        "report", help="write a run's report.html: scorecard, plots, annotated videos",
        description="Write RUN_DIR/report.html from RUN_DIR/summary.json and recording.mcap: "
                    "the scorecard, per-scenario plots (speed, acceleration, steering, TTC, "
                    "latency, events) and an annotated H.264 video per scenario (also written "
                    "to RUN_DIR/videos/). One self-contained file: open it in any browser.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a `roadstream run` directory")
    p.add_argument("--no-video", action="store_true",
                   help="plots only, no videos (much faster)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Make the report of one run directory."""
    # Imported here so that every other command works even without the plotting stack.
    from services.report import ReportInputError, write_report

    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise ReportInputError(f"{run_dir}: no such run directory")
    with progress_bar(f"report {run_dir}") as bar:
        try:
            result = write_report(run_dir, video=not args.no_video,
                                  progress=ScenarioProgress(bar))
        except (RecordingError, SummaryError) as exc:  # each names its file
            raise CommandError(str(exc)) from None
    out = {"report": str(result.path), "plots": len(result.plots), "videos": result.videos,
           "notes": result.notes}
    emit(out, as_json=args.json,
         text=f"written: {result.path} ({len(result.plots)} plots, {len(result.videos)} videos)"
         + "".join(f"\nnote: {n}" for n in result.notes))
    return 0
