"""Hostile encoded images: decompression bombs and JPEGs that lie about their size; pure.

Built by writing headers around a few bytes of data, never by allocating the pixels they
claim. Used by the frame fuzz (`services.bench.fuzz`) and the tests of the intake's checks.
"""

from __future__ import annotations

import struct
import zlib

from perception.image_header import PNG_SIGNATURE

_JPEG_SOF0 = b"\xff\xc0"  # baseline start-of-frame: what OpenCV and the simulator write


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zeros_idat(data_bytes: int = 1 << 20) -> bytes:
    """The IDAT chunk of a bomb: ``data_bytes`` zeros, zlib-compressed to about a thousandth."""
    return png_chunk(b"IDAT", zlib.compress(b"\0" * data_bytes, 9))


def bomb_png(width: int, height: int, *, data_bytes: int = 1 << 20, idat: bytes | None = None) -> bytes:
    """A valid-looking PNG whose IHDR says ``width`` x ``height`` [px] (8-bit RGB).

    Its IDAT holds ``data_bytes`` of zeros (or is ``idat``, a chunk from `zeros_idat`, to
    build many bombs without compressing again): small on the wire, and a decoder that trusts
    the IHDR allocates the full image before it notices the data runs out.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr)
            + (idat if idat is not None else zeros_idat(data_bytes)) + png_chunk(b"IEND", b""))


def claim_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """A baseline JPEG (``data``) whose start-of-frame header is rewritten to say ``width`` x
    ``height`` [px], each at most 65535; its entropy-coded data is left as it was."""
    i = data.index(_JPEG_SOF0)
    # FF C0, length (2), precision (1), height (2), width (2)
    return data[:i + 5] + struct.pack(">HH", height, width) + data[i + 9:]
