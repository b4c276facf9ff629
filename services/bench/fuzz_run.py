"""`roadstream bench fuzz` and the fuzz suite: hostile frames into the real perception service.

The service runs as `roadstream run` runs it, in a process of its own started from the process
table (`services.runtime.process`). Steps:

1. warm-up: a few valid frames (enough for its largest batch) are served; its resident memory
   when it is idle after them is the baseline (the model and its buffers included);
2. fuzz: `services.bench.fuzz` frames are produced as fast as the broker takes them, valid
   ones interleaved with every kind of bad one, while a reader follows `perception.objects`
   and `camera.frames.dlq` and `services.bench.fuzz_tally` sorts each frame's fate;
3. the run ends when every frame has an outcome (then a short grace, for late duplicates) or
   none arrived for ``stall_s``; then the service is stopped.

Memory: the kernel's peak resident set (VmHWM) of the service process, reset after the warm-up
(``/proc/PID/clear_refs``), and VmRSS sampled meanwhile; the larger is the peak. The service
also must stay alive throughout and log no traceback.

The service runs with the latency budget off (the backlog of frames is older than any budget,
and every valid frame must be served, not dropped on purpose) and newest-per-camera skipping
off (it would drop valid frames that queue behind newer ones of their camera), its frame size
limit at `FuzzSpec.max_frame_bytes`, and the registry's defaults otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.bench.fuzz import FuzzBase, FuzzFrame, FuzzSpec, fuzz_frames
from services.bench.fuzz_tally import FuzzTally
from services.bench.machine import machine_info
from services.broker.clients import client_kwargs, consumer_kwargs, producer_kwargs
from services.messages import CAMERA_FRAMES, PERCEPTION_OBJECTS, PerceptionObjects
from services.perception.settings import PerceptionSettings, model_threads
from services.runtime.process import ServiceProcess
from services.settings import Settings

Progress = Callable[[str, float], None]
_KIB = 1024


@dataclass(frozen=True)
class FuzzOptions:
    """How many frames, from which seed, and how long to wait (defaults: the CI suite's run)."""

    frames: int = 10_000
    seed: int = 20
    valid_fraction: float = 0.03
    warmup_frames: int = 8  # valid frames before the idle baseline: twice the largest batch
    threads: int | None = None  # torch threads; None: as the service (model_threads)
    stall_s: float = 120.0  # give up when no outcome arrived for this long [s]
    grace_s: float = 2.0  # after the last outcome, wait this long for late duplicates [s]
    startup_timeout_s: float = 180.0  # model load and group join [s]
    rss_interval_s: float = 0.05  # VmRSS sampling period [s]
    log_path: Path | None = None  # the service's log (appended); None: a temporary file


def _status_kib(pid: int, field: str) -> int | None:
    """A ``/proc/PID/status`` memory field [KiB]; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssWatch:
    """The resident memory of one process: VmRSS sampled in the background, and VmHWM."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.sampled_peak_kib = 0
        self.samples = 0
        self.hwm_reset = False
        self._task: asyncio.Task[None] | None = None

    def rss_kib(self) -> int:
        """VmRSS now [KiB] (0 when the process is gone)."""
        return _status_kib(self.pid, "VmRSS") or 0

    def start(self) -> None:
        """Reset the kernel's peak (where permitted) and start sampling."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.sampled_peak_kib = max(self.sampled_peak_kib, self.rss_kib())
            self.samples += 1
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> int:
        """Stop sampling; the peak [KiB]: VmHWM since the reset, or the sampled peak if larger."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        hwm = (_status_kib(self.pid, "VmHWM") or 0) if self.hwm_reset else 0
        return max(hwm, self.sampled_peak_kib)


class Outcomes:
    """Follows `perception.objects` and `camera.frames.dlq` from their current ends into a tally."""

    def __init__(self, settings: Settings, bootstrap: str, tally: FuzzTally) -> None:
        # Off the control path, like the monitor: a longer fetch wait. The embedded broker
        # answers a fetch with nothing once finding its offset in a large log takes longer
        # than the wait, and these topics grow as large as camera.frames.
        kwargs = {k: v for k, v in consumer_kwargs(settings, watcher=True).items()
                  if k != "auto_offset_reset"}
        self.consumer = AIOKafkaConsumer(**client_kwargs(settings, bootstrap, "bench-fuzz"),
                                         group_id=None, **kwargs)
        self.tally = tally
        self.last_outcome = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition of both topics at its end, then read in the background."""
        await self.consumer.start()
        tps = [TopicPartition(topic, p) for topic in (PERCEPTION_OBJECTS.name, CAMERA_FRAMES.dlq)
               for p in sorted(self.consumer.partitions_for_topic(topic) or {0})]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before anything is produced
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for r in records:
                    if tp.topic == PERCEPTION_OBJECTS.name:
                        self.tally.result(PerceptionObjects.decode(bytes(r.value or b"")))
                    else:
                        self.tally.dead_letter({str(k): bytes(v or b"").decode(errors="replace")
                                                for k, v in r.headers or ()})
                    self.last_outcome = time.monotonic()

    async def wait(self, until: Callable[[], bool], *, stall_s: float,
                   progress: Callable[[], None] = lambda: None) -> bool:
        """Wait until ``until()``; False once no outcome arrived for ``stall_s`` (counted from
        the call at the earliest)."""
        called = time.monotonic()
        while not until():
            if self._task is not None and self._task.done():
                self._task.result()  # the reader failed: raise its error here
            if time.monotonic() - max(self.last_outcome, called) > stall_s:
                return False
            progress()
            await asyncio.sleep(0.2)
        return True

    async def stop(self) -> None:
        """Stop reading and close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


async def _produce(producer: AIOKafkaProducer, frames: Iterable[FuzzFrame], tally: FuzzTally,
                   report: Callable[[int], None], chunk: int = 500) -> dict[str, int]:
    """Send every frame, recording in ``tally`` where each landed (acknowledgements are awaited
    ``chunk`` frames at a time); returns the bytes sent."""
    pending: list[tuple[FuzzFrame, asyncio.Future[Any]]] = []
    sent_bytes = 0

    async def settle() -> None:
        for frame, ack in pending:
            meta = await ack
            tally.sent(frame, meta.partition, meta.offset)
        report(len(tally.frames))
        pending.clear()

    for frame in frames:
        ack = await producer.send(CAMERA_FRAMES.name, frame.value, key=frame.key,
                                  headers=list(frame.headers))
        pending.append((frame, ack))
        sent_bytes += frame.size_bytes
        if len(pending) >= chunk:
            await settle()
    await settle()
    return {"bytes": sent_bytes}


def _read_log(log_path: Path, tail_chars: int = 4000) -> tuple[int, str]:
    """Tracebacks in the service's log, and its end."""
    tracebacks, tail = 0, ""
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            tracebacks += line.startswith("Traceback")
            tail = (tail + line)[-tail_chars:]
    return tracebacks, tail


async def run_fuzz(settings: Settings, bootstrap: str, opts: FuzzOptions | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Fuzz the perception service at ``bootstrap``; a JSON-ready result (see the module doc).

    ``settings`` are the ones the service runs with (for the embedded broker, plaintext).
    Raises RuntimeError when the service does not start or the warm-up frames are not served.
    """
    opts = opts or FuzzOptions()
    report = progress or (lambda stage, fraction: None)
    run_id = f"fuzz-{opts.seed}-{uuid.uuid4().hex[:8]}"
    spec = FuzzSpec(seed=opts.seed, run_id=run_id, valid_fraction=opts.valid_fraction)
    threads = opts.threads or model_threads(settings)
    report("render", 0.0)
    base = FuzzBase.render()
    warm = FuzzTally(f"{run_id}-warmup")
    warm_frames = list(fuzz_frames(opts.warmup_frames, base,
                                   FuzzSpec(seed=opts.seed, run_id=warm.run_id, valid_fraction=1.0)))
    tally = FuzzTally(run_id)
    service_settings = settings.model_copy(update={
        "torch_threads": threads, "group_prefix": f"fuzz-{uuid.uuid4().hex[:8]}", "metrics_port": 0})
    options = PerceptionSettings(latency_budget_ms=None, newest_per_camera=False,
                                 max_frame_bytes=spec.max_frame_bytes, max_pixels=spec.max_pixels)
    log_dir = tempfile.TemporaryDirectory(prefix="roadstream-fuzz-")
    log_path = opts.log_path or Path(log_dir.name) / "perception.log"
    worker = ServiceProcess("perception", log_path)
    producer = AIOKafkaProducer(**client_kwargs(settings, bootstrap, "bench-fuzz"),
                                **producer_kwargs(settings))
    warm_out, out = Outcomes(settings, bootstrap, warm), Outcomes(settings, bootstrap, tally)
    try:
        await producer.start()
        await warm_out.start()
        await out.start()
        report("service start", 0.0)
        ready = await worker.start(service_settings, options, bootstrap, opts.startup_timeout_s)
        assert worker.proc is not None
        pid = worker.proc.pid
        report("warm-up", 0.0)
        await _produce(producer, warm_frames, warm, lambda n: None)
        if not await warm_out.wait(lambda: warm.complete, stall_s=opts.startup_timeout_s):
            raise RuntimeError(f"the warm-up frames were not served:\n{worker.log_tail()}")
        await asyncio.sleep(1.0)  # idle: the last batch's buffers released
        watch = RssWatch(pid, opts.rss_interval_s)
        idle_kib = watch.rss_kib()
        watch.start()
        report("fuzz", 0.0)
        start = time.monotonic()
        produced = await _produce(producer, fuzz_frames(opts.frames, base, spec), tally,
                                  lambda n: report("fuzz", 0.5 * n / opts.frames))
        produce_s = time.monotonic() - start
        done = await out.wait(lambda: tally.complete, stall_s=opts.stall_s,
                              progress=lambda: report("fuzz", 0.5 + 0.5 * tally.accounted / opts.frames))
        wall_s = time.monotonic() - start
        await asyncio.sleep(opts.grace_s)
        peak_kib = await watch.stop()
        alive = worker.proc.returncode is None
        service = await worker.stop()
    finally:
        await worker.stop()  # no-op after a clean stop; kills the process after an error
        await out.stop()
        await warm_out.stop()
        await producer.stop()
    tracebacks, log_tail = _read_log(log_path)
    log_dir.cleanup()
    report("fuzz", 1.0)
    summary = tally.summary()
    return {
        "benchmark": "fuzz", "seed": opts.seed, "run_id": run_id, "complete": done,
        **summary,
        "crashes": {"service_alive": alive, "tracebacks_logged": tracebacks},
        # what the service said last, when something went wrong
        "log_tail": log_tail if tracebacks or not done or not alive else "",
        "rss": {"idle_mib": round(idle_kib / _KIB, 1), "peak_mib": round(peak_kib / _KIB, 1),
                "peak_over_idle": round(peak_kib / idle_kib, 3) if idle_kib else None,
                "method": "VmHWM after reset" if watch.hwm_reset else "VmRSS sampled",
                "samples": watch.samples},
        "produce_s": round(produce_s, 1), "wall_s": round(wall_s, 1),
        "frames_per_s": round(opts.frames / wall_s, 1) if wall_s else None,
        "produced_mib": round(produced["bytes"] / _KIB / _KIB, 1),
        "service": {**ready, **{k: v for k, v in service.items() if k != "batch_sizes"}},
        "settings": {**asdict(opts), "log_path": str(opts.log_path or "") or None,
                     "torch_threads": threads, "fetch_wait_ms": settings.fetch_wait_ms,
                     "max_frame_bytes": spec.max_frame_bytes, "max_pixels": spec.max_pixels,
                     "max_batch_size": options.max_batch_size,
                     "broker": "embedded" if settings.embedded else "external",
                     "topic_partitions": settings.topic_partitions},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "machine": machine_info(),
    }
