"""A checkpoint and its packages timed side by side: frames/s end to end and of the core alone.

``compare_models`` loads each model as the service does (``load_detector``: a checkpoint in
torch eager, a package in its runtime, all through the same pre/post-processing) and times, in
rounds that visit every model in turn — so a change of load on a shared machine hits them all
alike — ``Detector.detect`` on one decoded frame (colour conversion, resize/normalise, core,
decode + NMS, copy back) and ``Runtime.run`` on one pre-processed frame (the core only).
Achieved GFLOPS = the core's FLOPs per frame (``core_gflop``, counted by
``torch.utils.flop_counter`` on the torch core; an int8 package does the same operations, so
for it the figure is GOPS) × core frames/s.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from perception.bench import time_detect
from perception.checkpoint import load_detector
from perception.detector import Detector
from perception.packages import file_sha256, is_package, read_manifest
from perception.runtimes import FcosCore, SplitModel

Clock = Callable[[], float]


def core_gflop(model: SplitModel, input_hw: tuple[int, int]) -> float:
    """GFLOP of one frame through ``model``'s core (FMA = 2 FLOPs), counted on torch modules."""
    core = FcosCore(model.model).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        core(torch.zeros(1, 3, *input_hw))
    return float(counter.get_total_flops()) / 1e9


def time_core(detector: Detector, frame_bgr: np.ndarray, *, runs: int, warmup: int = 1,
              clock: Clock = time.perf_counter) -> list[float]:
    """Seconds of each of ``runs`` core-only calls on one pre-processed frame."""
    model = detector.model
    if not isinstance(model, SplitModel):
        raise ValueError("core timing needs a model split around a runtime (an FCOS detector)")
    rgb = torch.from_numpy(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
    with torch.inference_mode():
        images, _ = model.model.transform([rgb.float().div_(255.0)])
        x = images.tensors
        for _ in range(warmup):
            model.runtime.run(x)
        times = []
        for _ in range(runs):
            start = clock()
            model.runtime.run(x)
            times.append(clock() - start)
    return times


def accuracy_of(path: Path, packages: Sequence[Path]) -> dict[str, Any] | None:
    """Held-out mAP@0.5 (overall, night, fog) of ``path`` as its package manifest records it;
    for a checkpoint, its figures on the same split from a package exported from it."""
    def pick(ev: dict[str, Any], source: str) -> dict[str, Any]:
        cond = ev.get("per_condition") or {}
        return {"map50": ev.get("map50"), "night": cond.get("night"), "fog": cond.get("fog"),
                "data": source}

    if is_package(path):
        ev = read_manifest(path).data.get("evaluation")
        return pick(ev, ev["data"]) if ev else None
    digest = file_sha256(path)
    for package in packages:
        data = read_manifest(package).data
        if data["source"]["sha256"] == digest and data.get("evaluation"):
            return pick(data["evaluation"]["source"], data["evaluation"]["data"])
    return None


def compare_models(paths: Sequence[str | Path], frames: Sequence[np.ndarray], *, threads: int = 1,
                   rounds: int = 5, runs: int = 5, clock: Clock = time.perf_counter,
                   progress: Callable[[str, float], None] | None = None) -> list[dict[str, Any]]:
    """Time every model of ``paths`` at batch 1 on ``threads`` threads; one dict per model.

    ``frames``: decoded BGR frames, cycled. Each of ``rounds`` rounds times ``runs`` calls of
    each model end to end and ``runs`` of its core; figures are medians over all rounds, with
    each round's median kept (``*_rounds``) to show the spread.
    """
    if not paths or not frames:
        raise ValueError("compare_models needs at least one model and one frame")
    report = progress or (lambda stage, fraction: None)
    models = [Path(p) for p in paths]
    detectors = [load_detector(p, device="cpu", num_threads=threads) for p in models]
    torch.set_num_threads(threads)  # the last load set it too; pre/post-processing runs in torch
    e2e: list[list[list[float]]] = [[] for _ in models]
    core: list[list[list[float]]] = [[] for _ in models]
    for r in range(rounds):
        report("models", r / rounds)
        for i, detector in enumerate(detectors):
            e2e[i].append(time_detect(detector, frames, batch_size=1, warmup=1, runs=runs, clock=clock))
            core[i].append(time_core(detector, frames[r % len(frames)], runs=runs, clock=clock))
    report("models", 1.0)
    packages = [p for p in models if is_package(p)]
    out: list[dict[str, Any]] = []
    for i, (path, detector) in enumerate(zip(models, detectors, strict=True)):
        model = detector.model
        assert isinstance(model, SplitModel)
        h, w = model.model.transform.fixed_size[1], model.model.transform.fixed_size[0]
        gflop = core_gflop(model, (-(-h // 32) * 32, -(-w // 32) * 32))
        e2e_s = statistics.median(t for run in e2e[i] for t in run)
        core_s = statistics.median(t for run in core[i] for t in run)
        manifest = read_manifest(path).data if is_package(path) else None
        out.append({
            "model": str(path), "model_version": detector.model_version,
            "runtime": model.runtime.name,
            "precision": manifest["model"]["precision"] if manifest else "fp32",
            "fps": round(1.0 / e2e_s, 2), "ms_per_frame": round(1e3 * e2e_s, 2),
            "fps_rounds": [round(1.0 / statistics.median(run), 2) for run in e2e[i]],
            "core_fps": round(1.0 / core_s, 2), "core_ms": round(1e3 * core_s, 2),
            "core_fps_rounds": [round(1.0 / statistics.median(run), 2) for run in core[i]],
            "pre_post_ms": round(1e3 * (e2e_s - core_s), 2),
            "gflop_per_frame": round(gflop, 3), "achieved_gflops": round(gflop / core_s, 1),
            "accuracy": accuracy_of(path, packages),
        })
    base = out[0]["fps"]
    for row in out:
        row["speedup_vs_first"] = round(row["fps"] / base, 2)
    return out
