"""Hostile camera images for the tests: decompression bombs and images that lie about their size.

Built by writing headers around a few bytes of data, never by allocating the pixels they claim
(the byte-level builders are services.bench.hostile_images, shared with the frame fuzz). Not a
roadstream feature.
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.image_header import PNG_SIGNATURE
from services.bench.hostile_images import bomb_png, claim_jpeg_size, png_chunk

__all__ = ["PNG_SIGNATURE", "bomb_png", "encoded", "jpeg_claiming", "picture", "png_chunk"]


def picture(width: int = 640, height: int = 360) -> np.ndarray:
    """A small BGR test picture with some structure for the codecs to chew on."""
    img = np.full((height, width, 3), 70, np.uint8)
    cv2.rectangle(img, (width // 6, height // 4), (width // 3, height // 2), (0, 0, 255), -1)
    return img


def encoded(ext: str, width: int = 640, height: int = 360) -> bytes:
    """A real image encoded by OpenCV (``ext`` ``.jpg`` or ``.png``)."""
    return cv2.imencode(ext, picture(width, height))[1].tobytes()


def jpeg_claiming(width: int, height: int, data: bytes | None = None) -> bytes:
    """A real JPEG whose start-of-frame header is rewritten to say ``width`` x ``height``."""
    return claim_jpeg_size(data if data is not None else encoded(".jpg"), width, height)
