"""MCAP recordings: lossless envelope, Foxglove-readable schemas, atomic writes, strict reading."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.writer import Writer

from services.messages import (
    CAMERA_FRAMES,
    PLANNING_TRAJECTORY,
    SAFETY_EVENTS,
    VEHICLE_CONTROL,
    VEHICLE_STATE,
    VehicleState,
)
from services.messages.examples import frame_meta, vehicle_state
from services.recording.envelope import KafkaRecord, RecordingError, decode_message, encode_message
from services.recording.mcap_io import RecordingWriter, read_recording, temporary_path
from services.recording.replayer import replay_records, schedule

T0_MS = 1_790_000_000_000


def jpeg(width: int = 32, height: int = 24) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def frame_record(seq: int = 0, at_ms: int = T0_MS) -> KafkaRecord:
    meta = frame_meta(seq)
    return KafkaRecord(topic=CAMERA_FRAMES.name, key=meta.key, value=jpeg(),
                       headers=tuple(meta.to_headers()), timestamp_ms=at_ms, partition=1,
                       offset=seq)


def state_record(speed_mps: float = 13.9, at_ms: int = T0_MS, key: bytes = b"ego",
                 offset: int = 0) -> KafkaRecord:
    value = vehicle_state().model_copy(update={"speed_mps": speed_mps}).encode()
    return KafkaRecord(topic=VEHICLE_STATE.name, key=key, value=value,
                       headers=(("trace", b"abc"), ("bin", b"\xff\x00\x80"), ("empty", None)),
                       timestamp_ms=at_ms, partition=0, offset=offset)


def sample_records() -> list[KafkaRecord]:
    return [
        state_record(1e-7, T0_MS),  # the JSON writer's float format must survive byte for byte
        frame_record(0, T0_MS + 20),
        state_record(1e16, T0_MS + 50, offset=1),
        KafkaRecord(topic=VEHICLE_CONTROL.name, key=b"ego", value='{"note":"héllo ✓"}'.encode(),
                    headers=(("sig-mac", b"\x01\x02"),), timestamp_ms=T0_MS + 60),
        KafkaRecord(topic=SAFETY_EVENTS.name, key=b"\xfe\xff", value=b"not json at all",
                    timestamp_ms=T0_MS + 70),
        KafkaRecord(topic=SAFETY_EVENTS.name, key=None, value=b"{}", timestamp_ms=T0_MS + 80),
        KafkaRecord(topic=SAFETY_EVENTS.name, key=None, value=b'{"_kafka":1,"x":2}',
                    timestamp_ms=T0_MS + 90),
        KafkaRecord(topic=VEHICLE_STATE.dlq, key=b"ego", value=b"\x00garbage",
                    headers=(("dlq-error-class", b"MessageError"),), timestamp_ms=T0_MS + 95),
    ]


def write(path: Path, records: list[KafkaRecord]) -> Path:
    topics = {r.topic for r in records}
    specs = [s for s in (CAMERA_FRAMES, VEHICLE_STATE, PLANNING_TRAJECTORY, VEHICLE_CONTROL,
                         SAFETY_EVENTS) if s.name in topics]
    from services.messages import topic as lookup

    specs += [lookup(t) for t in sorted(topics) if t.endswith(".dlq")]
    with RecordingWriter(path, specs) as writer:
        for record in records:
            writer.write(record)
    return path


@pytest.mark.parametrize("record", sample_records(), ids=lambda r: f"{r.topic}@{r.timestamp_ms}")
def test_every_record_survives_the_envelope_byte_for_byte(record: KafkaRecord) -> None:
    data = encode_message(record)
    json.loads(data)  # every MCAP message is valid JSON (message encoding "json")
    assert decode_message(data, channel_topic=record.topic, source="x") == record


def test_json_payload_fields_stay_at_the_top_level_for_foxglove() -> None:
    record = state_record(12.5)
    data = encode_message(record)
    body = json.loads(data)
    assert body["speed_mps"] == 12.5
    assert body["_kafka"]["key"] == "ego"
    assert body["_kafka"]["value_in"] == "message"
    # The payload model reads the MCAP message directly (unknown fields are ignored).
    assert VehicleState.decode(data).speed_mps == 12.5


def test_camera_frame_is_a_foxglove_compressed_image() -> None:
    record = frame_record(3)
    body = json.loads(encode_message(record))
    capture_ns = frame_meta(3).capture_ns
    assert body["timestamp"] == {"sec": capture_ns // 10**9, "nsec": capture_ns % 10**9}
    assert body["format"] == "jpeg"
    assert body["frame_id"] == "ego/front"
    assert base64.b64decode(body["data"]) == record.value


def test_writer_renames_only_a_finished_file(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "rec.mcap"
    with RecordingWriter(out, [VEHICLE_STATE]) as writer:
        writer.write(state_record())
        assert temporary_path(out).exists()
        assert not out.exists()
    assert out.exists()
    assert not temporary_path(out).exists()
    assert read_recording(out) == [state_record()]


def test_writer_finishes_the_file_when_recording_fails(tmp_path: Path) -> None:
    out = tmp_path / "rec.mcap"
    def record_then_fail() -> None:
        with RecordingWriter(out, [VEHICLE_STATE]) as writer:
            writer.write(state_record())
            writer.write(frame_record())

    with pytest.raises(ValueError, match=r"not one of this recording's topics"):
        record_then_fail()
    assert read_recording(out) == [state_record()]


def test_recording_reads_back_in_order_and_filters_topics(tmp_path: Path) -> None:
    records = sample_records()
    out = write(tmp_path / "rec.mcap", records)
    assert read_recording(out) == records
    only = read_recording(out, [VEHICLE_STATE.name])
    assert only == [r for r in records if r.topic == VEHICLE_STATE.name]


def test_schemas_are_what_foxglove_expects(tmp_path: Path) -> None:
    out = write(tmp_path / "rec.mcap", sample_records())
    with out.open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None
        channels = {c.topic: c for c in summary.channels.values()}
        schemas = summary.schemas
        image = schemas[channels[CAMERA_FRAMES.name].schema_id]
        assert image.name == "foxglove.CompressedImage"
        assert image.encoding == "jsonschema"
        props = json.loads(image.data)["properties"]
        assert {"timestamp", "frame_id", "data", "format"} <= set(props)
        assert props["data"]["contentEncoding"] == "base64"
        state = schemas[channels[VEHICLE_STATE.name].schema_id]
        assert state.encoding == "jsonschema"
        assert state.name == "roadstream.VehicleState"
        assert {"speed_mps", "pose", "stamp_ns", "_kafka"} <= set(json.loads(state.data)["properties"])
        assert all(c.message_encoding == "json" for c in channels.values())
        messages = list(reader.iter_messages(topics=[CAMERA_FRAMES.name]))
    assert len(messages) == 1
    _, _, message = messages[0]
    assert message.log_time == (T0_MS + 20) * 1_000_000
    assert cv2.imdecode(np.frombuffer(base64.b64decode(json.loads(message.data)["data"]), np.uint8),
                        cv2.IMREAD_COLOR) is not None


@pytest.mark.parametrize("keep", [0.5, 0.9, -1])
def test_truncated_recording_is_refused(tmp_path: Path, keep: float) -> None:
    good = write(tmp_path / "good.mcap", sample_records()).read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(good[: int(len(good) * keep)] if keep > 0 else good[:-1])
    with pytest.raises(RecordingError, match=r"cut\.mcap: truncated MCAP file"):
        read_recording(cut)


def test_garbage_and_flipped_bytes_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"this is not an mcap file" * 20)
    with pytest.raises(RecordingError, match=r"garbage\.mcap: not an MCAP file"):
        read_recording(garbage)
    good = write(tmp_path / "good.mcap", sample_records()).read_bytes()
    # One byte in every 97 (data section, indexes, summary): each flip is found.
    for at in range(8, len(good) - 8, 97):
        bad = bytearray(good)
        bad[at] ^= 0xFF
        flipped = tmp_path / "flipped.mcap"
        flipped.write_bytes(bytes(bad))
        with pytest.raises(RecordingError, match=r"flipped\.mcap"):
            read_recording(flipped)


def test_an_mcap_file_without_envelopes_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    writer = Writer(buf)
    writer.start()
    schema = writer.register_schema("x", "jsonschema", b"{}")
    channel = writer.register_channel(VEHICLE_STATE.name, "json", schema)
    writer.add_message(channel, log_time=1, data=b'{"speed_mps":1}', publish_time=1)
    writer.finish()
    foreign = tmp_path / "foreign.mcap"
    foreign.write_bytes(buf.getvalue())
    with pytest.raises(RecordingError, match=r"foreign\.mcap: message 1 .*not written by roadstream"):
        read_recording(foreign)


def test_schedule_orders_by_time_but_never_reorders_a_key() -> None:
    a0 = state_record(1.0, T0_MS + 100, key=b"a")
    a1 = state_record(2.0, T0_MS + 40, key=b"a")  # its clock went backwards: stays after a0
    b0 = state_record(3.0, T0_MS + 0, key=b"b")
    b1 = state_record(4.0, T0_MS + 300, key=b"b")
    plan = schedule([a0, a1, b0, b1])
    assert [p.record for p in plan] == [b0, a0, a1, b1]
    assert [p.offset_ns // 1_000_000 for p in plan] == [0, 100, 100, 300]


class CountingPublisher:
    """A fake publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes | None]]]] = []
        self.flushes = 0

    async def send(self, topic: str, value: bytes, *, key: bytes | None,
                   headers: object) -> None:
        self.sent.append((topic, value, key, list(headers)))  # type: ignore[call-overload]

    async def flush(self) -> None:
        self.flushes += 1


async def test_replay_publishes_the_original_records_in_schedule_order(tmp_path: Path) -> None:
    records = sample_records()
    plan = schedule(read_recording(write(tmp_path / "rec.mcap", records)))
    publisher = CountingPublisher()
    assert await replay_records(plan, publisher, rate=0) == len(records)
    assert publisher.sent == [(r.topic, r.value, r.key, list(r.headers)) for r in records]
    assert publisher.flushes == 1


async def test_replay_loop_stops_on_the_stop_event() -> None:
    plan = schedule([state_record(float(i), T0_MS + i, offset=i) for i in range(3)])
    stop = asyncio.Event()

    class StopAfter(CountingPublisher):
        async def send(self, topic: str, value: bytes, *, key: bytes | None,
                       headers: object) -> None:
            await super().send(topic, value, key=key, headers=headers)
            if len(self.sent) == 7:
                stop.set()

    publisher = StopAfter()
    assert await replay_records(plan, publisher, rate=0, loop=True, stop=stop) == 7
    assert [json.loads(v)["speed_mps"] for _, v, _, _ in publisher.sent] == [0, 1, 2, 0, 1, 2, 0]
