"""`roadstream bench perception`: bare model vs the real pipeline, in one run.

Steps, all on the same torch thread count (settings, default: the usable cores):

1. decode: the service's intake (`decode_frames`: headers, limits, OpenCV or GPU decode) on
   rendered 640×360 JPEG frames, in the service's batch size; frames/s, median of runs.
2. bare model: `Detector.detect` on those decoded frames at batch 1, 2, 4, 8; frames/s,
   median of runs (`perception.bench.time_detect`).
3. broker hop: a small `perception.objects` message, producer → consumer, median [ms];
   floor = decode + model at batch 1 + two hops.
4. pipeline: the real service, started from the process table in a process of its own
   (`services.runtime.process`) as `roadstream run` starts it, drains a backlog of frames
   queued faster than it can serve; objects published per second over a window after
   warm-up, from the results' publish stamps, and
   the mean batch size it chose. efficiency = pipeline fps ÷ bare fps at the measured batch
   size nearest that mean (ties: the larger, stricter one).
5. latency: a paced producer offers frames at 0.7 × the pipeline's rate for a fixed time;
   latency = result received by a consumer − frame capture stamp (so both hops count, as in
   the floor), p50/p99, compared with 2 × floor.

The service runs with the latency budget and newest-per-camera skipping off: backlog frames
are older than any budget and queue behind newer ones of their camera, and at 70 % load every
frame must be measured, none dropped out of the tail.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from aiokafka import AIOKafkaProducer

from perception.bench import time_detect
from perception.checkpoint import load_detector
from services.bench import perception_stats as st
from services.bench.machine import machine_info
from services.bench.perception_rig import (
    Collector,
    frame_record,
    measure_hops,
    render_frames,
    send_frame,
)
from services.broker.clients import client_kwargs, producer_kwargs
from services.perception.decode import Image, decode_frames, gpu_decode_device
from services.perception.settings import PerceptionSettings, model_threads
from services.runtime.delivery import Record
from services.runtime.process import ServiceProcess
from services.settings import Settings
from simulators.library import DEFAULT_SCENARIO

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and for how long (the defaults finish in a few minutes on 2 cores)."""

    weights: Path | None = None  # None: the service's configured weights
    device: str | None = None  # None: settings.device
    threads: int | None = None  # None: what the service uses (perception.settings.model_threads)
    duration_s: float = 15.0  # pipeline window, and paced-load duration [s]
    runs: int = 5  # timed runs of decode and of each bare batch size
    frames: int = 32  # distinct rendered frames, cycled
    warmup_s: float = 3.0  # pipeline results before the window opens [s]
    load: float = 0.7  # offered fraction of the pipeline's rate in the latency step
    hops: int = 30  # broker-hop measurements
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    scenario: str = DEFAULT_SCENARIO
    width: int = 640  # [px]
    height: int = 360  # [px]
    startup_timeout_s: float = 180.0  # service process: model load and group join [s]


def measure_decode(records: list[Record], options: PerceptionSettings,
                   jpeg_device: torch.device | None, *, runs: int) -> tuple[list[float], list[Image]]:
    """Frames/s of each run of the service's intake over ``records``, and the decoded images."""
    fps_runs: list[float] = []
    images: list[Image] = []
    batch = options.max_batch_size
    for run in range(runs + 1):  # the first run warms up
        start = time.perf_counter()
        decoded = []
        for i in range(0, len(records), batch):
            decoded.extend(decode_frames(records[i:i + batch], max_bytes=options.max_frame_bytes,
                                         max_pixels=options.max_pixels, jpeg_device=jpeg_device))
        if jpeg_device is not None:
            torch.cuda.synchronize(jpeg_device)
        elapsed = time.perf_counter() - start
        bad = [d.error for d in decoded if d.error is not None]
        if bad:
            raise RuntimeError(f"a rendered frame failed to decode: {bad[0]}")
        if run:
            fps_runs.append(len(records) / elapsed)
        images = [d.image for d in decoded if d.image is not None]
    return fps_runs, images


def _model_step(settings: Settings, options: PerceptionSettings, opts: BenchOptions, threads: int,
                records: list[Record], progress: Progress) -> dict[str, Any]:
    """Steps 1 and 2: decode rate and bare-model throughput, in this process."""
    detector = load_detector(options.weights, builder=options.builder, class_map=options.class_map,
                             device=opts.device or settings.device, score_thresh=options.score_thresh,
                             num_threads=threads)
    jpeg_device = gpu_decode_device(detector.device)
    progress("decode", 0.0)
    decode_runs, images = measure_decode(records, options, jpeg_device, runs=opts.runs)
    progress("decode", 1.0)
    bare: dict[int, list[float]] = {}
    for i, batch in enumerate(opts.batch_sizes):
        progress("bare model", i / len(opts.batch_sizes))
        bare[batch] = time_detect(detector, images, batch_size=batch, warmup=1, runs=opts.runs)
    progress("bare model", 1.0)
    return {"decode_runs": decode_runs, "bare_s": bare, "device": str(detector.device),
            "model_version": detector.model_version}


async def _pipeline_step(producer: AIOKafkaProducer, collector: Collector, rendered: list[Any],
                         n_frames: int, opts: BenchOptions, progress: Progress) -> st.Throughput:
    """Step 4: queue ``n_frames`` at once and measure the rate the service drains them at."""
    run_id = f"bench-pipe-{uuid.uuid4().hex[:8]}"
    progress("pipeline", 0.0)
    acks = [await send_frame(producer, *rendered[seq % len(rendered)], seq=seq, run_id=run_id)
            for seq in range(n_frames)]
    await asyncio.gather(*acks)
    got = await collector.wait_for(run_id, n_frames, stall_s=60,
                                   progress=lambda n: progress("pipeline", n / n_frames))
    if got < n_frames:
        raise RuntimeError(f"the service published {got} of {n_frames} results, then stalled")
    outputs = sorted((m.stamp_ns, int(m.latencies_ms.get("batch_size", 1)), m.latencies_ms.get("infer", 0.0))
                     for _, m in collector.of_run(run_id))
    batches = st.batches_from_outputs(outputs)
    return st.window_throughput(batches, warmup_s=opts.warmup_s, duration_s=opts.duration_s,
                                parts=opts.runs)


async def _latency_step(producer: AIOKafkaProducer, collector: Collector, rendered: list[Any],
                        rate_hz: float, opts: BenchOptions, progress: Progress) -> dict[str, Any]:
    """Step 5: offer frames at ``rate_hz`` for the duration; latencies of their results."""
    run_id = f"bench-load-{uuid.uuid4().hex[:8]}"
    offsets = st.send_offsets(rate_hz, opts.duration_s)
    acks, sent_at = [], []
    start = time.monotonic()
    for seq, offset in enumerate(offsets):
        await asyncio.sleep(st.send_delay(time.monotonic(), start, offset))
        sent_at.append(time.monotonic())
        acks.append(await send_frame(producer, *rendered[seq % len(rendered)], seq=seq, run_id=run_id))
        progress("latency", 0.9 * seq / len(offsets))
    await asyncio.gather(*acks)
    got = await collector.wait_for(run_id, len(offsets), stall_s=30, progress=lambda n: None)
    progress("latency", 1.0)
    results = collector.of_run(run_id)
    if not results:
        raise RuntimeError("no result of the paced frames arrived")
    end_to_end = [(t - m.source.stamp_ns) / 1e6 for t, m in results]
    in_service = [(m.stamp_ns - m.source.stamp_ns) / 1e6 for _, m in results]
    batch_mean = statistics.fmean(m.latencies_ms.get("batch_size", 1.0) for _, m in results)
    offered = (len(sent_at) - 1) / (sent_at[-1] - sent_at[0]) if len(sent_at) > 1 else rate_hz
    return {"latency_ms": st.latency_summary(end_to_end),
            "latency_to_publish_ms": st.latency_summary(in_service),
            "offered_fps": round(offered, 2), "offered_frames": len(offsets), "received": got,
            "batch_mean": round(batch_mean, 2)}


async def bench_perception(settings: Settings, bootstrap: str, opts: BenchOptions | None = None,
                           progress: Progress | None = None) -> dict[str, Any]:
    """Run the five steps against the broker at ``bootstrap``; a JSON-ready result.

    ``settings`` are the ones the service would run with (for the embedded broker, already
    plaintext). Raises RuntimeError when the service fails or stalls.
    """
    opts = opts or BenchOptions()
    if 1 not in opts.batch_sizes:
        raise ValueError("the batch sizes must include 1: the single-frame floor needs it")
    report = progress or (lambda stage, fraction: None)
    threads = opts.threads or model_threads(settings)
    options = PerceptionSettings()
    if opts.weights is not None:
        options = options.model_copy(update={"weights": opts.weights})
    report("render", 0.0)
    rendered = render_frames(opts.scenario, opts.frames, opts.width, opts.height)
    records = [frame_record(image, cam, seq=i, run_id="bench-decode", stamp_ns=time.time_ns())
               for i, (image, cam) in enumerate(rendered)]
    report("render", 1.0)
    model = _model_step(settings, options, opts, threads, records, report)
    decode_fps = statistics.median(model["decode_runs"])
    bare_fps = {b: b / statistics.median(times) for b, times in model["bare_s"].items()}

    producer = AIOKafkaProducer(**client_kwargs(settings, bootstrap, "bench"), **producer_kwargs(settings))
    collector = Collector(settings, bootstrap)
    worker = ServiceProcess("perception")  # in its own process, as `roadstream run` runs it
    await producer.start()
    try:
        await collector.start()
        report("broker hop", 0.0)
        hops = await measure_hops(producer, collector, opts.hops)
        report("broker hop", 1.0)
        service_settings = settings.model_copy(update={
            "torch_threads": threads, "device": opts.device or settings.device,
            "group_prefix": f"bench-{uuid.uuid4().hex[:8]}", "metrics_port": 0})
        service_options = options.model_copy(update={"latency_budget_ms": None,
                                                     "newest_per_camera": False})
        report("service start", 0.0)
        ready = await worker.start(service_settings, service_options, bootstrap,
                                   opts.startup_timeout_s)
        report("service start", 1.0)
        top = st.nearest_batch(options.max_batch_size, bare_fps)
        backlog = st.backlog_frames(max(bare_fps[top], bare_fps.get(1, 0.0)), warmup_s=opts.warmup_s,
                                    duration_s=opts.duration_s, max_batch=options.max_batch_size)
        pipe = await _pipeline_step(producer, collector, rendered, backlog, opts, report)
        load = await _latency_step(producer, collector, rendered, opts.load * pipe.fps, opts, report)
        service = await worker.stop()
    finally:
        await worker.stop()  # no-op after a clean stop; kills the process after an error
        await collector.stop()
        await producer.stop()

    hop_ms = statistics.median(hops)
    model_b1_ms = 1e3 / bare_fps[1]
    decode_ms = 1e3 / decode_fps
    floor = st.floor_ms(decode_ms, model_b1_ms, hop_ms)
    eff, eff_batch = st.efficiency(pipe.fps, bare_fps, pipe.batch_mean)
    return {
        "benchmark": "perception",
        "decode_fps": round(decode_fps, 1),
        "decode_fps_runs": [round(r, 1) for r in model["decode_runs"]],
        "bare_model_fps": {b: round(v, 2) for b, v in bare_fps.items()},
        "bare_model_fps_runs": {b: [round(b / t, 2) for t in ts] for b, ts in model["bare_s"].items()},
        "bare_model_ms_per_batch": {b: round(1e3 * statistics.median(ts), 1)
                                    for b, ts in model["bare_s"].items()},
        "hop_ms": round(hop_ms, 2),
        "floor_ms": round(floor, 1),
        "floor_parts_ms": {"decode": round(decode_ms, 2), "model_batch_1": round(model_b1_ms, 1),
                           "two_hops": round(2 * hop_ms, 2)},
        "pipeline_fps": round(pipe.fps, 2),
        "pipeline_fps_windows": [round(f, 2) for f in pipe.window_fps],
        "pipeline_batch_mean": round(pipe.batch_mean, 2),
        "pipeline_frames": pipe.frames,
        "pipeline_window_s": round(pipe.window_s, 2),
        # Where a batch's time goes in the service: model vs everything else (decode, track,
        # publish and acks, commit, fetch); compare infer with bare_model_ms_per_batch.
        "pipeline_batch_period_ms": round(pipe.period_ms, 1),
        "pipeline_infer_ms_mean": round(pipe.infer_ms_mean, 1),
        "backlog_frames": backlog,
        "efficiency": round(eff, 3),
        "efficiency_batch_size": eff_batch,
        **load,
        "goals": st.goals(eff, load["latency_ms"]["p99"], floor),
        "service": {**ready, **service},
        "settings": {
            **asdict(opts),
            "weights": str(options.weights), "model_version": model["model_version"],
            "device": model["device"], "torch_threads": threads,
            "max_batch_size": options.max_batch_size, "max_wait_ms": options.max_wait_ms,
            "latency_budget_ms": None, "newest_per_camera": False,
            "broker": "embedded" if settings.embedded else "external",
            "topic_partitions": settings.topic_partitions,
        },
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "machine": machine_info(),
    }
