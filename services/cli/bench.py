"""`roadstream bench …`: benchmarks (figures recorded in docs/benchmarks.md)."""

from __future__ import annotations

import argparse
from typing import Any

from planning.bench import bench_planner
from services.bench.machine import machine_info
from services.bench.sim import bench_sim
from services.broker.embedded import kafka
from services.cli.common import emit, run_async, settings_from
from simulators.library import DEFAULT_SCENARIO


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x360") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise argparse.ArgumentTypeError(f"{text!r} is outside 16x16 … 7680x4320")
    return w, h


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bench` and its benchmarks."""
    p = sub.add_parser("bench", help="benchmarks (figures for docs/benchmarks.md)",
                       description="Run a benchmark; every one reports the median of several "
                                   "runs and the machine it ran on.")
    bsub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    s = bsub.add_parser("sim", help="simulator: render + JPEG encode + publish fps on one core",
                        description="Frames per second of render, JPEG encode and publish to "
                                    "camera.frames together, on one core, per resolution.")
    s.add_argument("--scenario", default=DEFAULT_SCENARIO, help="scenario to render")
    s.add_argument("--resolutions", nargs="+", type=_resolution,
                   default=[(640, 360), (1280, 720)], metavar="WxH",
                   help="resolutions (default 640x360 1280x720)")
    s.add_argument("--frames", type=int, default=200, help="frames per run (200)")
    s.add_argument("--repeats", type=int, default=5, help="runs per resolution; median (5)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_bench_sim)

    pl = bsub.add_parser("planner", help="planner: p50/p99 planning time",
                         description="Planning time of the sampling planner on a busy "
                                     "three-lane scene: median over repeats of p50 and p99.")
    pl.add_argument("--candidates", type=int, default=2000, help="candidates (2000)")
    pl.add_argument("--obstacles", type=int, default=20, help="obstacles (20)")
    pl.add_argument("--runs", type=int, default=200, help="plans per repeat (200)")
    pl.add_argument("--repeats", type=int, default=5, help="repeats; median (5)")
    pl.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    pl.add_argument("--device", default="cpu", help="cpu or cuda")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(func=cmd_bench_planner)


def cmd_bench_planner(args: argparse.Namespace) -> int:
    """Run the planner benchmark."""
    result = bench_planner(args.candidates, args.obstacles, args.runs, args.device,
                           threads=args.threads, repeats=args.repeats)
    result = {"benchmark": "planner", **result, "machine": machine_info()}
    emit(result, as_json=args.json,
         text=f"planner, {result['n_candidates']} candidates, {result['n_obstacles']} obstacles, "
              f"{result['device']}, {result['threads']} threads: p50 {result['p50_ms']:.2f} ms, "
              f"p99 {result['p99_ms']:.2f} ms (median of {result['repeats']} x "
              f"{result['runs']} plans)")
    return 0


def cmd_bench_sim(args: argparse.Namespace) -> int:
    """Run the simulator benchmark."""
    settings = settings_from(args)

    async def go() -> dict[str, Any]:
        async with kafka(settings) as bootstrap:
            return await bench_sim(settings, bootstrap, scenario=args.scenario,
                                   resolutions=args.resolutions, frames=args.frames,
                                   repeats=args.repeats)

    result = run_async(go())
    result["machine"] = machine_info()
    text = "\n".join(f"{r['width']}x{r['height']}: {r['fps_median']:.1f} frames/s "
                     f"(render + encode + publish, 1 core; runs {r['fps_runs']}, "
                     f"{r['jpeg_kib_mean']} KiB/frame)" for r in result["results"])
    emit(result, as_json=args.json, text=text + f"\nmachine: {result['machine']['cpu']}")
    return 0
