"""`roadstream bench perception --compare`: a checkpoint and its packages side by side.

Model-level only (no broker): each model as the service loads it, at batch 1 on the given
threads, in interleaved rounds (``perception.runtime_bench.compare_models``), on rendered
640×360 frames decoded as the service decodes them, with the machine and its load.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.runtime_bench import compare_models
from services.bench.machine import machine_info
from services.bench.perception_rig import render_frames
from simulators.library import DEFAULT_SCENARIO


def fp32_peak_gflops_per_core() -> dict[str, Any]:
    """Estimated fp32 peak of one core: FLOPs per cycle from the vector flags × the clock.

    Two FMA units per core are assumed (2 FLOPs × 16 lanes × 2 with AVX-512, × 8 lanes × 2 with
    AVX2 + FMA) and the clock is the one /proc/cpuinfo reports (turbo may run higher). An
    estimate to put achieved figures in proportion, not a measurement.
    """
    flags: set[str] = set()
    mhz = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("cpu MHz") and mhz is None:
                    mhz = float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    if "avx512f" in flags:
        per_cycle, isa = 64, "AVX-512"
    elif {"avx2", "fma"} <= flags:
        per_cycle, isa = 32, "AVX2+FMA"
    else:
        per_cycle, isa = 8, "SSE"
    int8 = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return {"isa": isa, "flop_per_cycle": per_cycle, "clock_mhz": mhz, "int8_extensions": int8,
            "gflops": round(per_cycle * mhz / 1e3, 1) if mhz else None}


def decoded_frames(n: int, scenario: str = DEFAULT_SCENARIO) -> list[np.ndarray]:
    """``n`` rendered 640×360 frames, JPEG-encoded and decoded back to BGR as the service does."""
    out = []
    for jpeg, _ in render_frames(scenario, n, 640, 360):
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError("a rendered frame failed to decode")
        out.append(image)
    return out


def bench_compare(paths: Sequence[Path], *, threads: int, rounds: int, runs: int, frames: int = 16,
                  progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """The comparison as a JSON-ready result."""
    images = decoded_frames(frames)
    rows = compare_models(paths, images, threads=threads, rounds=rounds, runs=runs,
                          progress=progress)
    peak = fp32_peak_gflops_per_core()
    for row in rows:
        row["fraction_of_fp32_peak"] = (round(row["achieved_gflops"] / (peak["gflops"] * threads), 3)
                                        if peak["gflops"] else None)
    return {"benchmark": "perception-compare", "threads": threads, "batch_size": 1,
            "rounds": rounds, "runs_per_round": runs, "frames": frames, "models": rows,
            "fp32_peak_per_core": peak, "load_avg_1m": round(os.getloadavg()[0], 2),
            "machine": machine_info()}


def compare_text(r: dict[str, Any]) -> str:
    """The comparison as a readable table."""
    peak = r["fp32_peak_per_core"]
    lines = [f"batch 1, {r['threads']} thread(s), median of {r['rounds']} rounds x "
             f"{r['runs_per_round']} runs; load {r['load_avg_1m']}; {r['machine']['cpu']}, "
             f"fp32 peak ~{peak['gflops']} GFLOPS/core ({peak['isa']})",
             f"{'model':44s} {'runtime':12s} {'prec':5s} {'frames/s':>9s} {'x':>5s} {'core fps':>9s} "
             f"{'pre+post ms':>11s} {'GFLOPS':>7s} {'mAP50':>6s} {'night':>6s} {'fog':>6s}"]
    for m in r["models"]:
        acc = m["accuracy"] or {}

        def f(v: Any) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        lines.append(f"{m['model_version'][:44]:44s} {m['runtime']:12s} {m['precision']:5s} "
                     f"{m['fps']:9.2f} {m['speedup_vs_first']:5.2f} {m['core_fps']:9.2f} "
                     f"{m['pre_post_ms']:11.2f} {m['achieved_gflops']:7.1f} {f(acc.get('map50')):>6s} "
                     f"{f(acc.get('night')):>6s} {f(acc.get('fog')):>6s}")
    return "\n".join(lines)
