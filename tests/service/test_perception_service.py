"""The perception service with TestKafkaBroker: frames in, objects out, bad frames dead-lettered."""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from perception.detector import Detector
from perception.model import build_detector
from services.runtime.delivery import Record
from services.messages import FrameMeta, PerceptionObjects, SafetyEvent
from services.messages.examples import CALIBRATION
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.settings import Settings


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

    @service.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append((PerceptionObjects.decode(msg.body), dict(msg.headers)))

    async with TestKafkaBroker(service.broker) as br:
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

    @service.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).source.seq)

    @service.broker.subscriber("camera.frames.dlq")
    async def on_dlq(msg: KafkaMessage) -> None:
        dlq.append(dict(msg.headers))

    @service.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    async with TestKafkaBroker(service.broker) as br:
        value, headers = frame(1)
        await br.publish(value[:400], topic="camera.frames", key=b"ego/front", headers=headers)
        value, headers = frame(2)
        await br.publish(value, topic="camera.frames", key=b"ego/front", headers=headers)

    assert out == [2]
    assert len(dlq) == 1
    assert dlq[0]["dlq-error-class"] == "FrameError"
    assert "truncated JPEG" in dlq[0]["dlq-error-message"]
    assert [e.type for e in events] == ["dead_letter"]


async def test_stale_frame_is_dropped_counted_and_reported(service: Any) -> None:
    out: list[int] = []
    events: list[SafetyEvent] = []

    @service.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).source.seq)

    @service.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    async with TestKafkaBroker(service.broker) as br:
        value, headers = frame(1, stamp_ns=time.time_ns() - 5_000_000_000)
        await br.publish(value, topic="camera.frames", key=b"ego/front", headers=headers)

    assert out == []
    assert [(e.type, e.references.frame_seq) for e in events] == [("frame_dropped", 1)]
    assert service.perception.dropped.labels("front", "stale")._value.get() == 1


def record(seq: int, camera: str, stamp_ns: int) -> Record:
    value, headers = frame(seq, stamp_ns=stamp_ns, camera=camera)
    return Record(topic="camera.frames", partition=0, offset=seq, key=f"ego/{camera}".encode(),
                  value=value, headers=tuple((k, v.encode()) for k, v in headers.items()))


async def test_a_batch_behind_its_input_serves_each_cameras_newest_frame(service: Any) -> None:
    out: list[tuple[str, int]] = []
    events: list[SafetyEvent] = []

    @service.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        objects = PerceptionObjects.decode(msg.body)
        out.append((objects.camera_id, objects.source.seq))

    @service.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    now = time.time_ns()
    batch = [record(1, "front", now - 300_000_000), record(2, "rear", now - 250_000_000),
             record(3, "front", now - 200_000_000), record(4, "front", now - 100_000_000)]
    async with TestKafkaBroker(service.broker):
        await service.perception.handle(batch)

    assert sorted(out) == [("front", 4), ("rear", 2)]
    # one event for the fetch, naming both dropped frames and referring to the newer
    assert [(e.type, e.references.frame_seq, e.details["reason"], e.details["frame_seqs"])
            for e in events] == [("frame_dropped", 3, "superseded by a newer frame of its camera",
                                  [1, 3])]
    assert service.perception.dropped.labels("front", "superseded")._value.get() == 2
    assert service.perception.dropped_by_reason == {"superseded": 2}


async def test_the_primary_cameras_frame_is_served_first_in_a_batch_of_its_own(
        service: Any) -> None:
    out: list[str] = []

    @service.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).camera_id)

    now = time.time_ns()
    fetch = [record(1, "front_wide", now - 60_000_000), record(2, "rear", now - 55_000_000),
             record(3, "front", now - 50_000_000)]
    async with TestKafkaBroker(service.broker):
        await service.perception.handle(fetch)
    assert out[0] == "front"
    assert sorted(out[1:]) == ["front_wide", "rear"]
    assert service.perception.batch_sizes == [1, 2]


async def test_with_skipping_off_every_frame_of_a_batch_is_served() -> None:
    frame_ = build(Settings(), "localhost:9092",
                   options=PerceptionSettings(latency_budget_ms=2000, newest_per_camera=False),
                   detector=tiny_detector())
    out: list[int] = []

    @frame_.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body).source.seq)

    now = time.time_ns()
    async with TestKafkaBroker(frame_.broker):
        await frame_.perception.handle([record(seq, "front", now - (5 - seq) * 50_000_000)
                                        for seq in (1, 2, 3)])
    assert sorted(out) == [1, 2, 3]  # the test double hands out a batch's publishes unordered
