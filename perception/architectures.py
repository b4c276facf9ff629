"""Detector architectures, composed from torchvision's detection classes.

Every builder here never downloads weights (``weights=None`` and ``weights_backbone=None``
throughout). The input/output contract of the built models is in ``perception.model``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.detection import (
    FCOS,
    fasterrcnn_mobilenet_v3_large_320_fpn,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import BasicBlock
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import Conv2dNormActivation

from common.classes import NUM_CLASSES

ARCHS: tuple[str, ...] = ("fcos_dense", "ssdlite", "fasterrcnn_mbv3", "fcos_mbv3")
"""Architectures ``build_detector`` knows. ``fcos_dense`` is the shipped one: of these it trains
fastest from scratch on a CPU (dense 3×3 convolutions) and serves at about SSDlite's speed."""

DEFAULT_IMAGE_SIZE: tuple[int, int] = (384, 640)  # (h, w) [px]; 16:9 frames, /32 for the FPN


@dataclass(frozen=True)
class DetectorSpec:
    """Everything needed to rebuild a detector's modules; saved inside checkpoints.

    ``image_size`` is (h, w) [px]: every input is resized to exactly this size inside the model
    and boxes are mapped back to the input's pixels. ``score_thresh`` is the model's own
    post-processing floor (keep it low for evaluation; ``Detector`` applies the service's
    threshold on top).
    """

    arch: str = "ssdlite"
    num_classes: int = NUM_CLASSES
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (safe for ``torch.load(weights_only=True)``)."""
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorSpec:
        """Inverse of ``to_dict``; unknown keys raise ``TypeError``."""
        values = dict(data)
        if "image_size" in values:
            h, w = values["image_size"]
            values["image_size"] = (int(h), int(w))
        return cls(**values)


def _fixed_transform(image_size: tuple[int, int], mean: list[float], std: list[float]) -> nn.Module:
    h, w = image_size
    # fixed_size is (w, h) in torchvision; size_divisible=32 keeps FPN levels aligned.
    return GeneralizedRCNNTransform(
        min(h, w), max(h, w), mean, std, size_divisible=32, fixed_size=(w, h)
    )


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in image_size)
    if h < 32 or w < 32:
        raise ValueError(f"image_size {image_size} must be at least 32×32 px")
    return h, w


def _ssdlite(spec: DetectorSpec) -> nn.Module:
    """SSDlite (MobileNetV3-Large, depthwise head) at ``spec.image_size``.

    torchvision's builder fixes 320×320 and anchors from 20 % of the image upwards; road scenes
    need small, far objects, so the default boxes here start at ``min_ratio`` (default 5 %) of
    the image. Six default boxes per location, as the head expects.
    """
    model = ssdlite320_mobilenet_v3_large(
        weights=None,
        weights_backbone=None,
        num_classes=spec.num_classes,
        score_thresh=spec.score_thresh,
        nms_thresh=spec.nms_thresh,
        detections_per_img=spec.detections_per_img,
        topk_candidates=int(spec.extra.get("topk_candidates", 300)),
    )
    min_ratio = float(spec.extra.get("min_ratio", 0.05))
    max_ratio = float(spec.extra.get("max_ratio", 0.8))
    model.anchor_generator = DefaultBoxGenerator(
        [[2, 3] for _ in range(6)], min_ratio=min_ratio, max_ratio=max_ratio
    )
    # [-1, 1] input range, as the SSDlite recipe trains it.
    model.transform = _fixed_transform(spec.image_size, [0.5] * 3, [0.5] * 3)
    return model


def _fasterrcnn_mbv3(spec: DetectorSpec) -> nn.Module:
    """Faster R-CNN, MobileNetV3-Large FPN (torchvision's low-resolution 320 variant)."""
    h, w = spec.image_size
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=spec.num_classes,
        min_size=min(h, w),
        max_size=max(h, w),
        box_score_thresh=spec.score_thresh,
        box_nms_thresh=spec.nms_thresh,
        box_detections_per_img=spec.detections_per_img,
    )
    model.transform = _fixed_transform(
        spec.image_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    )
    return model


def _fcos_mbv3(spec: DetectorSpec) -> nn.Module:
    """FCOS (anchor-free) on a MobileNetV3-Large FPN with strides 8–64 and a slim head.

    The stride-8 level is there for small, far objects; FPN width and head depth are cut from
    FCOS's 256 channels × 4 convs to keep the CPU cost near SSDlite's.
    """
    fpn_channels = int(spec.extra.get("fpn_channels", 96))
    head_convs = int(spec.extra.get("head_convs", 2))
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    features = mobilenet_v3_large(weights=None, norm_layer=norm).features
    # Indices of the last block before each stride doubles: strides 8, 16, 32.
    strided = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    taps = [strided[2] - 1, strided[3] - 1, len(features) - 1]
    in_channels = [_out_channels(features[i]) for i in taps]
    layers = {str(idx): str(level) for level, idx in enumerate(taps)}
    return _fcos_on(features, layers, in_channels, spec, fpn_channels, head_convs)


DENSE_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 192)  # channels at strides 2, 4, 8, 16, 32
DENSE_BLOCKS: tuple[int, ...] = (0, 0, 1, 1, 1)  # residual blocks after each stage's stride


def dense_backbone(widths: tuple[int, ...] = DENSE_WIDTHS,
                   blocks: tuple[int, ...] = DENSE_BLOCKS) -> nn.Sequential:
    """A plain 3×3-conv residual backbone (torchvision ``Conv2dNormActivation`` + ResNet
    ``BasicBlock``), five stages of stride 2; children ``stage1`` … ``stage5``.

    Dense 3×3 convolutions run near the CPU's peak with oneDNN, unlike MobileNetV3's depthwise
    and squeeze-excite layers, and a shallow BN net trains from scratch in few epochs.
    """
    if len(widths) != 5 or len(blocks) != 5:
        raise ValueError(f"dense backbone needs 5 widths and 5 block counts, got {widths}, {blocks}")
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = 3
    for i, (c, n) in enumerate(zip(widths, blocks, strict=True)):
        layers: list[nn.Module] = [Conv2dNormActivation(c_in, c, 3, stride=2)]
        layers += [BasicBlock(c, c) for _ in range(n)]
        stages[f"stage{i + 1}"] = nn.Sequential(*layers)
        c_in = c
    return nn.Sequential(stages)


def _fcos_dense(spec: DetectorSpec) -> nn.Module:
    """FCOS (anchor-free) on ``dense_backbone`` with an FPN at strides 8–64 and a slim head.

    ``extra``: ``widths``/``blocks`` (the backbone), ``fpn_channels`` (64), ``head_convs`` (1).
    Levels: stride 8 takes objects up to 64 px, 16 up to 128, 32 up to 256, 64 the rest (FCOS's
    own scale ranges).
    """
    widths = tuple(int(v) for v in spec.extra.get("widths", DENSE_WIDTHS))
    blocks = tuple(int(v) for v in spec.extra.get("blocks", DENSE_BLOCKS))
    fpn_channels = int(spec.extra.get("fpn_channels", 64))
    head_convs = int(spec.extra.get("head_convs", 1))
    return _fcos_on(dense_backbone(widths, blocks), {"stage3": "0", "stage4": "1", "stage5": "2"},
                    list(widths[2:]), spec, fpn_channels, head_convs)


def _fcos_on(body: nn.Module, layers: dict[str, str], in_channels: list[int], spec: DetectorSpec,
             fpn_channels: int, head_convs: int) -> nn.Module:
    """FCOS on ``body``'s ``layers`` (strides 8, 16, 32) with an FPN plus a max-pooled stride 64."""
    backbone = BackboneWithFPN(body, layers, in_channels, fpn_channels,
                               extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,)), ((1.0,),) * 4)
    h, w = spec.image_size
    model = FCOS(
        backbone,
        spec.num_classes,
        min_size=min(h, w),
        max_size=max(h, w),
        anchor_generator=anchors,
        head=FCOSHead(fpn_channels, 1, spec.num_classes, num_convs=head_convs),
        score_thresh=spec.score_thresh,
        nms_thresh=spec.nms_thresh,
        detections_per_img=spec.detections_per_img,
        topk_candidates=int(spec.extra.get("topk_candidates", 300)),
    )
    model.transform = _fixed_transform(
        spec.image_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    )
    return model


def _out_channels(block: nn.Module) -> int:
    """Output channels of a MobileNetV3 block (InvertedResidual or Conv2dNormActivation)."""
    channels = getattr(block, "out_channels", None)
    if isinstance(channels, int):
        return channels
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)


_BUILDERS = {"fcos_dense": _fcos_dense, "ssdlite": _ssdlite, "fasterrcnn_mbv3": _fasterrcnn_mbv3,
             "fcos_mbv3": _fcos_mbv3}


def build_from_spec(spec: DetectorSpec) -> nn.Module:
    """Build the randomly initialised model ``spec`` describes (eval mode); see the module doc."""
    if spec.arch not in _BUILDERS:
        raise ValueError(f"unknown detector arch {spec.arch!r}; known: {', '.join(ARCHS)}")
    if spec.num_classes < 2:
        raise ValueError(f"num_classes {spec.num_classes} must count background plus >= 1 class")
    checked = DetectorSpec(**{**asdict(spec), "image_size": _check_image_size(spec.image_size)})
    model = _BUILDERS[spec.arch](checked)
    return model.eval()
