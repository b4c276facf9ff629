"""An encoded image's own size, read from its header: real images, bombs, liars and garbage."""

from __future__ import annotations

import random
import struct
import tracemalloc

import cv2
import pytest

from perception.image_header import (
    ImageHeaderError,
    ImageSizeError,
    check_encoded_size,
    encoded_size,
    jpeg_size,
    png_size,
)
from tests.hostile_images import PNG_SIGNATURE, bomb_png, encoded, jpeg_claiming, picture, png_chunk

LIMIT = 1920 * 1080


@pytest.mark.parametrize("ext", [".jpg", ".png"])
@pytest.mark.parametrize(("width", "height"), [(640, 360), (1, 1), (321, 179)])
def test_real_images_give_their_size(ext: str, width: int, height: int) -> None:
    data = encoded(ext, width, height)
    assert encoded_size(data) == (width, height)
    assert check_encoded_size(data, width=width, height=height, max_pixels=LIMIT) == (width, height)


@pytest.mark.parametrize("flag", [cv2.IMWRITE_JPEG_PROGRESSIVE, cv2.IMWRITE_JPEG_OPTIMIZE])
def test_progressive_and_optimised_jpeg(flag: int) -> None:
    data = cv2.imencode(".jpg", picture(320, 180), [flag, 1])[1].tobytes()
    assert jpeg_size(data) == (320, 180)


@pytest.mark.parametrize("marker", [0xC4, 0xC8, 0xCC])
def test_dht_jpg_and_dac_segments_are_not_frame_headers(marker: int) -> None:
    real = encoded(".jpg")
    # a segment of this marker placed first, whose bytes where a SOF keeps its size say 65535²
    decoy = bytes((0xFF, marker)) + struct.pack(">HBHH", 8, 8, 0xFFFF, 0xFFFF) + b"\x00"
    assert jpeg_size(real[:2] + decoy + real[2:]) == (640, 360)


def test_fill_bytes_and_every_start_of_frame_marker() -> None:
    real = encoded(".jpg")
    sof = real.index(b"\xff\xc0")
    for marker in sorted(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}):
        data = real[:sof] + b"\xff\xff" + bytes((0xFF, marker)) + real[sof + 2:]
        assert jpeg_size(data) == (640, 360), hex(marker)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_images(ext: str) -> None:
    data = encoded(ext)
    for cut in (0, 1, 2, 8, 12, 20, 23):
        with pytest.raises(ImageHeaderError):
            encoded_size(data[:cut])
    # the size lives in the header: a body cut short still has it (the intake's end-marker
    # check rejects such a frame; this function only reads the size)
    assert encoded_size(data[:len(data) // 2]) == (640, 360)


def test_a_png_bomb_is_refused_from_its_header_alone() -> None:
    data = bomb_png(20000, 20000)
    assert len(data) < 4096  # 1 MiB of zeros compresses to about a kilobyte
    tracemalloc.start()
    try:
        with pytest.raises(ImageSizeError, match=r"20000x20000 \(400000000 pixels\): exceeds 2073600"):
            check_encoded_size(data, width=640, height=360, max_pixels=LIMIT)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 1 << 20  # nothing near the 1.2 GB the pixels would take


def test_a_jpeg_bomb_is_refused() -> None:
    with pytest.raises(ImageSizeError, match="image is 30000x30000"):
        check_encoded_size(jpeg_claiming(30000, 30000), width=640, height=360, max_pixels=LIMIT)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_lying_headers_are_named(ext: str) -> None:
    data = encoded(ext, 320, 180)
    with pytest.raises(ImageSizeError, match="image is 320x180 but the headers say 640x360"):
        check_encoded_size(data, width=640, height=360, max_pixels=LIMIT)
    lying_jpeg = jpeg_claiming(1280, 720)  # its pixels are 640x360; the frame header lies
    with pytest.raises(ImageSizeError, match="image is 1280x720 but the headers say 640x360"):
        check_encoded_size(lying_jpeg, width=640, height=360, max_pixels=LIMIT)


def test_a_zero_size_is_refused() -> None:
    with pytest.raises(ImageHeaderError, match="0x360"):
        encoded_size(jpeg_claiming(0, 360))
    with pytest.raises(ImageHeaderError, match="640x0"):
        encoded_size(bomb_png(640, 0, data_bytes=1))


def test_a_jpeg_without_marker_segments_has_no_size() -> None:
    assert jpeg_size(b"\xff\xd8" + b"\x00" * 50) is None
    assert jpeg_size(b"\xff\xd8\xff\xd9") is None  # end of image before any frame header
    sos_first = b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 40
    assert jpeg_size(sos_first) is None


def test_a_png_must_start_with_ihdr() -> None:
    real = encoded(".png")
    moved = PNG_SIGNATURE + png_chunk(b"tEXt", b"a\0b") + real[len(PNG_SIGNATURE):]
    assert png_size(moved) is None
    with pytest.raises(ImageHeaderError, match="PNG without a readable IHDR chunk"):
        encoded_size(moved)
    short_ihdr = PNG_SIGNATURE + png_chunk(b"IHDR", b"\x00" * 12)
    assert png_size(short_ihdr + b"\x00" * 20) is None


@pytest.mark.parametrize("data", [b"", b"\x00" * 64, b"GIF89a" + b"\x00" * 64],
                         ids=["zero-bytes", "zeros", "gif"])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(ImageHeaderError, match="neither a JPEG nor a PNG"):
        encoded_size(data)


def test_random_bytes_never_crash_the_reader() -> None:
    rng = random.Random(20)
    prefixes = [b"", b"\xff\xd8", b"\xff\xd8\xff", PNG_SIGNATURE, PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR"]
    for _ in range(3000):
        data = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 64))
        # refused with one of the two named errors: never an IndexError or struct.error
        with pytest.raises((ImageHeaderError, ImageSizeError)):
            check_encoded_size(data, width=640, height=360, max_pixels=LIMIT)
