"""MCAP files of roadstream topics: schemas and channels, a safe writer, a validating reader.

One MCAP channel per Kafka topic (the channel's topic is the Kafka topic name), message
encoding `json`, schema encoding `jsonschema`:

- JSON topics: the payload model's JSON Schema (plus the `_kafka` envelope property);
- `camera.frames`: `foxglove.CompressedImage`, so Foxglove shows the images;
- raw topics (dead letters): `roadstream.KafkaRecord`, the envelope alone.

The writer writes `<name>.tmp` and renames it when the file is complete, so a half-written
file never carries the final name. The reader checks the whole file (chunk CRCs, footer,
every envelope) before it returns anything.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

from mcap.exceptions import EndOfFile, InvalidMagic
from mcap.records import Channel, Footer, Message
from mcap.stream_reader import StreamReader
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import MCAP0_MAGIC as MCAP_MAGIC
from mcap.writer import CompressionType, Writer

from services.messages import CAMERA_FRAMES, TopicSpec, topic
from services.recording.envelope import (
    ENVELOPE_FIELD,
    ENVELOPE_VERSION,
    KafkaRecord,
    RecordingError,
    decode_message,
    encode_message,
)

PROFILE: Final = ""  # no well-known profile: JSON messages with JSON Schema
LIBRARY: Final = "roadstream"
CHUNK_BYTES: Final = 4 << 20
RECORD_LIMIT_BYTES: Final = 1 << 30  # larger than any message we write; guards corrupt lengths

ENVELOPE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "The original Kafka record (roadstream recording envelope); see "
                   "docs/recording.md.",
    "properties": {
        "v": {"type": "integer"},
        "topic": {"type": "string"},
        "partition": {"type": "integer"},
        "offset": {"type": "integer"},
        "timestamp_ms": {"type": "integer"},
        "timestamp_type": {"type": "integer"},
        "key": {"type": ["string", "null"]},
        "key_b64": {"type": "string", "contentEncoding": "base64"},
        "headers": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "value": {"type": ["string", "null"]},
            "value_b64": {"type": "string", "contentEncoding": "base64"}}}},
        "value_in": {"type": "string", "enum": ["message", "data", "value_b64"]},
        "value_b64": {"type": "string", "contentEncoding": "base64"},
    },
}

#: Foxglove's `foxglove.CompressedImage` JSON Schema (foxglove/schemas), plus the envelope.
COMPRESSED_IMAGE_SCHEMA: Final[dict[str, Any]] = {
    "title": "foxglove.CompressedImage",
    "description": "A compressed image",
    "type": "object",
    "properties": {
        "timestamp": {"type": "object", "title": "time", "description": "Timestamp of image",
                      "properties": {"sec": {"type": "integer", "minimum": 0},
                                     "nsec": {"type": "integer", "minimum": 0,
                                              "maximum": 999999999}}},
        "frame_id": {"type": "string", "description": "Frame of reference for the image."},
        "data": {"type": "string", "contentEncoding": "base64",
                 "description": "Compressed image data"},
        "format": {"type": "string", "description": "Image format: jpeg or png"},
        ENVELOPE_FIELD: ENVELOPE_SCHEMA,
    },
}


def channel_schema(spec: TopicSpec) -> tuple[str, dict[str, Any]]:
    """(schema name, JSON Schema) of a topic's MCAP channel."""
    if spec.name == CAMERA_FRAMES.name:
        return "foxglove.CompressedImage", COMPRESSED_IMAGE_SCHEMA
    if spec.value is not None:
        schema = spec.value.model_json_schema()
        schema.setdefault("properties", {})[ENVELOPE_FIELD] = ENVELOPE_SCHEMA
        return f"roadstream.{spec.value.__name__}", schema
    return "roadstream.KafkaRecord", {"title": "roadstream.KafkaRecord", "type": "object",
                                      "properties": {ENVELOPE_FIELD: ENVELOPE_SCHEMA}}


def temporary_path(path: Path) -> Path:
    """Where a recording is written before it is complete."""
    return path.with_name(path.name + ".tmp")


class RecordingWriter:
    """Writes KafkaRecords of the given topics to an MCAP file, atomically on close.

    Use as a context manager; leaving it (normally or by an exception) finishes the MCAP file
    (chunks, indexes, footer) and renames `<path>.tmp` to `path`.
    """

    def __init__(self, path: Path, topics: Sequence[TopicSpec], *,
                 metadata: dict[str, str] | None = None) -> None:
        self.path = path
        self.topics = tuple(topics)
        self.metadata = dict(metadata or {})
        self.counts: Counter[str] = Counter()
        self._file: IO[bytes] | None = None
        self._writer: Writer | None = None
        self._channels: dict[str, int] = {}

    def open(self) -> None:
        """Create `<path>.tmp` and write the header, schemas and channels."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = temporary_path(self.path).open("wb")
        # Data-section CRC as well as chunk CRCs: a flipped byte anywhere in the data is found.
        self._writer = Writer(self._file, chunk_size=CHUNK_BYTES, compression=CompressionType.ZSTD,
                              enable_data_crcs=True)
        self._writer.start(profile=PROFILE, library=LIBRARY)
        for spec in self.topics:
            name, schema = channel_schema(spec)
            schema_id = self._writer.register_schema(
                name=name, encoding=SchemaEncoding.JSONSchema,
                data=json.dumps(schema, sort_keys=True).encode())
            self._channels[spec.name] = self._writer.register_channel(
                topic=spec.name, message_encoding=MessageEncoding.JSON, schema_id=schema_id,
                metadata={"kafka_key": spec.key, "schema_version": str(spec.schema_version)})
        self._writer.add_metadata("roadstream", {"envelope_version": str(ENVELOPE_VERSION),
                                                 **self.metadata})

    def write(self, record: KafkaRecord) -> None:
        """Append one record; log and publish time are its Kafka timestamp [ns]."""
        if self._writer is None:
            raise RuntimeError("RecordingWriter.write before open()")
        channel = self._channels.get(record.topic)
        if channel is None:
            raise ValueError(f"topic {record.topic!r} is not one of this recording's topics")
        self._writer.add_message(channel_id=channel, log_time=record.time_ns,
                                 publish_time=record.time_ns, data=encode_message(record),
                                 sequence=sum(self.counts.values()) & 0xFFFFFFFF)
        self.counts[record.topic] += 1

    @property
    def messages(self) -> int:
        """Records written so far."""
        return sum(self.counts.values())

    def close(self) -> Path:
        """Finish the MCAP file, flush it to disk and give it its final name."""
        writer, file = self._writer, self._file
        self._writer = self._file = None
        if writer is None or file is None:
            return self.path
        try:
            writer.finish()
            file.flush()
            os.fsync(file.fileno())
        finally:
            file.close()
        os.replace(temporary_path(self.path), self.path)
        return self.path

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_recording(path: Path, topics: Iterable[str] | None = None) -> list[KafkaRecord]:
    """Every record of a roadstream MCAP file, in file order, optionally only some topics.

    The whole file is read and checked first (magic, chunk CRCs, the footer, every message's
    envelope, topics known to the registry); any problem raises RecordingError naming the
    file, so a caller publishes nothing from a bad file.
    """
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    wanted = None if topics is None else set(topics)
    records: list[KafkaRecord] = []
    channels: dict[int, str] = {}
    seen = 0
    footer: Footer | None = None
    try:
        with path.open("rb") as stream:
            for item in StreamReader(stream, validate_crcs=True,
                                     record_size_limit=RECORD_LIMIT_BYTES).records:
                if isinstance(item, Channel):
                    channels[item.id] = _known_topic(path, item.topic)
                elif isinstance(item, Message):
                    seen += 1
                    name = channels.get(item.channel_id)
                    if name is None:
                        raise RecordingError(f"{path}: message {seen} refers to channel "
                                             f"{item.channel_id}, which is not defined")
                    record = decode_message(item.data, channel_topic=name,
                                            source=f"{path}: message {seen} on {name}")
                    if wanted is None or name in wanted:
                        records.append(record)
                elif isinstance(item, Footer):
                    footer = item
            if footer is not None:  # the reader has checked the closing magic by now
                _check_summary_crc(path, stream, footer)
    except RecordingError:
        raise
    except InvalidMagic:
        raise RecordingError(f"{path}: not an MCAP file (it does not start with the MCAP magic "
                             "bytes)") from None
    except (EndOfFile, struct.error):
        raise RecordingError(f"{path}: truncated MCAP file: it ends inside a record after "
                             f"{seen} messages (was the recorder killed?)") from None
    except Exception as exc:  # CRC, record and decompressor errors: all mean a damaged file
        raise RecordingError(f"{path}: corrupt MCAP file after {seen} messages "
                             f"({type(exc).__name__}: {exc})") from None
    if footer is None:
        raise RecordingError(f"{path}: truncated MCAP file: it ends after {seen} messages "
                             "without a footer (was the recorder killed?)")
    return records


def _check_summary_crc(path: Path, stream: IO[bytes], footer: Footer) -> None:
    """The summary section (indexes Foxglove seeks with) against the footer's CRC."""
    if footer.summary_start == 0 or footer.summary_crc == 0:
        return
    end = path.stat().st_size - len(MCAP_MAGIC) - 4  # the CRC covers the footer up to itself
    stream.seek(footer.summary_start)
    crc = zlib.crc32(stream.read(end - footer.summary_start))
    if crc != footer.summary_crc:
        raise RecordingError(f"{path}: corrupt MCAP file: the summary section fails its CRC")


def _known_topic(path: Path, name: str) -> str:
    try:
        return topic(name).name
    except KeyError as exc:
        raise RecordingError(f"{path}: channel {name!r} is not a roadstream topic "
                             f"({exc.args[0]})") from None
