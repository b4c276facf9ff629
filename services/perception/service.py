"""`roadstream serve perception`: a thin loop over the pure perception code.

Per micro-batch: decode each frame, drop frames older than the latency budget and, of several
frames of one camera, all but the newest (each drop counted, reported and raised as a safety
event), run the detector once on the batch, track and range per camera, publish one
`perception.objects` per frame with the source frame's seq and stamp, the version and sha256
of the model that made it and per-stage latencies. Offsets are committed after the batch's
results are published. Failures are per frame: a frame that cannot be decoded, detected or
tracked is dead-lettered with its own error, and its neighbours are served.

Decode and inference run on one worker thread of their own (OpenCV and torch release the GIL),
so the event loop stays free meanwhile: the consumer keeps fetching, acknowledgements and
heartbeats are served, and services sharing the process (the main job) go on working.

The model is swapped without a restart by a command on `model.deployments` (deploy.py). A
candidate may run beside it in shadow on the frames it served, after their results are out,
publishing on `perception.objects.shadow` and comparing the two (shadow.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from perception.batching import DROP_STALE, DROP_SUPERSEDED, newest_per_stream
from perception.checkpoint import load_detector
from perception.detections import Detections
from perception.detector import Detector
from perception.hotswap import ServedModel
from perception.pipeline import CameraPerception
from perception.registry import artifact_sha256
from perception.shadow import at_operating_score
from perception.tracking import TrackerConfig
from services.messages import (
    CAMERA_FRAMES,
    MODEL_DEPLOYMENTS,
    PERCEPTION_OBJECTS,
    EventRefs,
    FrameMeta,
    FrameRef,
    PerceptionObjects,
    Severity,
)
from services.perception.decode import Image, decode_frames, gpu_decode_device
from services.perception.deploy import (
    Deployments,
    StartChoice,
    model_at_start,
)
from services.perception.settings import PerceptionSettings, model_threads
from services.perception.shadow import ShadowJob, ShadowRunner, names_of
from services.perception.wire import detect_batch, stream_of, to_wire
from services.runtime.delivery import Record
from services.runtime.events import safety_event
from services.runtime.service import BuiltService, ServiceRuntime
from services.settings import Settings

log = logging.getLogger(__name__)
MS = 1e-6  # ns → ms
_DROP_REASONS = {DROP_STALE: "over latency budget",
                 DROP_SUPERSEDED: "superseded by a newer frame of its camera"}


def skip_superseded(records: list[Record]) -> tuple[list[Record], list[tuple[Record, FrameMeta]]]:
    """``(to serve, superseded)``: of several frames of one camera stream, only the newest.

    Chosen from the headers, before decoding. A record whose headers do not parse is kept:
    decoding dead-letters it with the reason.
    """
    readable: list[tuple[Record, FrameMeta]] = []
    for record in records:
        try:
            readable.append((record, FrameMeta.from_headers(record.headers)))
        except Exception:  # noqa: S112 -- any header fault: decoding dead-letters it, named
            continue
    _, superseded = newest_per_stream(readable, stream=lambda r: stream_of(r[1]),
                                      capture_ns=lambda r: r[1].capture_ns)
    dropped = {id(record) for record, _ in superseded}
    return [r for r in records if id(r) not in dropped], superseded


_Frame = tuple[Record, FrameMeta, Image, float]  # a decoded frame and its decode time [ms]


class PerceptionService:
    """State of the perception service: the served model and one tracker per camera stream.

    ``model`` is read once per batch: the batch's detections and every result of it name that
    one model, whatever replaces it meanwhile.
    """

    def __init__(self, frame: ServiceRuntime, model: ServedModel,
                 options: PerceptionSettings) -> None:
        self.frame = frame
        self.model = model
        detector = model.detector
        self.options = options
        # Per vehicle/camera stream, in the order last seen (dicts keep insertion order).
        self.cameras: dict[str, CameraPerception] = {}
        self.camera_seen_ns: dict[str, int] = {}  # monotonic clock
        # On CUDA, JPEGs are decoded on the GPU next to the model; on a CPU, with OpenCV.
        self.jpeg_device = gpu_decode_device(detector.device)
        # Track thresholds follow the weights' calibrated operating score, not a constant.
        self.tracker_config = TrackerConfig.at_operating_score(detector.operating_score)
        registry = frame.registry
        self.dropped = Counter("roadstream_frames_dropped_total", "Frames dropped on purpose",
                               ["camera", "reason"], registry=registry)
        self.stage = Histogram("roadstream_stage_latency_seconds", "Latency of a perception stage",
                               ["stage"], registry=registry,
                               buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.end_to_end = Histogram("roadstream_frame_to_objects_seconds",
                                    "Frame capture to objects published", registry=registry,
                                    buckets=(.01, .025, .05, .1, .2, .3, .5, 1, 2, 5))
        self.frames_done = Counter("roadstream_frames_processed_total", "Frames processed",
                                   registry=registry)
        self.streams_forgotten = Counter("roadstream_camera_streams_forgotten_total",
                                         "Camera streams whose tracker was dropped (silent for "
                                         "stream_forget_s, or beyond max_streams)",
                                         registry=registry)
        self.batch_sizes: list[int] = []
        self.dropped_by_reason: dict[str, int] = {}
        # One thread: batches run in order, and torch's thread count (set process-wide at
        # load) is what it uses; a pool of several would run models against each other.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perception-model")
        # The first inference builds kernels and buffers: pay it before the first frame.
        self.worker.submit(detector.detect, [np.zeros((360, 640, 3), np.uint8)]).result()
        # A candidate beside production, on the frames it served (shadow.py); none by default.
        self.shadow = ShadowRunner(self, report_every_s=options.shadow_report_every_s)

    @property
    def detector(self) -> Detector:
        """The detector serving now."""
        return self.model.detector

    def camera(self, meta: FrameMeta) -> CameraPerception:
        """The tracker of a vehicle/camera stream (created on its first frame).

        Streams are kept in the order they were last seen: those silent for
        ``stream_forget_s`` are forgotten, and beyond ``max_streams`` the longest silent goes
        first, so a producer inventing camera ids cannot grow the service without bound.
        """
        key = stream_of(meta)
        now_ns = time.monotonic_ns()
        cam = self.cameras.pop(key, None)
        if cam is None or cam.calibration.width != meta.calibration.width:
            cam = CameraPerception(meta.calibration,
                                   tracker_config=self.tracker_config)
        self.cameras[key] = cam  # last: the most recently seen
        self.camera_seen_ns[key] = now_ns
        forget_ns = int(self.options.stream_forget_s * 1e9)
        for old in list(self.cameras):
            if old == key or (now_ns - self.camera_seen_ns[old] <= forget_ns
                              and len(self.cameras) <= self.options.max_streams):
                break
            del self.cameras[old], self.camera_seen_ns[old]
            self.streams_forgotten.inc()
        return cam

    async def handle(self, records: list[Record]) -> None:
        """Process one fetch: skip superseded frames, then run the model in batches."""
        arrived_ns = time.time_ns()
        loop = asyncio.get_running_loop()
        drops: list[tuple[Record, FrameMeta, float, str]] = []
        if self.options.newest_per_camera:
            records, superseded = skip_superseded(records)
            drops += [(record, meta, (arrived_ns - meta.capture_ns) * MS, DROP_SUPERSEDED)
                      for record, meta in superseded]
        frames: list[_Frame] = []
        decoded = await loop.run_in_executor(self.worker, lambda: list(decode_frames(
            records, max_bytes=self.options.max_frame_bytes, max_pixels=self.options.max_pixels,
            jpeg_device=self.jpeg_device)))
        for item in decoded:
            record, meta, image = item.record, item.meta, item.image
            if item.error is not None:
                await self.frame.dead_letter(CAMERA_FRAMES, record, item.error)
                continue
            assert meta is not None  # a Decoded holds an error, or its meta and image
            assert image is not None
            age_ms = (arrived_ns - meta.capture_ns) * MS
            budget = self.options.latency_budget_ms
            if budget is not None and age_ms > budget:
                drops.append((record, meta, age_ms, DROP_STALE))
                continue
            frames.append((record, meta, image, item.decode_ms))
        size = self.options.max_batch_size
        # Every batch of the fetch is queued on the model thread at once, and each batch's
        # results are tracked, published and acknowledged while the next is in the model: the
        # model never waits for the event loop or a broker round trip within a fetch. All are
        # awaited before handle returns, so the fetch's offsets are committed after them.
        loop = asyncio.get_running_loop()
        serving: list[asyncio.Task[None]] = []
        try:
            for group in self.by_priority(frames):
                for start in range(0, len(group), size):
                    batch = group[start:start + size]
                    model = self.model  # one model for the whole batch
                    inferred = loop.run_in_executor(self.worker, detect_batch, model.detector,
                                                    [image for _, _, image, _ in batch])
                    serving.append(asyncio.create_task(
                        self.serve(batch, model, inferred, arrived_ns)))
        finally:
            outcomes = await asyncio.gather(*serving, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if drops:  # after serving: the fresh frames go first
            await self.report_drops(drops)

    def by_priority(self, frames: list[_Frame]) -> list[list[_Frame]]:
        """The primary camera's frames, then the others' (one group when there is one kind)."""
        first = [f for f in frames if f[1].camera_id == self.options.primary_camera]
        rest = [f for f in frames if f[1].camera_id != self.options.primary_camera]
        return [first, rest] if first and rest else [frames]

    async def serve(self, frames: list[_Frame], model: ServedModel,
                    inferred: asyncio.Future[tuple[list[Detections | Exception], float]],
                    arrived_ns: int) -> None:
        """Track a batch's detections (``inferred``, by ``model``) and publish one result per frame.

        Order: the model thread runs batches in turn, so their futures complete in turn, and
        each batch is tracked and its results queued for sending with no await in between: per
        camera, tracks and results keep the frames' order. Failures are per frame: one the
        detector fails on (alone), or whose tracking or result fails, is dead-lettered with its
        own error (after the batch's results), and the others are served.
        """
        detections, infer_ms = await inferred
        self.batch_sizes.append(len(frames))
        self.stage.labels("infer").observe(infer_ms / 1e3)
        results: list[tuple[Record, FrameMeta, PerceptionObjects, float, float]] = []
        failed: list[tuple[Record, Exception]] = []
        shadow = ShadowJob([], [], infer_ms / len(frames), 0)
        for (record, meta, image, decode_ms), dets in zip(frames, detections, strict=True):
            try:
                if isinstance(dets, Exception):
                    raise dets
                t1 = time.perf_counter_ns()
                objects = self.camera(meta).update(dets, meta.capture_ns)
                track_ms = (time.perf_counter_ns() - t1) * MS
                result = PerceptionObjects(
                    vehicle_id=meta.vehicle_id, camera_id=meta.camera_id,
                    source=FrameRef(seq=meta.seq, stamp_ns=meta.capture_ns), stamp_ns=time.time_ns(),
                    model_version=model.version, model_sha256=model.sha256,
                    objects=[to_wire(o) for o in objects],
                    latencies_ms={"queue": round((arrived_ns - meta.capture_ns) * MS, 3),
                                  "decode": round(decode_ms, 3), "infer": round(infer_ms, 3),
                                  "track": round(track_ms, 3), "batch_size": float(len(frames))},
                    run_id=meta.run_id)
            except Exception as error:  # this frame's own fault (its calibration, its values)
                failed.append((record, error))
                continue
            results.append((record, meta, result, decode_ms, track_ms))
            if self.shadow.model is not None:
                shadow.frames.append((meta, image, decode_ms))
                shadow.production.append(at_operating_score(
                    dets, model.detector.operating_score))
        # The batch's results go out together and are acknowledged together: one broker round
        # trip per batch, not one per frame (queued in order, so per-camera order holds).
        await asyncio.gather(*(self.publish(record, meta.key, result, arrived_ns)
                               for record, meta, result, _, _ in results))
        for record, fault in failed:
            await self.frame.dead_letter(CAMERA_FRAMES, record, fault)
        if shadow.frames:  # the candidate's turn comes after production's results are out
            shadow.published_ns = time.time_ns()
            self.shadow.submit(shadow)
        for _, meta, _, decode_ms, track_ms in results:
            self.stage.labels("decode").observe(decode_ms / 1e3)
            self.stage.labels("track").observe(track_ms / 1e3)
            self.end_to_end.observe((time.time_ns() - meta.capture_ns) / 1e9)
            self.frames_done.inc()

    async def publish(self, record: Record, key: bytes, result: PerceptionObjects,
                      arrived_ns: int) -> None:
        """Publish one frame's result and wait for its acknowledgement."""
        # FastStream gives the batch one trace of its own; each result continues its frame's
        with self.frame.tracing.record_span(record, start_ns=arrived_ns):
            await self.frame.publish(PERCEPTION_OBJECTS, result, key=key)

    async def report_drops(self, drops: list[tuple[Record, FrameMeta, float, str]]) -> None:
        """Count frames dropped on purpose and raise one event per reason and stream group.

        `stale`: over the latency budget; `superseded`: a newer frame of its camera came in the
        same fetch. One event per fetch (naming every dropped seq, referring to the newest)
        rather than one per frame: behind its input the service drops several a second, and
        each event costs the monitor and the audit trail a write.
        """
        groups: dict[tuple[str, str, str], list[tuple[Record, FrameMeta, float]]] = {}
        for record, meta, age_ms, reason in drops:
            self.dropped.labels(meta.camera_id, reason).inc()
            self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + 1
            groups.setdefault((reason, meta.vehicle_id, meta.run_id), []).append(
                (record, meta, age_ms))
        events = []
        for (reason, vehicle, run_id), items in groups.items():
            record, meta, _ = max(items, key=lambda i: i[1].capture_ns)
            events.append(self.frame.emit(safety_event(
                source="perception", type_="frame_dropped", severity=Severity.WARNING,
                vehicle_id=vehicle,
                details={"reason": _DROP_REASONS[reason], "frames": len(items),
                         "frame_seqs": [m.seq for _, m, _ in items],
                         "cameras": sorted({m.camera_id for _, m, _ in items}),
                         "age_ms": round(max(a for _, _, a in items), 1),
                         "budget_ms": self.options.latency_budget_ms, "camera_id": meta.camera_id},
                refs=EventRefs(frame_seq=meta.seq, topic=record.topic, partition=record.partition,
                               offset=record.offset), run_id=run_id)))
        await asyncio.gather(*events)


def build(settings: Settings, bootstrap: str, *, options: PerceptionSettings | None = None,
          detector: Detector | None = None,
          **runtime_kwargs: Any) -> BuiltService[PerceptionService]:
    """The perception service; loads the model here, at start-up (never at import).

    ``detector``: a model built elsewhere (tests), named by its version and no sha256; else
    ``options.weights`` is loaded and named by ``artifact_sha256``.
    Ready facts: ``group``, ``device``, ``model_version``, ``model_sha256``; counts: ``batches``,
    ``batch_mean``, ``batch_sizes`` and ``dropped`` ({reason: n}).
    """
    options = options or PerceptionSettings()

    def load(path: Path) -> Detector:  # a deployed artifact: ours, so no builder or class map
        return load_detector(path, device=settings.device, score_thresh=options.score_thresh,
                             num_threads=model_threads(settings))

    at_start, choice = (model_at_start(settings.model_registry_dir, load)
                        if options.from_registry and detector is None else (None, StartChoice()))
    if at_start is not None:
        model = at_start
    elif detector is None:
        detector = load_detector(options.weights, builder=options.builder,
                                 class_map=options.class_map, device=settings.device,
                                 score_thresh=options.score_thresh,
                                 num_threads=model_threads(settings))
        model = ServedModel(detector, detector.model_version, artifact_sha256(options.weights))
    else:
        model = ServedModel(detector, detector.model_version, None)
    runtime = ServiceRuntime("perception", settings, bootstrap, **runtime_kwargs)
    service = PerceptionService(runtime, model, options)
    # Up to max_fetch_records at once, skipping or not: skipping needs the backlog in hand, and
    # serving every frame, a fetch of several batches pays its acknowledgements, commit and
    # next fetch once for all of them while the model runs the batches back to back (with one
    # batch per fetch those round trips idled the model about 9 ms a batch). Under light load a
    # fetch holds what has come, one frame or two, so nothing waits for a fetch to fill.
    fetch = max(options.max_fetch_records, options.max_batch_size)
    runtime.consume_batch(CAMERA_FRAMES, max_records=fetch,
                          top_up_ms=options.max_wait_ms if options.newest_per_camera else None,
                          max_wait_ms=options.max_wait_ms)(service.handle)
    deployments = Deployments(service, load)
    runtime.consume(MODEL_DEPLOYMENTS, auto_offset_reset="latest",
                    group_id=runtime.instance_group(MODEL_DEPLOYMENTS))(deployments.handle)
    if options.shadow_weights is not None:
        candidate = load(options.shadow_weights)
        service.shadow.begin(ServedModel(candidate, candidate.model_version,
                                         artifact_sha256(options.shadow_weights)))
    runtime.background(service.shadow.run)
    if options.from_registry:
        runtime.background(lambda stop: deployments.follow_registry(
            settings.model_registry_dir, choice, lambda: runtime.wait_assigned(60.0), stop))
    runtime.on_stop(service.worker.shutdown)  # after the last batch drained
    runtime.on_stop(service.shadow.worker.shutdown)
    runtime.on_stop(deployments.worker.shutdown)

    def ready() -> dict[str, Any]:
        served = service.model
        return {"group": runtime.topic_group(CAMERA_FRAMES), "device": str(served.detector.device),
                "model_version": served.version, "model_sha256": served.sha256}

    def counts() -> dict[str, Any]:
        sizes = list(service.batch_sizes)
        return {"batches": len(sizes), "batch_mean": sum(sizes) / len(sizes) if sizes else 0.0,
                "batch_sizes": sizes, "dropped": dict(service.dropped_by_reason),
                "model_swaps": len(deployments.swaps), "model_swaps_failed": deployments.failures,
                "shadow": names_of(service.shadow.model),
                "shadow_reports": list(service.shadow.reports),
                "shadow_failures": service.shadow.failures}

    return BuiltService(runtime, service, ready=ready, counts=counts)
