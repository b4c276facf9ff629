"""`roadstream bench …`: benchmarks (figures recorded in docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from planning.bench import bench_planner
from services.bench.fuzz_run import FuzzOptions, run_fuzz
from services.bench.machine import machine_info
from services.bench.perception import BenchOptions, bench_perception
from services.bench.sim import bench_sim
from services.broker.embedded import kafka
from services.cli.common import emit, run_async, settings_from
from services.cli.progress import ScenarioProgress, progress_bar
from simulators.library import DEFAULT_SCENARIO


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value
    return parse


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

    pe = bsub.add_parser(
        "perception", help="perception: bare model vs pipeline fps, efficiency, latency at 70%% load",
        description="In one run: decode rate, bare-model fps at batch 1, 2, 4, 8, one broker hop, "
                    "the pipeline's fps through the broker (the real service in its own process "
                    "draining a backlog), efficiency = pipeline fps / bare fps at the batch size "
                    "it used, and end-to-end latency p50/p99 at 70 % of the pipeline's rate.")
    pe.add_argument("--weights", type=Path, default=None,
                    help="detector checkpoint or model package folder (default: the service's, "
                         "ROADSTREAM_PERCEPTION_WEIGHTS)")
    pe.add_argument("--compare", nargs="+", type=Path, default=None, metavar="PATH",
                    help="instead of the pipeline steps: time these checkpoints and packages side "
                         "by side at batch 1 (frames/s end to end and of the core, GFLOPS, the "
                         "packages' held-out mAP); --threads default 1, --runs = rounds")
    pe.add_argument("--threads", type=_positive(int), default=None,
                    help="torch threads (default: as the service: ROADSTREAM_TORCH_THREADS, else the "
                         "usable cores but one)")
    pe.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                    help="model device (default: ROADSTREAM_DEVICE)")
    pe.add_argument("--duration", type=_positive(float), default=15.0,
                    help="pipeline window and paced-load time, each [s] (15)")
    pe.add_argument("--runs", type=_positive(int), default=5,
                    help="timed runs of decode and of each batch size (5)")
    pe.add_argument("--json", action="store_true", help="machine-readable output")
    pe.set_defaults(func=cmd_bench_perception)

    fz = bsub.add_parser(
        "fuzz", help="perception under hostile frames: crashes, dead letters, memory",
        description="Produce seeded hostile camera frames (random bytes, truncated JPEG and "
                    "PNG, decompression bombs, lying sizes, oversize, bad and missing headers, "
                    "absurd seq, stamps and calibration) interleaved with valid ones into the "
                    "real perception service in its own process; report per kind what was "
                    "served and dead-lettered with its own error, crashes, and peak vs idle RSS.")
    fz.add_argument("--frames", type=_positive(int), default=50_000, help="frames (50000)")
    fz.add_argument("--seed", type=int, default=20, help="random seed (20)")
    fz.add_argument("--valid-fraction", type=_fraction, default=0.03,
                    help="share of valid frames, 0 … 1 (0.03)")
    fz.add_argument("--threads", type=_positive(int), default=None,
                    help="torch threads (default: as the service)")
    fz.add_argument("--fetch-wait-ms", type=_positive(int), default=None,
                    help="the service's fetch wait [ms] (default: 100 on the embedded broker, "
                         "which answers a 5 ms fetch with nothing once its log is large; else "
                         "ROADSTREAM_FETCH_WAIT_MS)")
    fz.add_argument("--json", action="store_true", help="machine-readable output")
    fz.set_defaults(func=cmd_bench_fuzz)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not within 0 … 1")
    return value


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


def _stage_progress(name: str = "bench perception") -> Any:
    """A progress callback: bars on a terminal, one line per stage otherwise."""
    if sys.stderr.isatty():
        return None
    seen: set[str] = set()

    def report(stage: str, fraction: float) -> None:
        if stage not in seen:
            seen.add(stage)
            sys.stderr.write(f"{name}: {stage} …\n")
            sys.stderr.flush()

    return report


def _by_batch(values: dict[Any, float], batch: int) -> float:
    return values[batch] if batch in values else values[str(batch)]  # str keys once read from JSON


def perception_text(r: dict[str, Any]) -> str:
    """The perception benchmark as a readable table."""
    s, goals, eff_batch = r["settings"], r["goals"], r["efficiency_batch_size"]
    rows = [(f"decode ({'GPU' if 'cuda' in s['device'] else 'CPU'}, JPEG {s['width']}x{s['height']})",
             f"{r['decode_fps']:.0f} frames/s", f"{r['floor_parts_ms']['decode']:.2f} ms/frame")]
    for b, fps in r["bare_model_fps"].items():
        rows.append((f"bare model, batch {b}", f"{fps:.2f} frames/s", f"{1e3 * int(b) / fps:.0f} ms/batch"))
    rows += [
        (f"broker hop (median of {s['hops']})", f"{r['hop_ms']:.2f} ms", ""),
        ("single-frame floor", f"{r['floor_ms']:.1f} ms", "decode + model at batch 1 + 2 hops"),
        (f"pipeline ({r['backlog_frames']} frames queued)", f"{r['pipeline_fps']:.2f} frames/s",
         f"mean batch {r['pipeline_batch_mean']:.2f}, {r['pipeline_frames']} frames in "
         f"{r['pipeline_window_s']:.1f} s"),
        ("pipeline time per batch", f"{r['pipeline_batch_period_ms']:.0f} ms",
         f"of which model {r['pipeline_infer_ms_mean']:.0f} ms (bare, batch {eff_batch}: "
         f"{_by_batch(r['bare_model_ms_per_batch'], eff_batch):.0f} ms)"),
        ("efficiency", f"{r['efficiency']:.3f}",
         f"vs bare batch {r['efficiency_batch_size']}; goal {goals['efficiency']['goal']}: "
         f"{'met' if goals['efficiency']['met'] else 'NOT met'}"),
        (f"latency at {s['load']:.0%} load ({r['offered_fps']:.2f} frames/s)",
         f"p50 {r['latency_ms']['p50']:.0f} ms", f"p99 {r['latency_ms']['p99']:.0f} ms "
         f"(n {r['latency_ms']['n']}); goal p99 <= {goals['p99_latency']['limit_ms']:.0f} ms: "
         f"{'met' if goals['p99_latency']['met'] else 'NOT met'}"),
    ]
    width = max(len(a) for a, _, _ in rows)
    head = (f"perception: {s['model_version']} on {s['device']}, {s['torch_threads']} torch threads, "
            f"{s['broker']} broker, max batch {s['max_batch_size']}")
    body = "\n".join(f"  {a:<{width}}  {b:>16}  {c}" for a, b, c in rows)
    return f"{head}\n{body}\nmachine: {r['machine']['cpu']}, load average {r['load_avg_1m']}"


def cmd_bench_perception(args: argparse.Namespace) -> int:
    """Run the perception benchmark (or, with --compare, the model comparison)."""
    if args.compare:
        from services.bench.perception_compare import bench_compare, compare_text

        result = bench_compare(args.compare, threads=args.threads or 1, rounds=args.runs, runs=5,
                               progress=_stage_progress("bench perception --compare"))
        emit(result, as_json=args.json, text=compare_text(result))
        return 0
    settings = settings_from(args)
    if settings.embedded:  # the embedded broker is plaintext on loopback
        settings = settings.model_copy(update={"security_protocol": "PLAINTEXT"})
    opts = BenchOptions(weights=args.weights, device=args.device, threads=args.threads,
                        duration_s=args.duration, runs=args.runs)

    async def go() -> dict[str, Any]:
        async with kafka(settings) as bootstrap:
            plain = _stage_progress()
            if plain is not None:
                return await bench_perception(settings, bootstrap, opts, plain)
            with progress_bar("roadstream bench perception") as bar:
                return await bench_perception(settings, bootstrap, opts, ScenarioProgress(bar))

    result = run_async(go())
    emit(result, as_json=args.json, text="" if args.json else perception_text(result))
    return 0


def fuzz_text(r: dict[str, Any]) -> str:
    """The fuzz benchmark as a readable report."""
    rss, crashes = r["rss"], r["crashes"]
    lines = [f"fuzz: {r['frames']} frames (seed {r['seed']}) in {r['wall_s']:.0f} s "
             f"({r['frames_per_s']} frames/s), {r['produced_mib']} MiB; every frame accounted: "
             f"{'yes' if r['complete'] else 'NO'}",
             f"  valid: {r['valid_served']} of {r['valid_sent']} served; bad: "
             f"{r['bad_dead_lettered_own_error']} of {r['bad_sent']} dead-lettered with their own error",
             f"  wrong: missing {r['missing']}, duplicates {r['duplicate']}, bad served "
             f"{r['served_bad']}, valid rejected {r['rejected_valid']}, wrong error {r['wrong_error']}",
             f"  crashes: service alive {crashes['service_alive']}, tracebacks logged "
             f"{crashes['tracebacks_logged']}",
             f"  RSS: idle {rss['idle_mib']} MiB, peak {rss['peak_mib']} MiB "
             f"({rss['peak_over_idle']}x, {rss['method']})"]
    width = max(len(k) for k in r["kinds"])
    for kind, c in r["kinds"].items():
        lines.append(f"  {kind:<{width}}  sent {c['sent']:>6}  served {c.get('served', 0):>6}  "
                     f"dead-lettered {c.get('dead_lettered', 0):>6}  ok {c.get('ok', 0):>6}")
    for w in r["wrong"]:
        lines.append(f"  ! {w['kind']} {w['where']}: {w['verdict']} {w['dead_letters'][:1]}")
    return "\n".join(lines) + f"\nmachine: {r['machine']['cpu']}, load average {r['load_avg_1m']}"


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    """Run the fuzz benchmark; exit status 1 when any frame's fate was wrong or the service died."""
    settings = settings_from(args)
    if settings.embedded:  # the embedded broker is plaintext on loopback
        # Finding a fetch's offset in its in-memory log takes longer than 5 ms once tens of
        # thousands of frames are stored; a fetch whose wait runs out first comes back empty,
        # every time, and the service would sit idle before its backlog (docs/benchmarks.md).
        settings = settings.model_copy(update={"security_protocol": "PLAINTEXT",
                                               "fetch_wait_ms": args.fetch_wait_ms or 100})
    elif args.fetch_wait_ms is not None:
        settings = settings.model_copy(update={"fetch_wait_ms": args.fetch_wait_ms})
    opts = FuzzOptions(frames=args.frames, seed=args.seed, valid_fraction=args.valid_fraction,
                       threads=args.threads)

    async def go() -> dict[str, Any]:
        async with kafka(settings) as bootstrap:
            plain = _stage_progress("bench fuzz")
            if plain is not None:
                return await run_fuzz(settings, bootstrap, opts, plain)
            with progress_bar("roadstream bench fuzz") as bar:
                return await run_fuzz(settings, bootstrap, opts, ScenarioProgress(bar))

    result = run_async(go())
    emit(result, as_json=args.json, text="" if args.json else fuzz_text(result))
    clean = (result["complete"] and result["ok"] == result["frames"]
             and result["crashes"]["service_alive"] and not result["crashes"]["tracebacks_logged"])
    return 0 if clean else 1
