"""What the perception service and its shadow share: a batch through a detector, a stream's
name, an object as the contract carries it."""

from __future__ import annotations

import time

from perception.detections import Detections
from perception.detector import Detector
from perception.pipeline import PerceivedObject
from services.messages import DetectedObject, FrameMeta, Vec2, Vec3
from services.perception.decode import Image

MS = 1e-6  # ns → ms


def to_wire(obj: PerceivedObject) -> DetectedObject:
    """A tracked, ranged object as the contract carries it."""
    pos = obj.position_m
    vel, acc = obj.velocity_mps, obj.accel_mps2
    return DetectedObject(
        track_id=obj.track_id, object_class=obj.class_name,
        score=round(float(obj.score), 4), box=obj.box,
        position_m=Vec3(x=pos[0], y=pos[1], z=pos[2]) if pos else None,
        velocity_mps=Vec2(x=vel[0], y=vel[1]) if vel else None,
        accel_mps2=Vec2(x=acc[0], y=acc[1]) if acc else None,
        ttc_s=obj.ttc_s)


def stream_of(meta: FrameMeta) -> str:
    """A frame's camera stream: run, vehicle and camera (a new run starts fresh tracks)."""
    return f"{meta.run_id}/{meta.key.decode()}"


def detect_batch(detector: Detector, images: list[Image]
                 ) -> tuple[list[Detections | Exception], float]:
    """``detector`` on one batch, and its time [ms] (on the calling worker thread).

    When the batch fails, each image is run alone, so an error is reported against the
    image that raised it (in its place in the list), not against its whole batch.
    """
    t0 = time.perf_counter_ns()
    detections: list[Detections | Exception]
    try:
        detections = list(detector.detect(images))
    except Exception as error:
        if len(images) == 1:
            detections = [error]
        else:
            detections = []
            for image in images:
                try:
                    detections.extend(detector.detect([image]))
                except Exception as own:
                    detections.append(own)
    return detections, (time.perf_counter_ns() - t0) * MS
