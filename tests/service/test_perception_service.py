"""The perception service with TestKafkaBroker: frames in, objects out, bad frames dead-lettered."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from perception.detector import Detector
from perception.model import build_detector
from services.messages import FrameMeta, PerceptionObjects, SafetyEvent
from services.messages.examples import CALIBRATION
from services.perception import decode as decode_module
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.runtime.delivery import Record
from services.settings import Settings
from tests.hostile_images import bomb_png, encoded, jpeg_claiming


def tiny_detector() -> Detector:
    torch.manual_seed(0)
    model = build_detector(arch="ssdlite", image_size=(96, 160))
    return Detector(model, device="cpu", score_thresh=0.0, model_version="test-random",
                    num_threads=1)


def frame(seq: int, *, stamp_ns: int | None = None,
          camera: str = "front") -> tuple[bytes, dict[str, str]]:
    img = np.full((360, 640, 3), 90, np.uint8)
    cv2.rectangle(img, (280, 160), (360, 220), (30, 30, 200), -1)
    meta = FrameMeta(vehicle_id="ego", camera_id=camera, seq=seq,
                     capture_ns=stamp_ns or time.time_ns(), width=640, height=360,
                     calibration=CALIBRATION, run_id="svc", traceparent="00-" + "a" * 32 + "-"
                     + "b" * 16 + "-01")
    return cv2.imencode(".jpg", img)[1].tobytes(), {k: v.decode() for k, v in meta.to_headers()}


@pytest.fixture
def service() -> Any:
    return build(Settings(), "localhost:9092", options=PerceptionSettings(latency_budget_ms=2000),
                 detector=tiny_detector())


async def test_frames_in_objects_out_linked_by_seq(service: Any) -> None:
    out: list[tuple[PerceptionObjects, dict[str, str]]] = []

    @service.runtime.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append((PerceptionObjects.decode(msg.body), dict(msg.headers)))

    async with TestKafkaBroker(service.runtime.broker) as br:
        for seq in (3, 4):
            value, headers = frame(seq)
            await br.publish(value, topic="camera.frames", key=b"ego/front", headers=headers)

    assert [o.source.seq for o, _ in out] == [3, 4]
    first, headers = out[0]
    assert first.model_version == "test-random"
    assert {"decode", "infer", "track", "queue"} <= set(first.latencies_ms)
    assert first.camera_id == "front"
    assert headers["traceparent"].startswith("00-aaaa")


async def test_corrupt_frame_goes_to_dlq_and_next_is_served(service: Any) -> None:
    out: list[int] = []
    dlq: list[dict[str, str]] = []
    events: list[SafetyEvent] = []

    @service.runtime.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).source.seq)

    @service.runtime.broker.subscriber("camera.frames.dlq")
    async def on_dlq(msg: KafkaMessage) -> None:
        dlq.append(dict(msg.headers))

    @service.runtime.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    async with TestKafkaBroker(service.runtime.broker) as br:
        value, headers = frame(1)
        await br.publish(value[:400], topic="camera.frames", key=b"ego/front", headers=headers)
        value, headers = frame(2)
        await br.publish(value, topic="camera.frames", key=b"ego/front", headers=headers)
        await service.runtime.dead_letters.flush()  # dead-letter events are aggregated

    assert out == [2]
    assert len(dlq) == 1
    assert dlq[0]["dlq-error-class"] == "FrameError"
    assert "truncated JPEG" in dlq[0]["dlq-error-message"]
    assert [e.type for e in events] == ["dead_letter"]


async def test_stale_frame_is_dropped_counted_and_reported(service: Any) -> None:
    out: list[int] = []
    events: list[SafetyEvent] = []

    @service.runtime.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).source.seq)

    @service.runtime.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    async with TestKafkaBroker(service.runtime.broker) as br:
        value, headers = frame(1, stamp_ns=time.time_ns() - 5_000_000_000)
        await br.publish(value, topic="camera.frames", key=b"ego/front", headers=headers)

    assert out == []
    assert [(e.type, e.references.frame_seq) for e in events] == [("frame_dropped", 1)]
    assert service.service.dropped.labels("front", "stale")._value.get() == 1


def record(seq: int, camera: str, stamp_ns: int) -> Record:
    value, headers = frame(seq, stamp_ns=stamp_ns, camera=camera)
    return Record(topic="camera.frames", partition=0, offset=seq, key=f"ego/{camera}".encode(),
                  value=value, headers=tuple((k, v.encode()) for k, v in headers.items()))


async def test_a_batch_behind_its_input_serves_each_cameras_newest_frame(service: Any) -> None:
    out: list[tuple[str, int]] = []
    events: list[SafetyEvent] = []

    @service.runtime.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        objects = PerceptionObjects.decode(msg.body)
        out.append((objects.camera_id, objects.source.seq))

    @service.runtime.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    now = time.time_ns()
    batch = [record(1, "front", now - 300_000_000), record(2, "rear", now - 250_000_000),
             record(3, "front", now - 200_000_000), record(4, "front", now - 100_000_000)]
    async with TestKafkaBroker(service.runtime.broker):
        await service.service.handle(batch)

    assert sorted(out) == [("front", 4), ("rear", 2)]
    # one event for the fetch, naming both dropped frames and referring to the newer
    assert [(e.type, e.references.frame_seq, e.details["reason"], e.details["frame_seqs"])
            for e in events] == [("frame_dropped", 3, "superseded by a newer frame of its camera",
                                  [1, 3])]
    assert service.service.dropped.labels("front", "superseded")._value.get() == 2
    assert service.service.dropped_by_reason == {"superseded": 2}


async def test_the_primary_cameras_frame_is_served_first_in_a_batch_of_its_own(
        service: Any) -> None:
    out: list[str] = []

    @service.runtime.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).camera_id)

    now = time.time_ns()
    fetch = [record(1, "front_wide", now - 60_000_000), record(2, "rear", now - 55_000_000),
             record(3, "front", now - 50_000_000)]
    async with TestKafkaBroker(service.runtime.broker):
        await service.service.handle(fetch)
    assert out[0] == "front"
    assert sorted(out[1:]) == ["front_wide", "rear"]
    assert service.service.batch_sizes == [1, 2]


async def test_with_skipping_off_every_frame_of_a_batch_is_served() -> None:
    built = build(Settings(), "localhost:9092",
                  options=PerceptionSettings(latency_budget_ms=2000, newest_per_camera=False),
                  detector=tiny_detector())
    out: list[int] = []

    @built.runtime.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).source.seq)

    now = time.time_ns()
    async with TestKafkaBroker(built.runtime.broker):
        await built.service.handle([record(seq, "front", now - (5 - seq) * 50_000_000)
                                    for seq in (1, 2, 3)])
    assert sorted(out) == [1, 2, 3]  # the test double hands out a batch's publishes unordered


def hostile(seq: int, value: bytes, *, content_type: str = "image/jpeg") -> Record:
    """A frame record of the front camera carrying `value` as its image."""
    good = record(seq, "front", time.time_ns())
    headers = tuple((k, content_type.encode() if k == "content-type" else v) for k, v in good.headers)
    return replace(good, value=value, headers=headers)


async def test_bad_frames_of_a_batch_fail_alone_each_with_its_own_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built = build(Settings(), "localhost:9092",
                  options=PerceptionSettings(latency_budget_ms=5000, newest_per_camera=False,
                                             max_batch_size=8), detector=tiny_detector())
    broker, perception = built.runtime.broker, built.service
    raising_frame = frame(3)[0][:-2] + b"\xff\xferaise\xff\xd9"  # a comment before EOI
    real_decode_jpeg = decode_module.simplejpeg.decode_jpeg

    def decode_jpeg(data: bytes, **kwargs: Any) -> np.ndarray:
        if bytes(data) == raising_frame:  # a decoder fault no check can foresee
            raise RuntimeError("libjpeg-turbo: internal error\n  in jdhuff.c")
        return real_decode_jpeg(data, **kwargs)

    monkeypatch.setattr(decode_module.simplejpeg, "decode_jpeg", decode_jpeg)
    # the detector fails on one frame, wherever it sits in a batch (a bug it has for that image)
    poisoned = np.full((360, 640, 3), 7, np.uint8)
    real_detect = perception.detector.detect

    def detect(images: list[Any]) -> Any:
        if any(isinstance(i, np.ndarray) and i.shape == poisoned.shape and (i == 7).all()
               for i in images):
            raise ValueError("the detector choked on this image")
        return real_detect(images)

    monkeypatch.setattr(perception.detector, "detect", detect)
    out: list[int] = []
    dlq: dict[str, dict[str, str]] = {}

    @broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).source.seq)

    @broker.subscriber("camera.frames.dlq")
    async def on_dlq(msg: KafkaMessage) -> None:
        headers = {k: v if isinstance(v, str) else v.decode() for k, v in dict(msg.headers).items()}
        dlq[headers["dlq-source-offset"]] = headers

    batch = [record(1, "front", time.time_ns()),
             hostile(2, encoded(".png"), content_type="image/png"),
             hostile(3, raising_frame),
             hostile(4, bomb_png(20000, 20000), content_type="image/png"),
             hostile(5, jpeg_claiming(1280, 720, frame(5)[0])),
             hostile(6, cv2.imencode(".jpg", poisoned, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()),
             record(7, "front", time.time_ns())]
    async with TestKafkaBroker(broker):
        await perception.handle(batch)

    assert sorted(out) == [1, 2, 7]  # the valid frames are served, JPEG and PNG
    assert sorted(dlq) == ["3", "4", "5", "6"]
    assert {k: (h["dlq-error-class"], h["dlq-source-offset"]) for k, h in dlq.items()} == {
        "3": ("FrameError", "3"), "4": ("FrameError", "4"), "5": ("FrameError", "5"),
        "6": ("ValueError", "6")}
    assert "decoder raised RuntimeError: libjpeg-turbo: internal error in jdhuff.c" in \
        dlq["3"]["dlq-error-message"]
    assert "image is 20000x20000 (400000000 pixels): exceeds" in dlq["4"]["dlq-error-message"]
    assert "image is 1280x720 but the headers say 640x360" in dlq["5"]["dlq-error-message"]
    assert dlq["6"]["dlq-error-message"] == "the detector choked on this image"
    assert all(h["dlq-error-message"].startswith(f"camera.frames[0]@{k}:")
               for k, h in dlq.items() if k != "6")


def test_trackers_of_invented_or_silent_camera_streams_are_forgotten() -> None:
    """A producer inventing camera ids cannot grow the service: beyond max_streams the longest
    silent stream goes, and a stream silent for stream_forget_s goes too."""
    built = build(Settings(), "localhost:9092",
                  options=PerceptionSettings(max_streams=3, stream_forget_s=0.2),
                  detector=tiny_detector())
    service = built.service

    def meta(camera: str) -> FrameMeta:
        _, headers = frame(1, camera=camera)
        return FrameMeta.from_headers([(k, v.encode()) for k, v in headers.items()])

    first = service.camera(meta("cam0"))
    for i in range(1, 10):
        service.camera(meta(f"cam{i}"))
    assert list(service.cameras) == ["svc/ego/cam7", "svc/ego/cam8", "svc/ego/cam9"]
    assert built.runtime.registry.get_sample_value(
        "roadstream_camera_streams_forgotten_total") == 7
    assert service.camera(meta("cam9")) is service.cameras["svc/ego/cam9"]  # kept, not rebuilt
    assert service.camera(meta("cam0")) is not first  # came back: a new tracker
    time.sleep(0.3)  # all silent longer than stream_forget_s
    service.camera(meta("cam5"))
    assert list(service.cameras) == ["svc/ego/cam5"]
