"""Record → replay through the embedded broker, and camera streams from images and video."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from mcap.reader import make_reader

from services.messages import CAMERA_FRAMES, VEHICLE_CONTROL, VEHICLE_STATE, FrameMeta
from services.messages.examples import frame_meta, vehicle_state
from services.recording.mcap_io import read_recording, temporary_path
from services.recording.recorder import Recorder
from services.recording.replayer import KafkaPublisher, replay_records, schedule
from services.recording.service import RecorderSettings, build
from services.settings import Settings
from tests.kafka_helpers import MAX_BYTES, collect, produce

pytestmark = pytest.mark.integration

Item = tuple[str, bytes, bytes, list[tuple[str, bytes]], int]  # topic, key, value, headers, at_ms
TIMING_TOLERANCE_MS = 5


def originals(unique: str) -> list[Item]:
    """Messages on three topics and four keys, with known gaps (0, 50, 120, 300 ms …)."""
    a, b = f"{unique}-a".encode(), f"{unique}-b".encode()
    frame = frame_meta(0, run_id=unique).model_copy(update={"vehicle_id": unique})
    ok, jpeg = cv2.imencode(".jpg", np.full((36, 64, 3), 90, np.uint8))
    assert ok

    def state(speed_mps: float, key: bytes) -> bytes:
        return vehicle_state().model_copy(update={"speed_mps": speed_mps, "run_id": unique,
                                                  "vehicle_id": key.decode()}).encode()

    control = json.dumps({"run_id": unique, "note": "signed bytes must survive"}).encode()
    return [
        (VEHICLE_STATE.name, a, state(1e-7, a), [("trace", b"t0")], 0),
        (VEHICLE_STATE.name, b, state(2.0, b), [], 0),
        (CAMERA_FRAMES.name, frame.key, jpeg.tobytes(), frame.to_headers(), 50),
        (VEHICLE_STATE.name, a, state(3.5, a), [("bin", b"\xff\x00")], 120),
        (VEHICLE_CONTROL.name, a, control, [("sig-mac", b"\x8a\x01\xfe")], 170),
        (VEHICLE_STATE.name, b, state(1e16, b), [], 300),
        (VEHICLE_STATE.name, a, state(5.0, a), [], 310),
        (VEHICLE_STATE.name, b, state(6.0, b), [("trace", b"t7")], 420),
    ]


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    """The next offset of every partition of `topics`."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(list(consumer.assignment()))
    finally:
        await consumer.stop()


async def read_after(bootstrap: str, offsets: dict[TopicPartition, int], keys: set[bytes],
                     count: int, timeout_s: float = 15.0) -> list[ConsumerRecord]:
    """Records after `offsets` (that is, the replayed ones) with one of `keys`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                max_partition_fetch_bytes=MAX_BYTES, fetch_max_wait_ms=20)
    await consumer.start()
    consumer.assign(list(offsets))
    for tp, offset in offsets.items():
        consumer.seek(tp, offset)
    found: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(r for r in records if r.key in keys)
    finally:
        await consumer.stop()
    return found


async def test_record_then_replay_keeps_payloads_key_order_and_timing(
        own_kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    kafka_bootstrap = own_kafka_bootstrap  # the recorder starts at the end (see the fixture)
    items = originals(unique)
    topics = [VEHICLE_STATE, CAMERA_FRAMES, VEHICLE_CONTROL]
    out = tmp_path / "round.mcap"
    settings = Settings()
    ready = asyncio.Event()
    recorder = Recorder(settings, kafka_bootstrap, topics, out)
    task = asyncio.create_task(recorder.run(duration_s=20, max_messages=len(items),
                                            on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 10)
    base_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False,
                                max_request_size=MAX_BYTES)
    await producer.start()
    try:
        for topic, key, value, headers, at_ms in items:
            await producer.send_and_wait(topic, value, key=key, headers=headers,
                                         timestamp_ms=base_ms + at_ms)
    finally:
        await producer.stop()
    result = await asyncio.wait_for(task, 20)
    assert result.stopped_by == "max-messages"
    assert result.messages == len(items)
    assert not temporary_path(out).exists()

    # The file holds every record with the broker's timestamps: the gaps we produced.
    recorded = read_recording(out)
    by_value = {r.value: r for r in recorded}
    for topic, key, value, headers, at_ms in items:
        r = by_value[value]
        assert (r.topic, r.key, list(r.headers), r.timestamp_ms) == (topic, key, headers,
                                                                       base_ms + at_ms)

    # Foxglove-readable schemas.
    with out.open("rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    channels = {c.topic: summary.schemas[c.schema_id] for c in summary.channels.values()}
    assert channels[CAMERA_FRAMES.name].name == "foxglove.CompressedImage"
    assert channels[VEHICLE_STATE.name].encoding == "jsonschema"
    assert channels[VEHICLE_CONTROL.name].encoding == "jsonschema"

    # Replay at rate 1 and read back only what was published after this point.
    keys = {key for _, key, _, _, _ in items}
    before = await end_offsets(kafka_bootstrap, [t.name for t in topics])
    async with KafkaPublisher(settings, kafka_bootstrap) as publisher:
        sent = await replay_records(schedule(recorded), publisher, rate=1.0)
    assert sent == len(items)
    replayed = await read_after(kafka_bootstrap, before, keys, len(items))
    assert len(replayed) == len(items)

    # Payloads, keys and headers byte for byte, in the original order of every key.
    want: dict[tuple[str, bytes], list[tuple[bytes, list[tuple[str, bytes]], int]]] = defaultdict(list)
    for topic, key, value, headers, at_ms in items:
        want[(topic, key)].append((value, headers, at_ms))
    got: dict[tuple[str, bytes], list[ConsumerRecord]] = defaultdict(list)
    for r in sorted(replayed, key=lambda r: (r.topic, r.partition, r.offset)):
        got[(r.topic, r.key)].append(r)
    assert set(got) == set(want)
    # Timing: each replayed record's Kafka timestamp is CreateTime, stamped by the replayer's
    # producer when it sent the record (not by the broker, not when we read it), so it
    # measures the replayer's schedule itself. Compare offsets from the first record.
    assert all(r.timestamp_type == 0 for r in replayed)
    first_ms = min(r.timestamp for r in replayed)
    errors_ms = []
    for slot, records in got.items():
        assert [(bytes(r.value), [(k, bytes(v)) for k, v in r.headers]) for r in records] == \
            [(value, headers) for value, headers, _ in want[slot]]
        errors_ms += [(r.timestamp - first_ms) - at_ms
                      for r, (_, _, at_ms) in zip(records, want[slot], strict=True)]
    assert max(abs(e) for e in errors_ms) <= TIMING_TOLERANCE_MS, errors_ms


def _cli(*args: str, bootstrap: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ROADSTREAM_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.Popen([sys.executable, "-m", "services.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_record_command_finishes_the_file_on_sigterm(kafka_bootstrap: str, unique: str,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "cli.mcap"
    proc = _cli("record", "--topics", VEHICLE_STATE.name, "--out", str(out), "--json",
                bootstrap=kafka_bootstrap)
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 30)
        assert "recording 1 topic(s)" in line
        values = [vehicle_state().model_copy(update={"run_id": f"{unique}-{i}"}).encode()
                  for i in range(3)]
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(VEHICLE_STATE.name, value, key=unique.encode())
        finally:
            await producer.stop()
        await asyncio.sleep(1.0)  # let the recorder fetch them (it polls every 100 ms)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(asyncio.to_thread(proc.communicate), 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "signal"
    assert out.exists()
    assert not temporary_path(out).exists()
    assert [r.value for r in read_recording(out) if r.key == unique.encode()] == values


def _images(folder: Path) -> list[np.ndarray]:
    folder.mkdir()
    images = []
    for i in range(3):
        img = np.full((48, 64, 3), 40 * i, np.uint8)
        cv2.rectangle(img, (5 + 10 * i, 5), (25 + 10 * i, 30), (0, 200, 255), -1)
        cv2.imwrite(str(folder / f"img_{i:03d}.{'png' if i == 1 else 'jpg'}"), img)
        images.append(img)
    return images


def _frames(bootstrap: str, vehicle_id: str, count: int) -> list[ConsumerRecord]:
    key = f"{vehicle_id}/front".encode()
    return asyncio.run(collect(bootstrap, CAMERA_FRAMES.name, lambda r: r.key == key, count))


def test_replay_of_an_image_folder_publishes_decodable_frames(
        kafka_bootstrap: str, unique: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli.main import main

    images = _images(tmp_path / "imgs")
    monkeypatch.setenv("ROADSTREAM_BOOTSTRAP_SERVERS", kafka_bootstrap)
    assert main(["replay", str(tmp_path / "imgs"), "--vehicle-id", unique, "--fps", "50"]) == 0
    frames = _frames(kafka_bootstrap, unique, 3)
    assert len(frames) == 3
    metas = [FrameMeta.from_headers(r.headers) for r in frames]
    assert [m.seq for m in metas] == [0, 1, 2]
    assert [m.content_type for m in metas] == ["image/jpeg", "image/png", "image/jpeg"]
    for record, meta, original in zip(frames, metas, images, strict=True):
        decoded = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        assert decoded.shape == (meta.height, meta.width, 3) == original.shape
        assert np.abs(decoded.astype(int) - original.astype(int)).mean() < 3  # JPEG loss only
        assert (meta.calibration.fx, meta.calibration.cx, meta.calibration.cy) == (64.0, 32.0, 24.0)


def test_replay_of_a_video_file_publishes_decodable_frames(
        kafka_bootstrap: str, unique: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli.main import main

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (80, 60))
    for i in range(5):
        writer.write(np.full((60, 80, 3), 50 * i, np.uint8))
    writer.release()
    monkeypatch.setenv("ROADSTREAM_BOOTSTRAP_SERVERS", kafka_bootstrap)
    assert main(["replay", str(path), "--vehicle-id", unique, "--rate", "0",
                 "--run-id", unique]) == 0
    frames = _frames(kafka_bootstrap, unique, 5)
    assert len(frames) == 5
    for seq, record in enumerate(frames):
        meta = FrameMeta.from_headers(record.headers)
        assert (meta.seq, meta.run_id, meta.width, meta.height) == (seq, unique, 80, 60)
        decoded = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        assert decoded.shape == (60, 80, 3)
        assert abs(float(decoded.mean()) - 50 * seq) < 4


async def test_recorder_service_writes_a_complete_file(kafka_bootstrap: str, unique: str,
                                                       tmp_path: Path) -> None:
    frame = build(Settings(), kafka_bootstrap,
                  options=RecorderSettings(folder=tmp_path, rotate_s=30))
    await frame.start()
    try:
        await asyncio.sleep(1.5)  # the recorder positions itself on every partition
        state = vehicle_state().model_copy(update={"run_id": unique}).encode()
        await produce(kafka_bootstrap, "vehicle.state", [(b"ego", state, [])])
        await asyncio.sleep(1.5)
    finally:
        await frame.stop()
    files = sorted(tmp_path.glob("*.mcap"))
    assert len(files) == 1
    assert not list(tmp_path.glob("*.tmp"))
    with files[0].open("rb") as f:
        values = [m.data for _, _, m in make_reader(f).iter_messages()]
    assert any(unique.encode() in v for v in values)
