"""`roadstream bench …`: benchmarks (figures recorded in docs/benchmarks.md)."""

from __future__ import annotations

import argparse
from typing import Any

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
