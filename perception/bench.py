"""Detector throughput benchmark (images per second), median of several timed runs.

Run: ``python -m perception.bench --arch ssdlite fcos_mbv3 --batch 1 4 --threads 2``.
Models are randomly initialised (seed 0) with BatchNorm statistics calibrated on one random
batch, so post-processing sees untrained score distributions: the figure measures the network
and the pipeline around it, not a trained model's NMS load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from perception.architectures import ARCHS, DEFAULT_IMAGE_SIZE, DetectorSpec, build_from_spec
from perception.detector import Detector


@dataclass(frozen=True)
class BenchResult:
    """One benchmark point; ``img_per_s`` is the median over ``runs`` timed batches."""

    arch: str
    batch_size: int
    input_hw: tuple[int, int]
    image_size: tuple[int, int]
    device: str
    num_threads: int
    runs: int
    img_per_s: float
    ms_per_batch: float
    best_img_per_s: float  # fastest single batch: the least disturbed by other work
    params_m: float
    load_avg_1m: float  # machine load when the run ended: other work skews CPU figures badly


def calibrate_batchnorm(model: nn.Module, images: list[torch.Tensor]) -> None:
    """Set BatchNorm running statistics from one batch (≥ 2 images), leaving the model in eval.

    An untrained model's BatchNorm layers hold mean 0 / variance 1, so in eval mode its random
    activations shrink layer after layer into denormal floats, which x86 computes tens of times
    slower and unevenly across threads. A trained model never runs there; normalising with real
    batch statistics gives timings representative of one.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.train()
        m.momentum = 1.0  # the running statistics become this batch's
    with torch.no_grad():
        model(images)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
        m.eval()


def time_detect(
    detector: Detector,
    frames: Sequence[np.ndarray | torch.Tensor],
    *,
    batch_size: int,
    warmup: int = 2,
    runs: int = 7,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds of each of ``runs`` timed ``detector.detect`` calls on ``batch_size`` frames.

    Batches cycle through ``frames`` (decoded BGR arrays or RGB uint8 tensors, as
    ``Detector.detect`` takes them), so a set larger than one batch shows the model different
    images; ``warmup`` batches run first, untimed. On CUDA the device is synchronised around
    each timed batch.
    """
    if not frames or batch_size < 1:
        raise ValueError("time_detect needs at least one frame and batch_size >= 1")
    cuda = detector.device.type == "cuda"
    start_index = 0

    def next_batch() -> list[np.ndarray | torch.Tensor]:
        nonlocal start_index
        batch = [frames[(start_index + i) % len(frames)] for i in range(batch_size)]
        start_index = (start_index + batch_size) % len(frames)
        return batch

    for _ in range(warmup):
        detector.detect(next_batch())
    times = []
    for _ in range(runs):
        batch = next_batch()
        if cuda:
            torch.cuda.synchronize(detector.device)
        start = clock()
        detector.detect(batch)
        if cuda:
            torch.cuda.synchronize(detector.device)
        times.append(clock() - start)
    return times


def benchmark_detector(
    arch: str,
    *,
    batch_size: int = 1,
    input_hw: tuple[int, int] = (360, 640),
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    device: str = "cpu",
    num_threads: int = 2,
    warmup: int = 2,
    runs: int = 7,
    score_thresh: float = 0.3,
    clock: Callable[[], float] = time.perf_counter,
) -> BenchResult:
    """Time ``Detector.detect`` on random BGR frames of ``input_hw``, end to end.

    Includes colour conversion, resize, network, post-processing and the copy back. On CUDA the
    device is synchronised around each timed batch.
    """
    torch.set_num_threads(num_threads)
    torch.manual_seed(0)
    model = build_from_spec(DetectorSpec(arch=arch, image_size=image_size))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (*input_hw, 3), dtype=np.uint8) for _ in range(batch_size)]
    calibrate_batchnorm(model, [torch.rand(3, *input_hw) for _ in range(2)])
    detector = Detector(model, device=device, score_thresh=score_thresh)
    times = time_detect(detector, frames, batch_size=batch_size, warmup=warmup, runs=runs,
                        clock=clock)
    median_s = statistics.median(times)
    return BenchResult(
        arch=arch,
        batch_size=batch_size,
        input_hw=input_hw,
        image_size=image_size,
        device=str(detector.device),
        num_threads=num_threads,
        runs=runs,
        img_per_s=batch_size / median_s,
        ms_per_batch=median_s * 1000.0,
        best_img_per_s=batch_size / min(times),
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        load_avg_1m=os.getloadavg()[0],
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: print a table, or JSON lines with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--input", nargs=2, type=int, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--size", nargs=2, type=int, default=list(DEFAULT_IMAGE_SIZE))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (all threads), which other "
        "work on a shared machine disturbs far less — with 1 thread it estimates a quiet "
        "machine's wall time",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.json:
        print(
            f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {args.clock} clock"
        )
    for arch in args.arch:
        for batch in args.batch:
            r = benchmark_detector(
                arch,
                batch_size=batch,
                input_hw=(args.input[0], args.input[1]),
                image_size=(args.size[0], args.size[1]),
                device=args.device,
                num_threads=args.threads,
                runs=args.runs,
                clock=time.process_time if args.clock == "cpu" else time.perf_counter,
            )
            if args.json:
                print(json.dumps(asdict(r)))
            else:
                print(
                    f"{r.arch:16s} batch {r.batch_size}  {r.img_per_s:7.2f} img/s "
                    f"(best {r.best_img_per_s:6.2f})  "
                    f"{r.ms_per_batch:8.1f} ms/batch  {r.params_m:.2f} M params  "
                    f"size {r.image_size} {r.device} threads {r.num_threads}  "
                    f"load {r.load_avg_1m:.2f}"
                )


if __name__ == "__main__":
    main()
