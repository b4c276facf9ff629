"""`roadstream run`: the main job — every service plus the simulator in closed loop."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluation.scorecard import RunSummary
from services.cli.common import CommandError, emit, run_async, settings_from, write_json
from services.cli.progress import ScenarioProgress, progress_bar
from services.mainjob import (
    EMBEDDED_SEGMENT_SCENARIOS,
    SMALL_MACHINE_CAMERA_HZ,
    RunOptions,
    default_camera_rate,
    default_perception_weights,
    run_library,
)
from services.perception.settings import PerceptionSettings
from simulators.library import load_scenario, scenario_names


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `run`."""
    p = sub.add_parser(
        "run", help="main job: broker + every service + simulator in closed loop, scorecard",
        description="The main job. Starts the embedded broker unless ROADSTREAM_BOOTSTRAP_SERVERS "
                    "is set, then perception, planning with the command gate, the safety "
                    "monitor and the audit trail, and drives each scenario in closed loop "
                    "through Kafka (simulator → perception → planning → gate → simulator). "
                    "Prints a scorecard and writes runs/<id>/summary.json, recording.mcap and "
                    "audit.db.")
    p.add_argument("--scenarios", nargs="+", default=None, metavar="NAME",
                   help="scenario names or files (default: the whole library)")
    p.add_argument("--clock", choices=["lockstep", "realtime"], default="lockstep",
                   help="lockstep (default, deterministic) or realtime (on a machine without "
                        "a GPU, perception then serves the shipped int8 package of the "
                        "checkpoint unless ROADSTREAM_PERCEPTION_WEIGHTS says otherwise)")
    p.add_argument("--speed", type=float, default=1.0, help="realtime speed factor (1.0)")
    p.add_argument("--camera-hz", type=float, default=None, metavar="HZ",
                   help="render the cameras at most HZ times a second; state, planning and "
                        "control stay at the scenario's rate (default: the scenarios' 20 Hz, "
                        f"but {SMALL_MACHINE_CAMERA_HZ:g} Hz in real time on fewer than 4 cores)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="cut each scenario to S seconds (smoke runs)")
    p.add_argument("--segment", type=int, default=EMBEDDED_SEGMENT_SCENARIOS, metavar="N",
                   help="on the embedded broker, restart it (and the services) every N scenarios "
                        f"({EMBEDDED_SEGMENT_SCENARIOS}): it keeps every message in memory and "
                        "slows as that grows; still one run, one recording and one report")
    p.add_argument("--no-record", action="store_true", help="do not write recording.mcap")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_run)


def check_weights(weights: Path) -> None:
    """CommandError unless ``weights`` is a checkpoint file or a model package folder."""
    from perception.packages import MANIFEST  # torch is imported only when running

    if not (weights.is_file() or (weights / MANIFEST).is_file()):
        raise CommandError(f"no detector weights at {weights}; train them with `roadstream train` "
                           "or set ROADSTREAM_PERCEPTION_WEIGHTS (a checkpoint or a package folder)")


def cmd_run(args: argparse.Namespace) -> int:
    """Run the main job over the chosen scenarios."""
    settings = settings_from(args)
    names = args.scenarios or scenario_names()
    for name in names:
        load_scenario(name)  # fail fast on a bad name or file
    configured = PerceptionSettings()
    weights = default_perception_weights(args.clock, settings, configured)
    check_weights(weights or configured.weights)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    out_dir = settings.runs_dir / run_id
    camera_hz = args.camera_hz if args.camera_hz is not None else default_camera_rate(args.clock)
    if weights is not None:
        print(f"run {run_id}: real time on a CPU: perception serves the int8 package "
              f"{weights.name} (ROADSTREAM_PERCEPTION_WEIGHTS chooses another)",
              file=sys.stderr, flush=True)
    try:  # the flags map one to one onto the options, whose errors name them
        options = RunOptions(scenarios=tuple(names), run_id=run_id, out_dir=out_dir,
                             clock=args.clock, speed=args.speed, record=not args.no_record,
                             duration_s=args.duration, segment_scenarios=args.segment,
                             camera_rate_hz=camera_hz, perception_weights=weights)
    except ValueError as exc:
        raise CommandError(f"invalid run options (see `roadstream run --help`): {exc}") from None
    rate = f", camera {camera_hz:g} Hz" if camera_hz else ""

    def on_broker(bootstrap: str) -> None:
        kind = "embedded broker" if settings.embedded else "Kafka"
        print(f"run {run_id}: {kind} at {bootstrap}", file=sys.stderr, flush=True)

    async def go() -> RunSummary:
        with progress_bar(f"run {run_id}: {len(names)} scenario(s), {args.clock}{rate}") as bar:
            return await run_library(settings, dataclasses.replace(
                options, progress=ScenarioProgress(bar), on_broker=on_broker))

    summary = run_async(go())
    data = summary.as_json()
    write_json(out_dir / "summary.json", data)
    if args.json:
        emit(data, as_json=True, text="")
    else:
        print_scorecard(summary)
        emit(data, as_json=False, text=f"written: {out_dir}/ (summary.json"
             + (", recording.mcap" if not args.no_record else "") + ", audit.db)")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_scorecard(summary: RunSummary) -> None:
    """The scorecard as a table on stdout."""
    rate = summary.camera_rate_hz
    table = Table(title=f"run {summary.run_id} ({summary.clock}"
                        + (f", camera {rate:g} Hz)" if rate else ")"))
    for col in ("scenario", "collision", "impact m/s", "min TTC s", "min dist m", "progress",
                "max decel", "max jerk", "lat dev m", "e2e p50/p99 ms", "wall s", "score"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for r in summary.scenarios:
        lat = r.latency_ms
        table.add_row(r.name, "YES" if r.collision else "no",
                      _fmt(r.impact_speed_mps if r.collision else None, ".1f"),
                      _fmt(r.min_ttc_s, ".2f"), _fmt(r.min_distance_m, ".1f"),
                      f"{r.progress:.0%}", _fmt(r.max_decel_mps2, ".1f"),
                      _fmt(r.max_jerk_mps3, ".1f"), _fmt(r.max_lateral_deviation_m, ".2f"),
                      f"{_fmt(lat.p50, '.0f')}/{_fmt(lat.p99, '.0f')}",
                      _fmt(r.wall_s, ".0f"), f"{r.score:.0f}")
    t = summary.totals
    console = Console(width=max(Console().width, 150))
    console.print(table)
    console.print(f"{t.scenarios} scenarios, {t.collisions} collisions, "
                    f"mean driving score {t.mean_score}")
