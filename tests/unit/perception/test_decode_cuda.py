"""Frame intake on the GPU path: batched torchvision JPEG decode, same named errors as OpenCV.

The dispatch and the torchvision path run on every machine (torchvision decodes on the CPU
too); the tests marked `cuda` decode with nvjpeg and run the detector in fp16 channels-last,
and are skipped only when no CUDA device is present.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from perception.detector import Detector, frames_to_tensors
from perception.model import build_detector
from services.messages import PerceptionObjects
from services.messages.examples import frame_meta
from services.perception import decode as decode_module
from services.perception.decode import (
    FrameError,
    decode_frame,
    decode_frames,
    gpu_decode_device,
)
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.runtime.delivery import Record
from services.settings import Settings
from tests.hostile_images import bomb_png, jpeg_claiming

LIMITS = {"max_bytes": 1 << 20, "max_pixels": 1920 * 1080}
CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def picture(w: int = 640, h: int = 360) -> np.ndarray:
    img = np.full((h, w, 3), 70, np.uint8)
    cv2.rectangle(img, (100, 100), (200, 200), (0, 0, 255), -1)
    cv2.circle(img, (450, 200), 60, (40, 220, 90), -1)
    return img


def jpeg(w: int = 640, h: int = 360, **params: int) -> bytes:
    flags = [item for kv in params.items() for item in (getattr(cv2, kv[0]), kv[1])]
    return cv2.imencode(".jpg", picture(w, h), flags)[1].tobytes()


def png() -> bytes:
    return cv2.imencode(".png", picture())[1].tobytes()


def no_scan(data: bytes) -> bytes:
    """A JPEG whose start-of-scan marker became a comment: intact header, undecodable."""
    i = data.index(b"\xff\xda")
    return data[:i] + b"\xff\xfe" + data[i + 2:]


def record(value: bytes, *, content_type: str = "image/jpeg", offset: int = 9,
           headers: list[tuple[str, bytes]] | None = None) -> Record:
    base = headers if headers is not None else frame_meta().to_headers()
    hdrs = [(k, content_type.encode() if k == "content-type" else v) for k, v in base]
    return Record(topic="camera.frames", partition=0, offset=offset, key=b"ego/front", value=value,
                  headers=tuple(hdrs))


def as_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """An intake image as an RGB (H, W, 3) array, whichever decoder produced it."""
    if isinstance(image, torch.Tensor):
        return image.permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


BAD_FRAMES = [
    (jpeg()[:-2000], None, "truncated JPEG"),
    (b"\xff\xd8" + b"\x00" * 500 + b"\xff\xd9", None, "corrupt image/jpeg"),
    (no_scan(jpeg()), None, "corrupt image/jpeg"),
    (b"GIF89a....", None, "not a JPEG"),
    (b"\xff\xd8" + b"x" * (2 << 20) + b"\xff\xd9", None, "exceeds the limit"),
    (jpeg(320, 180), None, "headers say 640x360"),
    (jpeg(), [(k, b"9000" if k in ("width", "height") else v) for k, v in frame_meta().to_headers()],
     "exceeds 2073600 pixels"),
    (jpeg_claiming(30000, 30000), None, "image is 30000x30000 (900000000 pixels): exceeds 2073600"),
    (jpeg_claiming(320, 180), None, "image is 320x180 but the headers say 640x360"),
]
BAD_IDS = ["truncated", "corrupt", "corrupt-scan", "wrong-magic", "oversized", "size-mismatch",
           "too-many-pixels", "bomb", "lying-frame-header"]


# --- dispatch (every machine) ------------------------------------------------------------

def test_only_a_cuda_detector_decodes_jpeg_on_the_gpu() -> None:
    assert gpu_decode_device(None) is None
    assert gpu_decode_device("cpu") is None
    assert gpu_decode_device(torch.device("cpu")) is None
    assert gpu_decode_device("cuda") == torch.device("cuda")
    assert gpu_decode_device(torch.device("cuda", 1)) == torch.device("cuda", 1)


def test_a_cpu_service_decodes_with_opencv() -> None:
    model = build_detector(arch="ssdlite", image_size=(96, 160))
    built = build(Settings(), "localhost:9092", options=PerceptionSettings(),
                  detector=Detector(model, device="cpu", num_threads=1))
    assert built.service.jpeg_device is None


def test_without_a_jpeg_device_every_frame_goes_through_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(decode_module, "_torch_decode", lambda datas, device: calls.append(len(datas)))
    out = decode_frames([record(jpeg()), record(png(), content_type="image/png")], **LIMITS,
                        jpeg_device=None)
    assert calls == []
    assert [type(d.image) for d in out] == [np.ndarray, np.ndarray]


def test_jpegs_of_a_batch_are_decoded_in_one_call_and_png_by_opencv(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = decode_module._torch_decode

    def spy(datas: list[bytes], device: torch.device) -> list[torch.Tensor]:
        calls.append(len(datas))
        return real(datas, device)

    monkeypatch.setattr(decode_module, "_torch_decode", spy)
    batch = [record(jpeg(), offset=1), record(png(), content_type="image/png", offset=2),
             record(jpeg(IMWRITE_JPEG_QUALITY=60), offset=3), record(jpeg(), offset=4)]
    out = decode_frames(batch, **LIMITS, jpeg_device=CPU)
    assert calls == [3]
    assert [type(d.image) for d in out] == [torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor]
    assert [d.record.offset for d in out] == [1, 2, 3, 4]
    assert all(d.error is None and d.meta is not None and d.decode_ms >= 0 for d in out)


# --- the torchvision path on the CPU -----------------------------------------------------

def test_torchvision_and_opencv_decode_the_same_pixels() -> None:
    data = jpeg()
    (gpu_path,) = decode_frames([record(data)], **LIMITS, jpeg_device=CPU)
    _, cv_image = decode_frame(record(data), **LIMITS)
    assert isinstance(gpu_path.image, torch.Tensor)
    assert gpu_path.image.dtype == torch.uint8
    assert tuple(gpu_path.image.shape) == (3, 360, 640)
    diff = np.abs(as_rgb(gpu_path.image).astype(int) - as_rgb(cv_image).astype(int))
    assert diff.mean() < 1.0  # two libjpeg builds: equal up to IDCT rounding


@pytest.mark.parametrize(("value", "headers", "message"), BAD_FRAMES, ids=BAD_IDS)
def test_bad_frames_get_the_same_named_error_on_both_paths(
        value: bytes, headers: list[tuple[str, bytes]] | None, message: str) -> None:
    for device in (None, CPU):
        (out,) = decode_frames([record(value, headers=headers)], **LIMITS, jpeg_device=device)
        assert isinstance(out.error, FrameError), device
        assert out.image is None
        assert "camera.frames[0]@9" in str(out.error)
        assert message in str(out.error), (device, str(out.error))


def test_one_bad_jpeg_does_not_sink_its_batch() -> None:
    batch = [record(jpeg(), offset=1), record(no_scan(jpeg()), offset=2), record(jpeg(), offset=3)]
    out = decode_frames(batch, **LIMITS, jpeg_device=CPU)
    assert [d.error is None for d in out] == [True, False, True]
    assert "camera.frames[0]@2" in str(out[1].error)


def test_bombs_and_liars_never_reach_a_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(decode_module, "_torch_decode", lambda datas, device: calls.append("torch"))
    monkeypatch.setattr(decode_module.cv2, "imdecode", lambda *args: calls.append("opencv"))
    batch = [record(jpeg_claiming(30000, 30000), offset=1), record(jpeg_claiming(1280, 720), offset=2),
             record(bomb_png(20000, 20000), content_type="image/png", offset=3)]
    for device in (None, CPU):
        out = decode_frames(batch, **LIMITS, jpeg_device=device)
        assert [type(d.error) for d in out] == [FrameError] * 3
    assert calls == []


def test_the_detector_takes_rgb_tensors_like_bgr_arrays() -> None:
    torch.manual_seed(0)
    model = build_detector(arch="ssdlite", image_size=(96, 160))
    detector = Detector(model, device="cpu", score_thresh=0.0, num_threads=1)
    data = jpeg()
    (tensor_frame,) = decode_frames([record(data)], **LIMITS, jpeg_device=CPU)
    _, bgr = decode_frame(record(data), **LIMITS)
    assert isinstance(tensor_frame.image, torch.Tensor)
    from_tensor = frames_to_tensors([tensor_frame.image], CPU)[0]
    from_array = frames_to_tensors([bgr], CPU)[0]
    assert (from_tensor - from_array).abs().mean() < 1 / 255
    a, b = detector.detect([tensor_frame.image]), detector.detect([bgr])
    assert len(a) == len(b) == 1
    with pytest.raises(ValueError, match="uint8"):
        detector.detect([tensor_frame.image.float()])


# --- CUDA --------------------------------------------------------------------------------

@pytest.mark.cuda
@cuda
def test_cuda_decode_gives_device_tensors_matching_opencv() -> None:
    gpu = torch.device("cuda")
    batch = [record(jpeg(), offset=i) for i in range(4)] + [record(png(), content_type="image/png")]
    out = decode_frames(batch, **LIMITS, jpeg_device=gpu)
    assert all(d.error is None for d in out)
    assert [d.image.device.type for d in out[:4]] == ["cuda"] * 4  # type: ignore[union-attr]
    assert isinstance(out[4].image, np.ndarray)  # PNG: OpenCV
    _, cv_image = decode_frame(batch[0], **LIMITS)
    assert out[0].image is not None
    diff = np.abs(as_rgb(out[0].image).astype(int) - as_rgb(cv_image).astype(int))
    assert diff.mean() < 2.0  # nvjpeg and libjpeg differ by IDCT rounding


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize(("value", "headers", "message"), BAD_FRAMES, ids=BAD_IDS)
def test_cuda_decode_names_bad_frames(value: bytes, headers: list[tuple[str, bytes]] | None,
                                      message: str) -> None:
    good = record(jpeg(), offset=1)
    out = decode_frames([good, record(value, headers=headers)], **LIMITS,
                        jpeg_device=torch.device("cuda"))
    assert out[0].error is None
    assert isinstance(out[1].error, FrameError)
    assert message in str(out[1].error)


def _hooked_dtypes(model: torch.nn.Module) -> tuple[list[torch.dtype], Any]:
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[torch.dtype] = []
    handle = conv.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    return seen, handle


@pytest.mark.cuda
@cuda
def test_cuda_detector_runs_fp16_channels_last_on_gpu_decoded_frames() -> None:
    torch.manual_seed(0)
    detector = Detector(build_detector(arch="ssdlite", image_size=(96, 160)), device="cuda",
                        score_thresh=0.0)
    conv_weights = [m.weight for m in detector.model.modules() if isinstance(m, torch.nn.Conv2d)
                    and m.weight.shape[-1] > 1]
    assert conv_weights
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
    seen, handle = _hooked_dtypes(detector.model)
    try:
        out = decode_frames([record(jpeg(), offset=i) for i in range(2)], **LIMITS,
                            jpeg_device=detector.device)
        results = detector.detect([d.image for d in out if d.image is not None])
    finally:
        handle.remove()
    assert len(results) == 2
    assert seen
    assert seen[0] == torch.float16  # autocast really applies


@pytest.mark.cuda
@cuda
async def test_cuda_service_decodes_on_the_gpu_and_publishes() -> None:
    torch.manual_seed(0)
    detector = Detector(build_detector(arch="ssdlite", image_size=(96, 160)), device="cuda",
                        score_thresh=0.0, model_version="test-cuda")
    built = build(Settings(device="cuda"), "localhost:9092",
                  options=PerceptionSettings(latency_budget_ms=5000), detector=detector)
    assert built.service.jpeg_device == detector.device
    out: list[PerceptionObjects] = []

    @built.runtime.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body))

    async with TestKafkaBroker(built.runtime.broker) as br:
        for seq in (1, 2):
            meta = frame_meta(seq).model_copy(update={"capture_ns": time.time_ns()})
            await br.publish(jpeg(), topic="camera.frames", key=b"ego/front",
                             headers={k: v.decode() for k, v in meta.to_headers()})
    assert [o.source.seq for o in out] == [1, 2]
    assert out[0].model_version == "test-cuda"
