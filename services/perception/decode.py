"""Camera frame intake: headers, size limits and image decoding, with named errors."""

from __future__ import annotations

import os

# OpenCV reads this limit when it loads; set it before the first import of cv2 in a process.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(4096 * 4096))

import cv2
import numpy as np

from services.frame.delivery import Record
from services.messages import FrameMeta, MessageError

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
PNG_SIGNATURE, PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


class FrameError(MessageError):
    """A camera frame that cannot be used; the message says which and why."""


def decode_frame(record: Record, *, max_bytes: int, max_pixels: int) -> tuple[FrameMeta, np.ndarray]:
    """Headers and BGR image of one camera frame; FrameError names what is wrong.

    Rejects missing or bad headers, unknown encodings, oversized values, truncated or corrupt
    images, images above `max_pixels`, and images whose size disagrees with the headers.
    """
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        meta = FrameMeta.from_headers(record.headers)
    except MessageError as exc:
        raise FrameError(f"{where}: {exc}") from exc
    data = record.value
    if len(data) > max_bytes:
        raise FrameError(f"{where}: frame of {len(data)} bytes exceeds the limit of {max_bytes}")
    if meta.width * meta.height > max_pixels:
        raise FrameError(f"{where}: {meta.width}x{meta.height} exceeds {max_pixels} pixels")
    if meta.content_type == "image/jpeg":
        if not data.startswith(JPEG_SOI):
            raise FrameError(f"{where}: not a JPEG (no start-of-image marker)")
        if not data.rstrip(b"\x00").endswith(JPEG_EOI):
            raise FrameError(f"{where}: truncated JPEG (no end-of-image marker)")
    elif meta.content_type == "image/png":
        if not data.startswith(PNG_SIGNATURE):
            raise FrameError(f"{where}: not a PNG (bad signature)")
        if not data.endswith(PNG_IEND):
            raise FrameError(f"{where}: truncated PNG (no IEND chunk)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError(f"{where}: corrupt {meta.content_type} image (decoder failed)")
    if image.shape[:2] != (meta.height, meta.width):
        raise FrameError(f"{where}: image is {image.shape[1]}x{image.shape[0]} but the headers say "
                         f"{meta.width}x{meta.height}")
    return meta, image
