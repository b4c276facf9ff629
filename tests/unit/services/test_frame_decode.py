"""Each kind of bad camera frame is rejected with a named error."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from services import OPENCV_MAX_IMAGE_PIXELS
from services.messages.examples import frame_meta
from services.perception import decode as decode_module
from services.perception.decode import FrameError, decode_frame, decode_frames
from services.runtime.delivery import Record
from tests.hostile_images import bomb_png, encoded

LIMITS: dict[str, Any] = {"max_bytes": 1 << 20, "max_pixels": 1920 * 1080}


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


def test_a_jpeg_cut_short_and_closed_with_an_end_marker_is_corrupt_not_grey() -> None:
    """libjpeg only warns when the entropy data ends early; OpenCV fills the rest with grey."""
    whole = jpeg()
    cut = whole[:len(whole) // 2] + b"\xff\xd9"
    grey = cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR)
    assert grey is not None
    assert (grey[-8:] == 128).all()  # what the intake must not serve
    with pytest.raises(FrameError) as err:
        decode_frame(record(cut), **LIMITS)
    assert str(err.value) == ("camera.frames[0]@9: corrupt image/jpeg image (decoder raised "
                              "ValueError: Corrupt JPEG data: premature end of data segment)")


@pytest.mark.parametrize("quality", [50, 90, 100])
def test_a_valid_jpeg_decodes_to_opencvs_pixels(quality: int) -> None:
    """The strict decoder changes no pixel of a valid frame: the detector sees what it saw."""
    rng = np.random.default_rng(quality)
    img = cv2.GaussianBlur((rng.random((360, 640, 3)) * 255).astype(np.uint8), (9, 9), 2)
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
    ours = decode_frame(record(data), **LIMITS)[1]
    assert np.array_equal(ours, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


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


def png_record(value: bytes) -> Record:
    return record(value, [(k, b"image/png" if k == "content-type" else v)
                          for k, v in frame_meta().to_headers()])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (bomb_png(20000, 20000), "image is 20000x20000 (400000000 pixels): exceeds 2073600 pixels"),
        (encoded(".png", 320, 180), "image is 320x180 but the headers say 640x360"),
        (bomb_png(640, 360)[:33] + b"\x00" * 8 + bomb_png(1, 1)[-12:], "corrupt image/png image"),
    ],
    ids=["bomb", "lying-ihdr", "no-data"],
)
def test_bad_pngs_are_named(value: bytes, message: str) -> None:
    with pytest.raises(FrameError) as err:
        decode_frame(png_record(value), **LIMITS)
    assert "camera.frames[0]@9" in str(err.value)
    assert message in str(err.value)


def raise_for_marked(monkeypatch: pytest.MonkeyPatch, error: Exception) -> bytes:
    """Make the JPEG decoder raise `error` on one marked JPEG (a fault no check can foresee)."""
    marked = jpeg()[:-2] + b"\xff\xfeboom\xff\xd9"  # a comment segment just before EOI
    real = decode_module.simplejpeg.decode_jpeg

    def decode_jpeg(data: bytes, **kwargs: Any) -> np.ndarray:
        if bytes(data) == marked:
            raise error
        return real(data, **kwargs)

    monkeypatch.setattr(decode_module.simplejpeg, "decode_jpeg", decode_jpeg)
    return marked


@pytest.mark.parametrize("error", [cv2.error("OpenCV(5.0.0) loadsave.cpp:79: error: (-215)\n  pixels"),
                                   MemoryError("out of memory")], ids=["cv2.error", "MemoryError"])
def test_a_decoder_that_raises_gives_that_frames_own_error(
        monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    marked = raise_for_marked(monkeypatch, error)
    with pytest.raises(FrameError) as err:
        decode_frame(record(marked), **LIMITS)
    assert f"corrupt image/jpeg image (decoder raised {type(error).__name__}: " in str(err.value)
    batch = [record(jpeg()), record(marked), record(jpeg())]
    out = decode_frames(batch, **LIMITS)
    assert [d.error is None for d in out] == [True, False, True]
    assert "\n" not in str(out[1].error)  # one line in the DLQ header


def test_any_check_failure_stays_with_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    real = decode_module.check_frame

    def check(rec: Record, **limits: int) -> object:
        if rec.offset == 2:
            raise RecursionError("maximum recursion depth exceeded")  # e.g. deeply nested JSON
        return real(rec, **limits)

    monkeypatch.setattr(decode_module, "check_frame", check)
    batch = [replace(record(jpeg()), offset=n) for n in (1, 2, 3)]
    out = decode_frames(batch, **LIMITS)
    assert [d.error is None for d in out] == [True, False, True]
    assert "camera.frames[0]@2: unusable frame (RecursionError" in str(out[1].error)


OVERSIZE_PROBE = """
import sys
{first_import}
import cv2
import numpy as np
from tests.hostile_images import bomb_png
print("cv2-loaded-by-first-import", {cv2_expected})
data = bomb_png({side}, {side}, data_bytes=64)
try:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
except cv2.error as exc:
    print("refused", "CV_IO_MAX_IMAGE_PIXELS" in str(exc))
else:
    print("not-refused", image is None)
"""


def probe(first_import: str, cv2_expected: str) -> list[str]:
    """Run the probe in a fresh interpreter, without an OpenCV limit in its environment."""
    side = math.isqrt(OPENCV_MAX_IMAGE_PIXELS) + 1  # one row and column over the limit
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    code = OVERSIZE_PROBE.format(first_import=first_import, cv2_expected=cv2_expected, side=side)
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3],
                            env=env, capture_output=True, text=True, timeout=300, check=True)
    return result.stdout.split()


def test_opencv_refuses_an_image_over_the_limit_in_a_fresh_service_process() -> None:
    # importing the service loads cv2 (through the detector): the limit must be set before it
    assert probe("import services.perception.service", '"cv2" in sys.modules') == [
        "cv2-loaded-by-first-import", "True", "refused", "True"]
    # the control: with cv2 loaded before the services package the limit comes too late
    assert probe("import cv2\nimport services", "True") == [
        "cv2-loaded-by-first-import", "True", "not-refused", "True"]
