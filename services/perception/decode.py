"""Camera frame intake: headers, size limits and image decoding, with named errors.

On a CPU the images are decoded into BGR arrays: JPEG with simplejpeg (libjpeg-turbo) in
strict mode, PNG with OpenCV. Strict matters: libjpeg only *warns* about corrupt entropy data,
so OpenCV returns a JPEG cut short and closed with an end-of-image marker as a picture whose
missing part is flat grey; in strict mode that warning is the frame's error. Both decoders
use libjpeg-turbo's default (accurate) IDCT and upsampling, so a valid frame's pixels are the
same as OpenCV's (tested). When the detector runs on CUDA,
JPEG frames are decoded on the GPU in one batched ``torchvision.io.decode_jpeg`` call (RGB
uint8 tensors already on the device, no host→device copy of the pixels); PNG frames, and a
JPEG the GPU decoder refuses, still go through the CPU decoders. Every path rejects the same frames
with the same named ``FrameError``: before any decoder runs, the image's own size is read from
its header and refused when it is too large (a decompression bomb) or not the announced size;
whatever a decoder raises becomes the ``FrameError`` of that frame alone.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

# The OpenCV pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS) is set in services/__init__.py, which
# every process runs before its first import of cv2; set here it would come too late.
import cv2
import numpy as np
import simplejpeg
import torch

from perception.image_header import (
    JPEG_SOI,
    PNG_SIGNATURE,
    ImageHeaderError,
    ImageSizeError,
    check_encoded_size,
)
from services.messages import FrameMeta, MessageError
from services.runtime.delivery import Record

JPEG_EOI = b"\xff\xd9"
PNG_IEND = b"IEND\xaeB`\x82"
_MS = 1e-6  # ns → ms
_DECODER_MESSAGE_CHARS = 300  # OpenCV's messages run to several lines of source context

Image = np.ndarray | torch.Tensor
"""A decoded frame: BGR uint8 ``(H, W, 3)`` array (CPU decoders) or RGB uint8 ``[3, H, W]`` tensor."""


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

    Rejects missing or bad headers, unknown encodings, oversized values or sizes, JPEG/PNG data
    without its start or end marker (truncated), and images whose own size (read from the JPEG
    frame header or PNG IHDR chunk, perception.image_header) exceeds `max_pixels` or differs
    from the headers' width and height: a decompression bomb is refused before any decoder
    allocates its pixels.
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
    try:
        check_encoded_size(data, width=meta.width, height=meta.height, max_pixels=max_pixels)
    except ImageHeaderError as exc:
        raise FrameError(f"{where}: corrupt {meta.content_type} image ({exc})") from exc
    except ImageSizeError as exc:
        raise FrameError(f"{where}: {exc}") from exc
    return meta


def _check_shape(record: Record, meta: FrameMeta, width: int, height: int) -> None:
    if (height, width) != (meta.height, meta.width):
        raise FrameError(f"{_where(record)}: image is {width}x{height} but the headers say "
                         f"{meta.width}x{meta.height}")


def _decoder_failed(record: Record, meta: FrameMeta, exc: Exception) -> FrameError:
    """The FrameError of a decoder that raised on this record's bytes."""
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:_DECODER_MESSAGE_CHARS]
    return FrameError(f"{_where(record)}: corrupt {meta.content_type} image (decoder raised {detail})")


def _cpu_decode(record: Record, meta: FrameMeta) -> np.ndarray:
    """BGR image of a checked frame: JPEG with simplejpeg (strict), PNG with OpenCV."""
    data = record.value
    try:
        if meta.content_type == "image/jpeg":
            image = simplejpeg.decode_jpeg(data, colorspace="BGR", strict=True)
        else:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except Exception as exc:  # ValueError, cv2.error, or whatever a codec raises on hostile bytes
        raise _decoder_failed(record, meta, exc) from exc
    if image is None:
        raise FrameError(f"{_where(record)}: corrupt {meta.content_type} image (decoder failed)")
    _check_shape(record, meta, image.shape[1], image.shape[0])
    return image


def decode_frame(record: Record, *, max_bytes: int, max_pixels: int) -> tuple[FrameMeta, np.ndarray]:
    """Headers and BGR image of one camera frame; FrameError names what is wrong.

    Rejects missing or bad headers, unknown encodings, oversized values, truncated or corrupt
    images, images above `max_pixels`, and images whose size disagrees with the headers; every
    failure of the decoder itself (a raised ``cv2.error`` included) is a FrameError too.
    """
    meta = check_frame(record, max_bytes=max_bytes, max_pixels=max_pixels)
    return meta, _cpu_decode(record, meta)


def gpu_decode_device(device: torch.device | str | None) -> torch.device | None:
    """Where JPEGs are decoded for a detector on ``device``: that CUDA device, or None (the CPU decoders)."""
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
    retried image by image; an image the torch decoder refuses is tried with the CPU decoders, whose
    verdict (image or corrupt) is final. Whatever a decoder raises stays with its image.
    """
    try:
        images: list[Image | FrameError] = list(_torch_decode([r.value for r, _ in jobs], device))
    except Exception:  # RuntimeError from nvjpeg/libjpeg, or anything else: find the culprit
        images = []
        for record, meta in jobs:
            try:
                images.append(_torch_decode([record.value], device)[0])
            except Exception:  # this image only: the CPU decoder gives the final verdict
                try:
                    images.append(_cpu_decode(record, meta))
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

    With ``jpeg_device`` None every frame is decoded on the CPU into a BGR array, exactly as
    ``decode_frame`` does. With a device (the service passes ``gpu_decode_device(detector
    device)``: CUDA or None) all JPEGs of the batch are decoded in one
    ``torchvision.io.decode_jpeg`` call into RGB uint8 tensors on it, and PNGs with OpenCV.
    Either way a frame is rejected (``Decoded.error``) for the reasons ``decode_frame`` lists,
    its image size checked before any pixel is decoded. A failure is the record's own: any
    exception raised while checking or decoding one frame becomes that frame's FrameError, and
    never reaches its neighbours.
    """
    results: list[Decoded | None] = []
    jobs: list[tuple[int, Record, FrameMeta]] = []
    for record in records:
        t0 = time.perf_counter_ns()
        try:
            meta = check_frame(record, max_bytes=max_bytes, max_pixels=max_pixels)
            if jpeg_device is not None and meta.content_type == "image/jpeg":
                jobs.append((len(results), record, meta))
                results.append(None)
                continue
            image = _cpu_decode(record, meta)
        except Exception as exc:  # FrameError, or a check that tripped over hostile bytes
            error = exc if isinstance(exc, FrameError) else FrameError(
                f"{_where(record)}: unusable frame ({type(exc).__name__}: {exc})")
            results.append(Decoded(record, None, None, error, (time.perf_counter_ns() - t0) * _MS))
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
