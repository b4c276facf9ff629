"""Camera frame intake: headers, size limits and image decoding, with named errors.

On a CPU the images are decoded with OpenCV (BGR arrays). When the detector runs on CUDA,
JPEG frames are decoded on the GPU in one batched ``torchvision.io.decode_jpeg`` call (RGB
uint8 tensors already on the device, no host→device copy of the pixels); PNG frames, and a
JPEG the GPU decoder refuses, still go through OpenCV. Every path rejects the same frames
with the same named ``FrameError``.
"""

from __future__ import annotations

import os

# OpenCV reads this limit when it loads; set it before the first import of cv2 in a process.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(4096 * 4096))

import struct
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from services.runtime.delivery import Record
from services.messages import FrameMeta, MessageError

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
PNG_SIGNATURE, PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
# Start-of-frame markers (baseline, extended, progressive, lossless …); C4 (DHT), C8 (JPG)
# and CC (DAC) share the range but carry no frame size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_MS = 1e-6  # ns → ms

Image = np.ndarray | torch.Tensor
"""A decoded frame: BGR uint8 ``(H, W, 3)`` array (OpenCV) or RGB uint8 ``[3, H, W]`` tensor."""


class FrameError(MessageError):
    """A camera frame that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Decoded:
    """One record's intake result: its headers and image, or the error that rejects it.

    ``decode_ms`` is the time spent on this record; frames decoded together in one GPU call
    share that call's time equally.
    """

    record: Record
    meta: FrameMeta | None
    image: Image | None
    error: FrameError | None
    decode_ms: float


def _where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def check_frame(record: Record, *, max_bytes: int, max_pixels: int) -> FrameMeta:
    """The headers of a frame whose bytes pass every check that needs no decoding.

    Rejects missing or bad headers, unknown encodings, oversized values or sizes, and JPEG/PNG
    data without its start or end marker (truncated).
    """
    where = _where(record)
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
    return meta


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's start-of-frame segment, or None when there is none.

    Reads segment headers only, so an image's size is known before any pixel is decoded.
    """
    i = 2  # after SOI
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers: no length
            i += 2
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return int(width), int(height)
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def _check_shape(record: Record, meta: FrameMeta, width: int, height: int) -> None:
    if (height, width) != (meta.height, meta.width):
        raise FrameError(f"{_where(record)}: image is {width}x{height} but the headers say "
                         f"{meta.width}x{meta.height}")


def _opencv_decode(record: Record, meta: FrameMeta) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError(f"{_where(record)}: corrupt {meta.content_type} image (decoder failed)")
    _check_shape(record, meta, image.shape[1], image.shape[0])
    return image


def decode_frame(record: Record, *, max_bytes: int, max_pixels: int) -> tuple[FrameMeta, np.ndarray]:
    """Headers and BGR image of one camera frame (OpenCV); FrameError names what is wrong.

    Rejects missing or bad headers, unknown encodings, oversized values, truncated or corrupt
    images, images above `max_pixels`, and images whose size disagrees with the headers.
    """
    meta = check_frame(record, max_bytes=max_bytes, max_pixels=max_pixels)
    return meta, _opencv_decode(record, meta)


def gpu_decode_device(device: torch.device | str | None) -> torch.device | None:
    """Where JPEGs are decoded for a detector on ``device``: that CUDA device, or None (OpenCV)."""
    if device is None:
        return None
    dev = torch.device(device)
    return dev if dev.type == "cuda" else None


def _torch_decode(datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    inputs = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    with warnings.catch_warnings():
        # torchvision ≥ 0.29 marks its image codecs deprecated in favour of TorchCodec; they
        # still work and are the batched nvjpeg path this service uses.
        warnings.simplefilter("ignore", DeprecationWarning)
        out = decode_jpeg(inputs, mode=ImageReadMode.RGB, device=device)
    return list(out) if isinstance(out, list | tuple) else [out]


def decode_jpegs(device: torch.device, jobs: Sequence[tuple[Record, FrameMeta]]) -> list[Image | FrameError]:
    """Decode checked JPEG frames in one batched torchvision call onto ``device``, in order.

    Each result is an RGB uint8 ``[3, H, W]`` tensor on ``device``, or the ``FrameError`` that
    rejects the frame (corrupt, or a size other than its headers say).

    nvjpeg returns nothing for the whole batch when one image is bad, so a failed batch is
    retried image by image; an image the torch decoder refuses is tried with OpenCV, whose
    verdict (image or corrupt) is final.
    """
    try:
        images: list[Image | FrameError] = list(_torch_decode([r.value for r, _ in jobs], device))
    except RuntimeError:
        images = []
        for record, meta in jobs:
            try:
                images.append(_torch_decode([record.value], device)[0])
            except RuntimeError:
                try:
                    images.append(_opencv_decode(record, meta))
                except FrameError as exc:
                    images.append(exc)
    results: list[Image | FrameError] = []
    for (record, meta), image in zip(jobs, images, strict=True):
        if isinstance(image, torch.Tensor):
            try:
                _check_shape(record, meta, int(image.shape[-1]), int(image.shape[-2]))
            except FrameError as exc:
                image = exc
        results.append(image)
    return results


def decode_frames(records: Sequence[Record], *, max_bytes: int, max_pixels: int,
                  jpeg_device: torch.device | None = None) -> list[Decoded]:
    """Check and decode a micro-batch; one ``Decoded`` per record, in order.

    With ``jpeg_device`` None every frame is decoded with OpenCV into a BGR array, exactly as
    ``decode_frame`` does. With a device (the service passes ``gpu_decode_device(detector
    device)``: CUDA or None) all JPEGs of the batch are decoded in one
    ``torchvision.io.decode_jpeg`` call into RGB uint8 tensors on it, and PNGs with OpenCV.
    Either way a frame is rejected (``Decoded.error``) for the reasons ``decode_frame`` lists;
    on the torchvision path the JPEG's size is read from its header and checked before any
    pixel is decoded.
    """
    results: list[Decoded | None] = []
    jobs: list[tuple[int, Record, FrameMeta]] = []
    for record in records:
        t0 = time.perf_counter_ns()
        try:
            meta = check_frame(record, max_bytes=max_bytes, max_pixels=max_pixels)
            if jpeg_device is not None and meta.content_type == "image/jpeg":
                size = jpeg_size(record.value)
                if size is None:
                    raise FrameError(f"{_where(record)}: corrupt image/jpeg image (no frame header)")
                _check_shape(record, meta, *size)
                jobs.append((len(results), record, meta))
                results.append(None)
                continue
            image = _opencv_decode(record, meta)
        except FrameError as exc:
            results.append(Decoded(record, None, None, exc, (time.perf_counter_ns() - t0) * _MS))
            continue
        results.append(Decoded(record, meta, image, None, (time.perf_counter_ns() - t0) * _MS))
    if jobs and jpeg_device is not None:
        t0 = time.perf_counter_ns()
        decoded = decode_jpegs(jpeg_device, [(record, meta) for _, record, meta in jobs])
        share_ms = (time.perf_counter_ns() - t0) * _MS / len(jobs)
        for (index, record, meta), out in zip(jobs, decoded, strict=True):
            if isinstance(out, FrameError):
                results[index] = Decoded(record, None, None, out, share_ms)
            else:
                results[index] = Decoded(record, meta, out, None, share_ms)
    return [r for r in results if r is not None]
