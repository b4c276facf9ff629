"""`camera.frames`: the encoded image is the Kafka value, its metadata travels in headers.

Headers are plain UTF-8 strings (numbers in decimal, the calibration as JSON) so that a client
in any language can read a frame without our code. See docs/topics.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.calibration import MAX_SIDE_PX
from services.messages.base import INT64_MAX, MODEL_CONFIG, Id, Label, MessageError, UInt64
from services.messages.payloads import Calibration

FRAME_SCHEMA_VERSION = 1
CONTENT_TYPES = ("image/jpeg", "image/png")

#: header name → FrameMeta field; the wire names are the contract.
HEADER_FIELDS: dict[str, str] = {
    "content-type": "content_type",
    "schema-version": "schema_version",
    "vehicle-id": "vehicle_id",
    "camera-id": "camera_id",
    "seq": "seq",
    "capture-ns": "capture_ns",
    "width": "width",
    "height": "height",
    "calibration": "calibration",
    "run-id": "run_id",
    "traceparent": "traceparent",
}
OPTIONAL_HEADERS = frozenset({"run-id", "traceparent"})


class FrameMeta(BaseModel):
    """Metadata of one camera frame, carried in Kafka headers."""

    # Only the header fields exist: a misspelt one is an error, not a silently dropped value.
    model_config = ConfigDict(**{**MODEL_CONFIG, "extra": "forbid"})

    content_type: Label = Field(default="image/jpeg", description="image/jpeg or image/png.")
    schema_version: int = Field(default=FRAME_SCHEMA_VERSION, ge=1, le=INT64_MAX,
                                description="Revision of the frame header contract.")
    vehicle_id: Id = Field(description="Vehicle that carries the camera.")
    camera_id: Id = Field(description="Camera, unique per vehicle.")
    seq: UInt64 = Field(description="Frame counter per camera.")
    capture_ns: UInt64 = Field(description="Capture time [ns since the Unix epoch].")
    width: int = Field(gt=0, le=MAX_SIDE_PX, description="Image width [px].")
    height: int = Field(gt=0, le=MAX_SIDE_PX, description="Image height [px].")
    calibration: Calibration
    run_id: Label = Field(default="", description="Run that produced the frame.")
    traceparent: Label = Field(default="", description="W3C trace context of this frame.")

    @property
    def key(self) -> bytes:
        """The Kafka key: `vehicle_id/camera_id`."""
        return f"{self.vehicle_id}/{self.camera_id}".encode()

    def to_headers(self) -> list[tuple[str, bytes]]:
        """Encode as Kafka headers (UTF-8 strings)."""
        out: list[tuple[str, bytes]] = []
        for name, field in HEADER_FIELDS.items():
            value = getattr(self, field)
            if name in OPTIONAL_HEADERS and not value:
                continue
            text = value.model_dump_json() if isinstance(value, Calibration) else str(value)
            out.append((name, text.encode()))
        return out

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> FrameMeta:
        """Decode Kafka headers, raising MessageError naming the missing or bad header."""
        raw = dict(headers)
        values: dict[str, object] = {}
        for name, field in HEADER_FIELDS.items():
            if name not in raw:
                if name in OPTIONAL_HEADERS:
                    continue
                raise MessageError(f"camera frame header {name!r} is missing")
            try:
                text = raw[name].decode()
            except UnicodeDecodeError as exc:
                raise MessageError(f"camera frame header {name!r} is not UTF-8") from exc
            if name == "calibration":
                try:
                    values[field] = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise MessageError(f"camera frame header 'calibration' is not JSON: {exc}") from exc
                except (RecursionError, ValueError) as exc:
                    # nested too deep, or a number with more digits than Python converts
                    raise MessageError(f"camera frame header 'calibration' is not usable JSON "
                                       f"({type(exc).__name__}: {str(exc)[:200]})") from None
            else:
                values[field] = text
        try:
            meta = cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            header = next((h for h, f in HEADER_FIELDS.items() if f == field), field)
            inner = ".".join(str(p) for p in first["loc"][1:])
            where = f"{header!r}" + (f" ({inner})" if inner else "")
            raise MessageError(f"camera frame header {where}: {first['msg']}") from exc
        if meta.content_type not in CONTENT_TYPES:
            raise MessageError(
                f"camera frame header 'content-type': {meta.content_type!r} is not one of "
                f"{', '.join(CONTENT_TYPES)}"
            )
        return meta
