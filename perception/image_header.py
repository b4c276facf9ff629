"""An encoded image's own size, read from its header before any pixel is decoded; pure.

A decompression bomb is small on the wire and huge once decoded (a 389 KB PNG can hold
20000×20000 pixels), so the only safe moment to refuse it is before the decoder allocates its
output. JPEG carries its size in the start-of-frame segment (SOF0..SOF15), PNG in the IHDR chunk
that must follow the signature; both are read here from the segment headers alone.
"""

from __future__ import annotations

import struct

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, extended, progressive, lossless …); C4 (DHT), C8 (JPG)
# and CC (DAC) share the range but carry no frame size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM and the restart markers.
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
_PNG_IHDR_LENGTH = 13  # width, height (4 bytes each), depth, colour, compression, filter, interlace


class ImageHeaderError(ValueError):
    """The bytes carry no readable image size (not JPEG or PNG, or a header cut or corrupt)."""


class ImageSizeError(ValueError):
    """The image's own size is refused: too many pixels, or not the size it was announced as."""


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's start-of-frame segment, or None when there is none.

    Walks the marker segments from the start-of-image marker by their lengths, so the entropy-
    coded data is never read; a scan, end of image or a broken segment before any frame header
    means there is none.
    """
    if not data.startswith(JPEG_SOI):
        return None
    i, n = len(JPEG_SOI), len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker in (0x00, _JPEG_SOS, _JPEG_EOI, 0xD8):  # no frame header came before these
            return None
        (length,) = struct.unpack_from(">H", data, i + 2)
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            # FF Cn, length (2), sample precision (1), height (2), width (2)
            if length < 8 or i + 9 > n:
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return int(width), int(height)
        i += 2 + length
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR chunk, or None when it is missing or malformed.

    The PNG specification puts IHDR first, right after the signature; a decoder that finds
    anything else there rejects the file, so nothing else is looked at.
    """
    start = len(PNG_SIGNATURE)
    if not data.startswith(PNG_SIGNATURE) or len(data) < start + 8 + _PNG_IHDR_LENGTH:
        return None
    length, kind = struct.unpack_from(">I4s", data, start)
    if length != _PNG_IHDR_LENGTH or kind != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, start + 8)
    return int(width), int(height)


def encoded_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of an encoded JPEG or PNG, read from its header alone.

    Raises ImageHeaderError when the bytes are neither, or their header is cut short, corrupt
    or gives a zero size.
    """
    if data.startswith(JPEG_SOI):
        size, kind, where = jpeg_size(data), "JPEG", "start-of-frame header"
    elif data.startswith(PNG_SIGNATURE):
        size, kind, where = png_size(data), "PNG", "IHDR chunk"
    else:
        raise ImageHeaderError("neither a JPEG nor a PNG (no start-of-image marker or signature)")
    if size is None:
        raise ImageHeaderError(f"{kind} without a readable {where}")
    if size[0] == 0 or size[1] == 0:
        raise ImageHeaderError(f"{kind} {where} gives a size of {size[0]}x{size[1]}")
    return size


def check_encoded_size(data: bytes, *, width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The image's own ``(width, height)``, once checked against what it was announced as.

    ``width`` and ``height`` are the announced size [px] (the frame's headers); ``max_pixels``
    bounds width × height. Raises ImageHeaderError when no size can be read, and ImageSizeError
    when the image holds more than ``max_pixels`` pixels (a decompression bomb) or is not
    ``width`` x ``height``; the error message gives both sizes.
    """
    own_w, own_h = encoded_size(data)
    if own_w * own_h > max_pixels:
        raise ImageSizeError(f"image is {own_w}x{own_h} ({own_w * own_h} pixels): "
                             f"exceeds {max_pixels} pixels")
    if (own_w, own_h) != (width, height):
        raise ImageSizeError(f"image is {own_w}x{own_h} but the headers say {width}x{height}")
    return own_w, own_h
