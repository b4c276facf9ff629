"""Each kind of bad camera frame is rejected with a named error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.runtime.delivery import Record
from services.messages.examples import frame_meta
from services.perception.decode import FrameError, decode_frame

LIMITS = {"max_bytes": 1 << 20, "max_pixels": 1920 * 1080}


def jpeg(w: int = 640, h: int = 360) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    cv2.rectangle(img, (100, 100), (200, 200), (0, 0, 255), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


def record(value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Record:
    return Record(topic="camera.frames", partition=0, offset=9, key=b"ego/front", value=value,
                  headers=tuple(headers if headers is not None else frame_meta().to_headers()))


def test_a_good_frame_decodes() -> None:
    meta, image = decode_frame(record(jpeg()), **LIMITS)
    assert image.shape == (360, 640, 3)
    assert meta.seq == 0


def test_png_is_allowed() -> None:
    png = cv2.imencode(".png", np.zeros((360, 640, 3), np.uint8))[1].tobytes()
    headers = [(k, b"image/png" if k == "content-type" else v) for k, v in frame_meta().to_headers()]
    assert decode_frame(record(png, headers), **LIMITS)[1].shape == (360, 640, 3)


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (jpeg()[:-2000], None, "truncated JPEG"),
        (b"\xff\xd8" + b"\x00" * 500 + b"\xff\xd9", None, "corrupt image/jpeg"),
        (b"GIF89a....", None, "not a JPEG"),
        (b"\xff\xd8" + b"x" * (2 << 20) + b"\xff\xd9", None, "exceeds the limit"),
        (jpeg(), [h for h in frame_meta().to_headers() if h[0] != "capture-ns"],
         "'capture-ns' is missing"),
        (jpeg(), [(k, b"image/webp" if k == "content-type" else v)
                  for k, v in frame_meta().to_headers()], "image/webp"),
        (jpeg(320, 180), None, "headers say 640x360"),
        (jpeg(), [(k, b"9000" if k in ("width", "height") else v)
                  for k, v in frame_meta().to_headers()], "exceeds 2073600 pixels"),
    ],
    ids=["truncated", "corrupt", "wrong-magic", "oversized", "missing-header", "unknown-encoding",
         "size-mismatch", "too-many-pixels"],
)
def test_bad_frames_are_named(value: bytes, headers: list[tuple[str, bytes]] | None,
                              message: str) -> None:
    with pytest.raises(FrameError) as err:
        decode_frame(record(value, headers), **LIMITS)
    assert "camera.frames[0]@9" in str(err.value)
    assert message in str(err.value)
