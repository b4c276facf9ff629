"""One Kafka record ⇄ one MCAP message: readable by Foxglove, lossless for replay.

Every MCAP message is a JSON object whose first field is `_kafka`, the envelope of the original
record: topic, partition, offset, timestamp, key and headers (text when UTF-8, else base64).
Where the value itself lives is said by `_kafka.value_in`:

- `"message"`: the value is a JSON object and the rest of this MCAP message *is* its original
  bytes: the message is `{"_kafka":<envelope>,` followed by the value without its opening
  brace. Foxglove sees the payload fields at the top level; replay cuts the envelope off again
  and gets the value back byte for byte (signed `vehicle.control` values stay valid).
- `"data"`: camera frames; the message is a `foxglove.CompressedImage` (timestamp, frame_id,
  format, data) and the image bytes are the base64 `data` field.
- `"value_b64"`: anything else (dead letters, a value that is not a JSON object); the bytes are
  base64 in `_kafka.value_b64`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Final

from services.messages import CAMERA_FRAMES, FrameMeta, MessageError

ENVELOPE_FIELD: Final = "_kafka"
ENVELOPE_VERSION: Final = 1
_PREFIX: Final = '{"' + ENVELOPE_FIELD + '":'
_FORMATS: Final = {"image/jpeg": "jpeg", "image/png": "png"}


class RecordingError(ValueError):
    """A recording or replay source that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class KafkaRecord:
    """One Kafka record as recorded: everything needed to publish it again unchanged."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int = 0
    partition: int = -1
    offset: int = -1
    timestamp_type: int = 0  # 0 = CreateTime (the producer's clock), 1 = LogAppendTime

    @property
    def time_ns(self) -> int:
        """The Kafka timestamp [ns since the Unix epoch] (Kafka keeps milliseconds)."""
        return self.timestamp_ms * 1_000_000


def encode_message(record: KafkaRecord) -> bytes:
    """The MCAP message bytes (JSON) of one record; see the module docstring."""
    envelope = _envelope(record)
    if record.topic == CAMERA_FRAMES.name:
        envelope["value_in"] = "data"
        sec, nsec = divmod(_frame_stamp_ns(record), 1_000_000_000)
        image = {
            ENVELOPE_FIELD: envelope,
            "timestamp": {"sec": sec, "nsec": nsec},
            "frame_id": _text(record.key) or "",
            "format": _image_format(record),
            "data": base64.b64encode(record.value).decode("ascii"),
        }
        return json.dumps(image, ensure_ascii=True, separators=(",", ":")).encode()
    if _spliceable(record.value):
        envelope["value_in"] = "message"
        return (_PREFIX + _dump(envelope) + ",").encode() + record.value[1:]
    envelope["value_in"] = "value_b64"
    envelope["value_b64"] = base64.b64encode(record.value).decode("ascii")
    return (_PREFIX + _dump(envelope) + "}").encode()


def decode_message(data: bytes, *, channel_topic: str, source: str) -> KafkaRecord:
    """The original record of one MCAP message; RecordingError names `source` and the problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{source}: message is not UTF-8 JSON ({exc.reason})") from None
    if not text.startswith(_PREFIX):
        raise RecordingError(f"{source}: message has no {ENVELOPE_FIELD!r} envelope first "
                             "(not written by roadstream record)")
    try:
        envelope, end = json.JSONDecoder().raw_decode(text, len(_PREFIX))
        record = _from_envelope(envelope, channel_topic)
        value = _value(envelope, text, data, end)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise RecordingError(f"{source}: bad {ENVELOPE_FIELD!r} envelope ({exc})") from None
    return KafkaRecord(**{**record, "value": value})


def _envelope(record: KafkaRecord) -> dict[str, Any]:
    envelope: dict[str, Any] = {"v": ENVELOPE_VERSION, "topic": record.topic,
                                "partition": record.partition, "offset": record.offset,
                                "timestamp_ms": record.timestamp_ms,
                                "timestamp_type": record.timestamp_type}
    envelope.update(_text_or_b64("key", record.key))
    envelope["headers"] = [{"name": name, **_text_or_b64("value", value)}
                           for name, value in record.headers]
    return envelope


def _from_envelope(envelope: Any, channel_topic: str) -> dict[str, Any]:
    if not isinstance(envelope, dict):
        raise TypeError("envelope is not an object")
    if envelope.get("topic") != channel_topic:
        raise ValueError(f"topic {envelope.get('topic')!r} differs from the channel's "
                         f"{channel_topic!r}")
    headers = tuple((str(h["name"]), _from_text_or_b64(h, "value")) for h in envelope["headers"])
    return {"topic": channel_topic, "key": _from_text_or_b64(envelope, "key"), "headers": headers,
            "timestamp_ms": int(envelope["timestamp_ms"]),
            "partition": int(envelope.get("partition", -1)),
            "offset": int(envelope.get("offset", -1)),
            "timestamp_type": int(envelope.get("timestamp_type", 0))}


def _value(envelope: dict[str, Any], text: str, data: bytes, end: int) -> bytes:
    where = envelope.get("value_in")
    if where == "message":
        # The prefix and the envelope are ASCII, so `end` is a byte offset too.
        if text[end:end + 1] != ",":
            raise ValueError("no value after the envelope")
        return b"{" + data[end + 1:]
    if where == "value_b64":
        return base64.b64decode(envelope["value_b64"], validate=True)
    if where == "data":
        body = json.loads(text)
        return base64.b64decode(body["data"], validate=True)
    raise ValueError(f"unknown value_in {where!r}")


def _spliceable(value: bytes) -> bool:
    """A non-empty JSON object in UTF-8, starting with `{`, without its own `_kafka` field."""
    if not value.startswith(b"{"):
        return False
    try:
        parsed = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(parsed, dict) and bool(parsed) and ENVELOPE_FIELD not in parsed


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _text_or_b64(name: str, raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {name: None}
    text = _text(raw)
    if text is not None:
        return {name: text}
    return {name + "_b64": base64.b64encode(raw).decode("ascii")}


def _from_text_or_b64(obj: dict[str, Any], name: str) -> bytes | None:
    if name + "_b64" in obj:
        return base64.b64decode(obj[name + "_b64"], validate=True)
    value = obj[name]
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value.encode("utf-8")


def _frame_stamp_ns(record: KafkaRecord) -> int:
    """Capture time from the frame headers; the Kafka timestamp when they are unusable."""
    try:
        return FrameMeta.from_headers((n, v) for n, v in record.headers if v is not None).capture_ns
    except MessageError:
        return record.time_ns


def _image_format(record: KafkaRecord) -> str:
    for name, value in record.headers:
        if name == "content-type" and value is not None:
            fmt = _FORMATS.get(value.decode("utf-8", "replace"))
            if fmt:
                return fmt
    return "png" if record.value.startswith(b"\x89PNG") else "jpeg"
