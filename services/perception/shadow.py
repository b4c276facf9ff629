"""Shadow deployment: a candidate model beside production, on the frames production served.

A candidate comes from ``ROADSTREAM_PERCEPTION_SHADOW_WEIGHTS`` at start-up or from a
`model.deployments` command with action ``shadow`` (``roadstream models shadow VERSION``;
deploy.py loads and checks it as it does a swap). Once production's results of a batch are
published, the batch's decoded frames and production's detections are handed here; the
candidate runs on them, tracks them with trackers of its own and publishes one result per frame
on `perception.objects.shadow` (same schema; `model_version` names the candidate). Planning
does not read that topic. ``perception.shadow.ShadowComparator`` matches the two models'
detections per frame (each at its own operating score, before tracking); every
``shadow_report_every_s`` (and when the shadow stops or the service stops) the window's figures
go out as a `model_shadow_report` safety event (info) and as gauges.

Production first, on any machine:

- the candidate never runs on production's worker thread, so no production batch ever queues
  behind a shadow batch: it has a thread of its own;
- that thread runs at the lowest CPU priority (``SHADOW_NICE``; on Linux a thread's nice value
  is its own): when both want a core, the kernel's scheduler gives production's thread about
  98 % of it (CFS weights 1024 against 15), so the shadow runs on the time production leaves;
- at most one shadow batch runs and one waits: a newer batch replaces the waiting one, whose
  frames are skipped and counted (``frames_skipped`` in the report,
  ``roadstream_shadow_frames_skipped_total``), so a candidate slower than the stream samples
  frames instead of building a backlog or holding memory;
- a shadow failure (a frame it cannot run, a publish that fails) is logged and counted, never
  raised: production and its offsets never depend on the shadow.

What it does not bound: on a GPU both models share the device (nice values do not apply to
kernels), and on any machine they share memory bandwidth and the Python interpreter lock for
their Python parts. docs/models.md gives the measured cost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from perception.detections import Detections
from perception.hotswap import ServedModel, warm_up
from perception.pipeline import CameraPerception
from perception.shadow import ShadowComparator, at_operating_score
from perception.tracking import TrackerConfig
from services.messages import (
    PERCEPTION_OBJECTS_SHADOW,
    FrameMeta,
    FrameRef,
    PerceptionObjects,
    Severity,
)
from services.perception.decode import Image
from services.perception.wire import detect_batch, stream_of, to_wire
from services.runtime.events import MODEL_SHADOW_REPORT, safety_event

if TYPE_CHECKING:
    from services.perception.service import PerceptionService

log = logging.getLogger(__name__)
MS = 1e-6  # ns → ms
#: Nice value of the shadow's thread: the lowest CPU priority Linux gives.
SHADOW_NICE = 19


def lowest_cpu_priority() -> None:
    """Thread initializer: put the calling thread at nice ``SHADOW_NICE`` (Linux: per thread).

    Where the platform does not allow it the shadow still runs, on its own thread, with a
    warning: only the scheduling guarantee is lost.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICE)
    except (AttributeError, OSError) as exc:
        log.warning("perception: the shadow thread keeps its CPU priority (%s); it may compete "
                    "with production for the cores", exc)


def names_of(model: ServedModel | None) -> dict[str, str | None] | None:
    """A model's version and sha256, as events name it (None: no model)."""
    return None if model is None else {"version": model.version, "sha256": model.sha256}


@dataclass
class ShadowJob:
    """Frames production served in one batch, its objects per frame and its time per frame."""

    frames: list[tuple[FrameMeta, Image, float]]  # meta, decoded image, decode time [ms]
    production: list[Detections]  # at production's operating score, before tracking
    production_ms: float  # production's inference time per frame of the batch [ms]
    published_ns: int  # when production's results of the batch were published [ns]


class ShadowRunner:
    """The shadow of one perception service (see the module); ``model`` None: no shadow."""

    def __init__(self, service: PerceptionService, *, report_every_s: float) -> None:
        self.service = service
        self.model: ServedModel | None = None
        self.report_every_s = report_every_s
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perception-shadow",
                                         initializer=lowest_cpu_priority)
        self.cameras: dict[str, CameraPerception] = {}
        self.tracker_config = TrackerConfig()
        self.comparator = ShadowComparator()
        self.pending: ShadowJob | None = None
        self.wake = asyncio.Event()
        self.window_start_ns = time.monotonic_ns()
        self.window_streams: set[tuple[str, str]] = set()  # (vehicle, run) in the window
        self.reports: list[dict[str, Any]] = []
        self.failures = 0
        registry = service.frame.registry
        self.frames_compared = Counter("roadstream_shadow_frames_total",
                                       "Frames the shadow model ran on and compared",
                                       registry=registry)
        self.frames_skipped = Counter("roadstream_shadow_frames_skipped_total",
                                      "Frames production served that the shadow skipped "
                                      "(it was behind)", registry=registry)
        self.agreement = Gauge("roadstream_shadow_agreement",
                               "Agreement (F1 of matched boxes) of the shadow model with "
                               "production over the last report's window", registry=registry)
        self.recall = Gauge("roadstream_shadow_recall",
                            "Recall of production's boxes by the shadow model over the last "
                            "report's window", ["object_class"], registry=registry)

    def begin(self, model: ServedModel) -> None:
        """Shadow ``model`` from the start (service start-up): warmed up on the shadow's thread."""
        self.worker.submit(warm_up, model.detector).result()
        self._use(model)

    async def start(self, model: ServedModel) -> None:
        """Shadow ``model`` from now on, already warmed up (deploy.py); a shadow already running
        is reported and replaced."""
        await self.stop()
        self._use(model)

    def _use(self, model: ServedModel) -> None:
        self.model = model
        self.tracker_config = TrackerConfig.at_operating_score(model.detector.operating_score)
        self.window_start_ns = time.monotonic_ns()

    async def stop(self) -> dict[str, Any] | None:
        """Stop shadowing: report the window so far (returned, None if empty), drop trackers."""
        report = await self.report() if self.model is not None and self._has_data() else None
        self.model = None
        self.pending = None
        self.cameras.clear()
        self.comparator.reset()
        return report

    def submit(self, job: ShadowJob) -> None:
        """Hand a served batch to the shadow; a batch still waiting is skipped and counted."""
        if self.model is None:
            return
        if self.pending is not None:
            skipped = len(self.pending.frames)
            self.comparator.skip(skipped)
            self.frames_skipped.inc(skipped)
        self.pending = job
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Background loop: run waiting batches, report every ``report_every_s``; at stop, the
        last window."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                due_s = self.report_every_s - (time.monotonic_ns() - self.window_start_ns) / 1e9
                woken = asyncio.create_task(self.wake.wait())
                await asyncio.wait({woken, stopping}, timeout=max(due_s, 0.0),
                                   return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                self.wake.clear()
                job, self.pending = self.pending, None
                if job is not None and not stop.is_set():
                    await self._guarded(self._run(job))
                if time.monotonic_ns() - self.window_start_ns >= self.report_every_s * 1e9:
                    if self.model is not None and self._has_data():
                        await self._guarded(self.report())
                    else:  # nothing compared: no event, a new window
                        self.window_start_ns = time.monotonic_ns()
            if self.model is not None and self._has_data():
                await self._guarded(self.report())
        finally:
            stopping.cancel()

    def _has_data(self) -> bool:
        return bool(self.comparator.frames or self.comparator.frames_skipped)

    async def _guarded(self, work: Any) -> None:
        """Await ``work``; a failure is the shadow's own, logged and counted, never raised."""
        try:
            await work
        except Exception as exc:  # the shadow must never take production down
            self.failures += 1
            log.warning("perception: shadow step failed: %s: %s", type(exc).__name__, exc)

    async def _run(self, job: ShadowJob) -> None:
        """Run the shadow on one batch, publish its results, compare them with production's."""
        model = self.model
        if model is None:
            return
        images = [image for _, image, _ in job.frames]
        detections, infer_ms = await asyncio.get_running_loop().run_in_executor(
            self.worker, detect_batch, model.detector, images)
        if self.model is not model:  # replaced or stopped meanwhile: not this window's
            return
        per_frame_ms = infer_ms / len(images)
        self.service.stage.labels("shadow_infer").observe(infer_ms / 1e3)
        sends = []
        for (meta, _, decode_ms), dets, production in zip(job.frames, detections, job.production,
                                                          strict=True):
            if isinstance(dets, Exception):
                self.failures += 1
                log.warning("perception: shadow %s failed on %s seq %d: %s", model.version,
                            meta.key.decode(), meta.seq, dets)
                continue
            objects = self._camera(meta).update(dets, meta.capture_ns)
            now_ns = time.time_ns()
            result = PerceptionObjects(
                vehicle_id=meta.vehicle_id, camera_id=meta.camera_id,
                source=FrameRef(seq=meta.seq, stamp_ns=meta.capture_ns), stamp_ns=now_ns,
                model_version=model.version, model_sha256=model.sha256,
                objects=[to_wire(o) for o in objects],
                latencies_ms={"decode": round(decode_ms, 3), "infer": round(infer_ms, 3),
                              "batch_size": float(len(images)),
                              "after_production": round((now_ns - job.published_ns) * MS, 3)},
                run_id=meta.run_id)
            sends.append(self.service.frame.publish(PERCEPTION_OBJECTS_SHADOW, result,
                                                    key=meta.key))
            self.comparator.add(production,
                                at_operating_score(dets, model.detector.operating_score),
                                production_ms=job.production_ms, shadow_ms=per_frame_ms)
            self.window_streams.add((meta.vehicle_id, meta.run_id))
            self.frames_compared.inc()
        await asyncio.gather(*sends)

    def _camera(self, meta: FrameMeta) -> CameraPerception:
        """The shadow's tracker of a stream; streams production forgot are forgotten here too."""
        key = stream_of(meta)
        for old in [k for k in self.cameras if k not in self.service.cameras]:
            del self.cameras[old]
        cam = self.cameras.get(key)
        if cam is None or cam.calibration.width != meta.calibration.width:
            cam = self.cameras[key] = CameraPerception(meta.calibration,
                                                       tracker_config=self.tracker_config)
        return cam

    async def report(self) -> dict[str, Any]:
        """Emit the window's `model_shadow_report`, set the gauges, start a new window."""
        summary = self.comparator.summary()
        window_s = (time.monotonic_ns() - self.window_start_ns) / 1e9
        vehicles = {v for v, _ in self.window_streams}
        runs = {r for _, r in self.window_streams}
        details = {"production": names_of(self.service.model), "shadow": names_of(self.model),
                   "window_s": round(window_s, 3), **summary}
        self.comparator.reset()
        self.window_streams.clear()
        self.window_start_ns = time.monotonic_ns()
        if summary["agreement"] is not None:
            self.agreement.set(summary["agreement"])
        for name, row in summary["per_class"].items():
            if row["recall"] is not None:
                self.recall.labels(name).set(row["recall"])
        self.reports.append(details)
        del self.reports[:-100]  # the last ones, for counts(); the events are the record
        await self.service.frame.emit(safety_event(
            source="perception", type_=MODEL_SHADOW_REPORT, severity=Severity.INFO,
            vehicle_id=next(iter(vehicles)) if len(vehicles) == 1 else "",
            run_id=next(iter(runs)) if len(runs) == 1 else "", details=details))
        return details
