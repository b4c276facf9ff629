"""Public detector API: builders, checkpoints and the model contract.

Builders are keyword-only and never download weights; models start randomly initialised and are
trained on simulator data, or are loaded from a local file with ``load_detector``.

Model contract (torchvision's): in eval mode ``model(images)`` takes a list of N float tensors
``[3, H, W]``, RGB in [0, 1], any size, and returns N dicts with ``boxes`` ``[K, 4]`` float
``[x1, y1, x2, y2]`` in pixels of the input image, ``labels`` ``[K]`` int64 class ids (1-based,
0 = background) and ``scores`` ``[K]`` float, sorted by score. Resizing to ``image_size`` and
normalisation happen inside the model. In train mode it takes images plus targets
(``boxes``, ``labels``) and returns a dict of losses. ``Detector`` wraps a model for serving.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from common.classes import NUM_CLASSES
from perception.architectures import ARCHS, DEFAULT_IMAGE_SIZE, DetectorSpec, build_from_spec
from perception.checkpoint import load_checkpoint, load_detector, save_checkpoint
from perception.classes import ClassMapError, ModelLoadError
from perception.detector import Detections, Detector

__all__ = [
    "ARCHS",
    "DEFAULT_IMAGE_SIZE",
    "ClassMapError",
    "Detections",
    "Detector",
    "DetectorSpec",
    "ModelLoadError",
    "build_detector",
    "build_from_spec",
    "count_parameters",
    "load_checkpoint",
    "load_detector",
    "save_checkpoint",
    "smoke_forward",
]


def build_detector(
    *,
    arch: str = "ssdlite",
    num_classes: int = NUM_CLASSES,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    **extra: Any,
) -> nn.Module:
    """Build a detector from torchvision classes, randomly initialised, never downloading.

    Args:
        arch: one of ``ARCHS``: ``fcos_dense`` (FCOS on a dense residual backbone, the shipped
            one), ``ssdlite`` (SSDlite MobileNetV3-Large), ``fasterrcnn_mbv3``
            (Faster R-CNN MobileNetV3-Large FPN), ``fcos_mbv3`` (FCOS, MobileNetV3 FPN).
        num_classes: classes including background (5 for ours).
        image_size: (h, w) [px] the model resizes every input to.
        score_thresh, nms_thresh, detections_per_img: the model's post-processing.
        extra: arch-specific knobs (``min_ratio``/``max_ratio`` for SSDlite default boxes,
            ``fpn_channels`` (a multiple of 32)/``head_convs`` for FCOS, ``widths``/``blocks``
            for the dense backbone, ``topk_candidates``).

    Returns the model in eval mode; its input/output contract is in the module docstring
    (list of ``[3, H, W]`` RGB [0, 1] tensors → dicts of ``boxes`` xyxy px, ``labels``,
    ``scores``). Use ``DetectorSpec`` + ``build_from_spec`` to keep the recipe for checkpoints.
    """
    spec = DetectorSpec(
        arch=arch,
        num_classes=num_classes,
        image_size=image_size,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        extra=dict(extra),
    )
    return build_from_spec(spec)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def smoke_forward(model: nn.Module, image_hw: tuple[int, int] = (96, 160)) -> list[dict[str, torch.Tensor]]:
    """One eval forward pass on a random image; returns torchvision's output dicts."""
    model.eval()
    with torch.inference_mode():
        out: list[dict[str, torch.Tensor]] = model([torch.rand(3, *image_hw)])
    return out
