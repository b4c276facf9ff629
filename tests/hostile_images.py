"""Hostile camera images for the tests: decompression bombs and images that lie about their size.

Built by writing headers around a few bytes of data, never by allocating the pixels they claim.
Not a roadstream feature.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def picture(width: int = 640, height: int = 360) -> np.ndarray:
    """A small BGR test picture with some structure for the codecs to chew on."""
    img = np.full((height, width, 3), 70, np.uint8)
    cv2.rectangle(img, (width // 6, height // 4), (width // 3, height // 2), (0, 0, 255), -1)
    return img


def encoded(ext: str, width: int = 640, height: int = 360) -> bytes:
    """A real image encoded by OpenCV (``ext`` ``.jpg`` or ``.png``)."""
    return cv2.imencode(ext, picture(width, height))[1].tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int, *, data_bytes: int = 1 << 20) -> bytes:
    """A valid-looking PNG whose IHDR says ``width`` x ``height`` (8-bit RGB).

    Its IDAT holds ``data_bytes`` of zeros, zlib-compressed to about a thousandth of that: small
    on the wire, and a decoder that trusts the IHDR allocates the full image before it notices
    the data runs out.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * data_bytes, 9)) + png_chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int, data: bytes | None = None) -> bytes:
    """A real JPEG whose start-of-frame header is rewritten to say ``width`` x ``height``."""
    data = data if data is not None else encoded(".jpg")
    i = data.index(b"\xff\xc0")  # OpenCV writes baseline JPEG: SOF0
    # FF C0, length (2), precision (1), height (2), width (2)
    return data[:i + 5] + struct.pack(">HH", height, width) + data[i + 9:]
