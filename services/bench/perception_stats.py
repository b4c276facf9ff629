"""Pure arithmetic of `roadstream bench perception`: statistics, efficiency, pacing, goals.

Kept apart from the measuring code so each definition is tested on its own numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EFFICIENCY_GOAL = 0.85  # pipeline_fps ÷ bare_model_fps at the pipeline's batch size
LATENCY_GOAL_FACTOR = 2.0  # p99 at 70 % load ≤ this × the single-frame floor


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between order statistics.

    The same definition as numpy's default; raises ValueError for no values or q outside 0–100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0–100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max [ms] and the count ``n`` of a latency sample."""
    return {"p50": round(percentile(latencies_ms, 50), 2), "p99": round(percentile(latencies_ms, 99), 2),
            "mean": round(statistics.fmean(latencies_ms), 2), "max": round(max(latencies_ms), 2),
            "n": len(latencies_ms)}


def nearest_batch(batch_mean: float, measured: Iterable[int]) -> int:
    """The measured batch size nearest ``batch_mean``; a tie goes to the larger size.

    Bare throughput grows with the batch size, so the larger size of a tie is the stricter
    reference for efficiency.
    """
    sizes = sorted(set(measured))
    if not sizes:
        raise ValueError("no measured batch sizes")
    return min(sizes, key=lambda b: (abs(b - batch_mean), -b))


def efficiency(pipeline_fps: float, bare_fps: Mapping[int, float], batch_mean: float,
               ) -> tuple[float, int]:
    """``pipeline_fps ÷ bare_fps[b]`` with ``b`` the measured batch size nearest ``batch_mean``.

    Returns ``(efficiency, b)``.
    """
    batch = nearest_batch(batch_mean, bare_fps)
    return pipeline_fps / bare_fps[batch], batch


def floor_ms(decode_ms: float, model_batch1_ms: float, hop_ms: float) -> float:
    """The single-frame floor: decode + model at batch 1 + two broker hops [ms]."""
    return decode_ms + model_batch1_ms + 2.0 * hop_ms


def send_offsets(rate_hz: float, duration_s: float) -> list[float]:
    """Send times [s from the start] of a fixed-rate source: ``i / rate`` for every i < rate × duration."""
    if rate_hz <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    return [i / rate_hz for i in range(max(1, math.floor(rate_hz * duration_s + 1e-9)))]


def send_delay(now_s: float, start_s: float, offset_s: float) -> float:
    """Seconds to wait before sending the frame due at ``start_s + offset_s`` (0 when late).

    An open-loop source: a late frame goes at once and later ones keep their own due times,
    so the offered rate stays fixed and a slow consumer cannot slow the offer down.
    """
    return max(0.0, start_s + offset_s - now_s)


@dataclass(frozen=True)
class Batch:
    """One model batch as seen on the wire: the publish stamp of its last result, its size,
    and the model time the service measured for it [ms]."""

    end_ns: int
    size: int
    infer_ms: float = 0.0


def batches_from_outputs(outputs: Sequence[tuple[int, int, float]]) -> list[Batch]:
    """Group results ``(publish stamp_ns, batch size, infer ms)``, in publish order, into batches.

    The service publishes a batch's results one after another, each carrying the batch size,
    so the next ``size`` results form one batch. A batch cut short at the end is dropped.
    """
    batches: list[Batch] = []
    i = 0
    while i < len(outputs):
        size = max(1, int(outputs[i][1]))
        if i + size > len(outputs):
            break
        group = outputs[i:i + size]
        batches.append(Batch(end_ns=max(o[0] for o in group), size=size, infer_ms=group[0][2]))
        i += size
    return batches


@dataclass(frozen=True)
class Throughput:
    """Frames per second over a window of whole batches."""

    fps: float
    frames: int
    window_s: float
    batch_mean: float
    batches: int
    window_fps: tuple[float, ...]  # the window cut in equal parts: how steady the rate was
    infer_ms_mean: float  # model time per batch inside the service
    period_ms: float  # wall time per batch: model time + everything else the service does


def window_throughput(batches: Sequence[Batch], *, warmup_s: float, duration_s: float,
                      parts: int = 1) -> Throughput:
    """Throughput over whole batches after a warm-up.

    The window opens at the end of the first batch finishing ``warmup_s`` or more after the
    first batch ended, and takes every later batch up to and including the first one ending
    ``duration_s`` or more after the opening (fewer when the batches run out first);
    fps = their frames ÷ (last taken end − opening). ``window_fps`` repeats the count on
    ``parts`` equal slices of the window. Raises ValueError when no batch follows the opening.
    """
    ordered = sorted(batches, key=lambda b: b.end_ns)
    if not ordered:
        raise ValueError("no batches")
    first = ordered[0].end_ns
    start = next((i for i, b in enumerate(ordered) if b.end_ns >= first + warmup_s * 1e9), None)
    if start is None or start + 1 >= len(ordered):
        raise ValueError(f"no batch ended after a {warmup_s} s warm-up; queue more frames")
    opening = ordered[start].end_ns
    counted: list[Batch] = []
    for b in ordered[start + 1:]:
        counted.append(b)
        if b.end_ns >= opening + duration_s * 1e9:
            break
    window_ns = counted[-1].end_ns - opening
    frames = sum(b.size for b in counted)
    n_parts = max(1, parts)
    step_ns = window_ns / n_parts
    slices = []
    for k in range(n_parts):
        lo, hi = opening + k * step_ns, opening + (k + 1) * step_ns
        in_slice = sum(b.size for b in counted if lo < b.end_ns <= hi)
        slices.append(in_slice / (step_ns / 1e9) if step_ns > 0 else 0.0)
    return Throughput(fps=frames / (window_ns / 1e9) if window_ns > 0 else 0.0, frames=frames,
                      window_s=window_ns / 1e9, batch_mean=statistics.fmean(b.size for b in counted),
                      batches=len(counted), window_fps=tuple(slices),
                      infer_ms_mean=statistics.fmean(b.infer_ms for b in counted),
                      period_ms=window_ns / 1e6 / len(counted))


def backlog_frames(bare_fps: float, *, warmup_s: float, duration_s: float,
                   max_batch: int, margin: float = 1.3) -> int:
    """Frames to queue so the service does not run dry before the window closes.

    Sized from the bare-model rate at the service's largest batch (the pipeline cannot beat
    it by much) with a margin; every queued frame is served before the next step, so a larger
    margin only costs time. Should the pipeline still outrun it, the window ends with the
    batches (its length is reported).
    """
    return math.ceil(bare_fps * (warmup_s + duration_s) * margin) + 2 * max_batch


def goals(efficiency_value: float, p99_ms: float, floor: float) -> dict[str, Any]:
    """Pass/fail of both goals: efficiency ≥ 0.85 and p99 at 70 % load ≤ 2 × floor."""
    limit = LATENCY_GOAL_FACTOR * floor
    return {
        "efficiency": {"value": round(efficiency_value, 3), "goal": f">= {EFFICIENCY_GOAL}",
                       "met": efficiency_value >= EFFICIENCY_GOAL},
        "p99_latency": {"value_ms": round(p99_ms, 1), "limit_ms": round(limit, 1),
                        "goal": f"<= {LATENCY_GOAL_FACTOR:g} x floor", "met": p99_ms <= limit},
    }
