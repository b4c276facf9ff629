"""Serving wrapper around a torchvision-style detection model.

``Detector.detect`` takes a batch of BGR uint8 frames (as OpenCV decodes them), RGB uint8
tensors (as torchvision decodes them, on the GPU too) or a float RGB tensor, runs the model
under ``torch.inference_mode`` (fp16 autocast and channels-last on CUDA) and returns
``Detections`` in our classes, with foreign class ids remapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from common.classes import CLASS_NAMES
from common.device import resolve_device
from perception.detections import Detections

__all__ = ["Detections", "Detector", "frames_to_tensors"]


def _remap_table(class_map: Mapping[int, int] | None) -> np.ndarray | None:
    if class_map is None:
        return None
    table = np.zeros(max(class_map) + 1, dtype=np.int64)
    for foreign, ours in class_map.items():
        table[foreign] = ours
    return table


def frames_to_tensors(frames: Sequence[np.ndarray | torch.Tensor],
                      device: torch.device) -> list[torch.Tensor]:
    """Decoded frames → RGB float ``[3, H, W]`` tensors in [0, 1] on ``device``.

    A frame is a BGR uint8 ``(H, W, 3)`` array (as OpenCV decodes it) or an RGB uint8
    ``[3, H, W]`` tensor (as ``torchvision.io.decode_jpeg`` decodes it, possibly already on
    the GPU). The uint8 frame is moved first and converted on the device (4× less copying to
    a GPU). Raises ``ValueError`` for a frame of any other type, dtype or shape.
    """
    tensors = []
    for i, frame in enumerate(frames):
        if isinstance(frame, torch.Tensor):
            if frame.dtype != torch.uint8 or frame.ndim != 3 or frame.shape[0] != 3:
                raise ValueError(f"frame {i}: expected a uint8 [3, H, W] RGB tensor, got "
                                 f"{frame.dtype} {tuple(frame.shape)}")
            tensors.append(frame.to(device, non_blocking=True).float().div_(255.0))
            continue
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or (
            frame.shape[2] != 3
        ):
            shape = getattr(frame, "shape", None)
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise ValueError(f"frame {i}: expected uint8 (H, W, 3) BGR, got {dtype} {shape}")
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        t = torch.from_numpy(rgb).to(device, non_blocking=True)
        tensors.append(t.permute(2, 0, 1).float().div_(255.0))
    return tensors


class Detector:
    """A detection model ready to serve: device placement, pre/post-processing, class remap.

    Args:
        model: a torchvision-style detection model (see ``perception.model``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` …
        score_thresh: detections below this score are dropped.
        class_map: ``{model class id: our class id}`` for foreign models; classes absent from
            it are dropped. ``None`` = the model already speaks our ids.
        num_threads: CPU intra-op threads (process-wide ``torch.set_num_threads``); ignored on
            CUDA. ``None`` leaves torch's setting.
        half: fp16 autocast; ``None`` = on for CUDA, off on CPU.
        model_version: reported with every result.
        class_names: names of our class ids (index = id).
        operating_score: the weights' calibrated operating score (``perception.operating_point``),
            from which the tracker takes its thresholds; ``None`` if never calibrated.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        score_thresh: float = 0.3,
        class_map: Mapping[int, int] | None = None,
        num_threads: int | None = None,
        half: bool | None = None,
        model_version: str = "unversioned",
        class_names: Sequence[str] = CLASS_NAMES,
        operating_score: float | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.operating_score = operating_score
        self.score_thresh = float(score_thresh)
        self.class_map = dict(class_map) if class_map is not None else None
        self._remap = _remap_table(self.class_map)
        self.model_version = model_version
        self.class_names = tuple(class_names)
        cuda = self.device.type == "cuda"
        self.half = cuda if half is None else bool(half and cuda)
        if not cuda and num_threads is not None:
            torch.set_num_threads(int(num_threads))
        model = model.eval().to(self.device)
        if cuda:
            # Convolutions in cuDNN run faster in NHWC, above all under fp16 tensor cores.
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def detect(self, batch: Sequence[np.ndarray | torch.Tensor] | torch.Tensor) -> list[Detections]:
        """Detect objects in a batch.

        ``batch`` is a sequence of decoded frames (sizes may differ): BGR uint8 ``(H, W, 3)``
        arrays or RGB uint8 ``[3, H, W]`` tensors (see ``frames_to_tensors``), or a float
        ``[N, 3, H, W]`` RGB tensor in [0, 1]. Returns one ``Detections`` per image, in order,
        boxes in that image's pixels, our class ids, scores ≥ ``score_thresh``.
        """
        if isinstance(batch, torch.Tensor):
            if batch.ndim != 4 or batch.shape[1] != 3 or not batch.is_floating_point():
                raise ValueError(f"expected a float [N, 3, H, W] tensor, got {tuple(batch.shape)}")
            images = list(batch.to(self.device).unbind(0))
        else:
            images = frames_to_tensors(batch, self.device)
        if not images:
            return []
        with torch.inference_mode():
            if self.half:
                with torch.autocast(device_type=self.device.type, dtype=torch.float16):
                    outputs = self.model(images)
            else:
                outputs = self.model(images)
        return [self._postprocess(out) for out in outputs]

    def _postprocess(self, out: Mapping[str, torch.Tensor]) -> Detections:
        boxes = out["boxes"].float().cpu().numpy().astype(np.float32, copy=False)
        labels = out["labels"].cpu().numpy().astype(np.int64, copy=False)
        scores = out["scores"].float().cpu().numpy().astype(np.float32, copy=False)
        if self._remap is not None:
            in_table = (labels >= 0) & (labels < self._remap.shape[0])
            mapped = np.zeros_like(labels)
            mapped[in_table] = self._remap[labels[in_table]]
            labels = mapped
        # Sigmoid heads (FCOS, RetinaNet) keep a logit for class 0 and may emit it; it is
        # background by contract and never reported.
        keep = (scores >= self.score_thresh) & (labels > 0)
        order = np.argsort(-scores[keep], kind="stable")
        return Detections(
            boxes=boxes[keep][order].reshape(-1, 4),
            class_ids=labels[keep][order],
            scores=scores[keep][order],
        )
