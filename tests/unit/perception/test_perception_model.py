"""Detector builders, the Detector wrapper, checkpoints and load errors (tiny inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from perception.classes import COCO_TO_ROADSTREAM
from perception.model import (
    ARCHS,
    Detector,
    DetectorSpec,
    ModelLoadError,
    build_detector,
    build_from_spec,
    load_checkpoint,
    load_detector,
    save_checkpoint,
    smoke_forward,
)

TINY = DetectorSpec(arch="ssdlite", image_size=(64, 96), score_thresh=0.0)


@pytest.fixture(scope="module")
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return build_from_spec(TINY)


def frames(n: int = 2, hw: tuple[int, int] = (48, 80)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


class FixedOutput(nn.Module):
    """A stand-in detection model that returns the same raw output for every image."""

    def __init__(self, boxes: list[list[float]], labels: list[int], scores: list[float]) -> None:
        super().__init__()
        self.out = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32),
        }

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [dict(self.out) for _ in images]


@pytest.mark.parametrize("arch", ARCHS)
def test_smoke_forward_every_arch(arch: str) -> None:
    model = build_detector(arch=arch, image_size=(64, 96), score_thresh=0.0)
    (out,) = smoke_forward(model, (50, 70))
    assert out["boxes"].shape[1] == 4
    assert out["labels"].dtype == torch.int64
    assert out["boxes"].shape[0] == out["scores"].shape[0] == out["labels"].shape[0]
    assert out["boxes"].shape[0] > 0  # score_thresh 0: an untrained model still emits boxes
    assert float(out["boxes"][:, 2].max()) <= 70 + 1e-3  # in input pixels, not model pixels
    # Sigmoid heads (FCOS) may emit class 0; the Detector drops it.
    assert int(out["labels"].min()) >= 0
    assert int(out["labels"].max()) <= 4
    (det,) = Detector(model, device="cpu", score_thresh=0.0).detect(frames(1, (50, 70)))
    assert len(det) > 0
    assert set(det.class_ids.tolist()) <= {1, 2, 3, 4}


@pytest.mark.parametrize("arch", ARCHS)
def test_train_step_gives_finite_losses(arch: str) -> None:
    torch.manual_seed(0)
    model = build_detector(arch=arch, image_size=(64, 96)).train()
    images = [torch.rand(3, 60, 90), torch.rand(3, 60, 90)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 30.0, 50.0]]), "labels": torch.tensor([3])},
        {"boxes": torch.tensor([[40.0, 10.0, 80.0, 40.0], [5.0, 5.0, 20.0, 15.0]]),
         "labels": torch.tensor([1, 4])},
    ]
    losses = model(images, targets)
    total = sum(losses.values())
    assert all(torch.isfinite(v) for v in losses.values())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_builder_rejects_unknown_arch_and_tiny_sizes() -> None:
    with pytest.raises(ValueError, match="unknown detector arch"):
        build_detector(arch="yolo")
    with pytest.raises(ValueError, match="at least 32"):
        build_detector(image_size=(16, 640))


def test_dense_backbone_halves_the_size_at_each_stage() -> None:
    from perception.architectures import dense_backbone

    net = dense_backbone((8, 16, 24, 32, 40), (0, 1, 0, 1, 2))
    x = torch.rand(1, 3, 64, 96)
    shapes = []
    for stage in net.children():
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(8, 32, 48), (16, 16, 24), (24, 8, 12), (32, 4, 6), (40, 2, 3)]
    with pytest.raises(ValueError, match="5 widths"):
        dense_backbone((8, 16), (0, 0))


def test_fcos_dense_knobs_reach_the_model() -> None:
    model = build_detector(arch="fcos_dense", image_size=(64, 96), widths=[8, 16, 24, 32, 48],
                           fpn_channels=32, head_convs=2)
    body = model.backbone.body
    assert [int(m.out_channels) for m in model.backbone.fpn.inner_blocks.modules()
            if isinstance(m, nn.Conv2d)] == [32, 32, 32]
    assert isinstance(body.stage5[0], nn.Module)
    assert len(model.head.classification_head.conv) == 2 * 3  # conv, GroupNorm, ReLU per layer


def test_spec_round_trips_through_a_dict() -> None:
    spec = DetectorSpec(arch="fcos_mbv3", image_size=(96, 160), extra={"fpn_channels": 64})
    assert DetectorSpec.from_dict(spec.to_dict()) == spec


def test_detector_output_contract(tiny_model: nn.Module) -> None:
    threads = torch.get_num_threads()
    try:
        detector = Detector(tiny_model, device="cpu", score_thresh=0.0, num_threads=1)
        assert torch.get_num_threads() == 1
        results = detector.detect(frames(3))
    finally:
        torch.set_num_threads(threads)
    assert len(results) == 3
    for det in results:
        assert det.boxes.dtype == np.float32
        assert det.boxes.shape[1] == 4
        assert det.class_ids.dtype == np.int64
        assert det.scores.dtype == np.float32
        assert (np.diff(det.scores) <= 0).all()
    assert detector.detect([]) == []


def test_detector_accepts_a_float_tensor(tiny_model: nn.Module) -> None:
    detector = Detector(tiny_model, device="cpu", score_thresh=0.0)
    bgr = frames(2)
    rgb = torch.from_numpy(np.stack(bgr)[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    from_tensor = detector.detect(rgb)
    from_frames = detector.detect(bgr)
    for a, b in zip(from_tensor, from_frames, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)]
)
def test_detector_rejects_bad_frames(tiny_model: nn.Module, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected uint8"):
        Detector(tiny_model, device="cpu").detect([bad])


def test_score_threshold_and_class_remap() -> None:
    raw = FixedOutput(
        boxes=[[0, 0, 10, 10], [1, 1, 5, 5], [2, 2, 8, 8], [3, 3, 9, 9], [4, 4, 6, 6]],
        labels=[3, 1, 8, 5, 2],  # COCO: car, person, truck, airplane, bicycle
        scores=[0.9, 0.8, 0.2, 0.95, 0.6],
    )
    (det,) = Detector(raw, device="cpu", score_thresh=0.5, class_map=COCO_TO_ROADSTREAM).detect(
        frames(1)
    )
    # truck (0.2) is under threshold; airplane (5) is not ours.
    assert det.class_ids.tolist() == [1, 3, 4]
    np.testing.assert_allclose(det.scores, [0.9, 0.8, 0.6])
    np.testing.assert_allclose(det.boxes[1], [1, 1, 5, 5])


def test_checkpoint_round_trip_gives_identical_outputs(tiny_model: nn.Module, tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "det.pt", tiny_model, TINY, model_version="tiny-1", metadata={"epochs": 0}
    )
    loaded = load_detector(path, device="cpu", score_thresh=0.0)
    original = Detector(tiny_model, device="cpu", score_thresh=0.0)
    assert loaded.model_version == "tiny-1"
    assert loaded.class_map is None
    batch = frames(2)
    for a, b in zip(original.detect(batch), loaded.detect(batch), strict=True):
        assert len(a) > 0
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_array_equal(a.scores, b.scores)
    ckpt = load_checkpoint(path)
    assert ckpt.spec == TINY
    assert ckpt.metadata == {"epochs": 0}


def test_checkpoint_with_other_class_names_is_mapped_by_name(
    tiny_model: nn.Module, tmp_path: Path
) -> None:
    names = ["background", "pedestrian", "car", "bus", "cyclist"]
    path = save_checkpoint(tmp_path / "d.pt", tiny_model, TINY, model_version="v", class_names=names)
    assert load_detector(path, device="cpu").class_map == {1: 3, 2: 1, 4: 4}


def test_metadata_must_be_json(tiny_model: nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "x.pt", tiny_model, TINY, model_version="v",
                        metadata={"bad": object()})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"absent\.pt does not exist"):
        load_detector(tmp_path / "absent.pt")


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ModelLoadError, match=r"garbage\.pt is not a readable torch checkpoint"):
        load_detector(path)


def test_plain_state_dict_needs_a_builder(tiny_model: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"plain\.pt is not a roadstream\.detector"):
        load_detector(path)


def test_unknown_builder(tiny_model: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"unknown builder 'yolo_v99'.*plain\.pt"):
        load_detector(path, builder="yolo_v99")


def test_incompatible_state_dict(tiny_model: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "ours.pt"
    torch.save(tiny_model.state_dict(), path)  # 5-class head
    with pytest.raises(ModelLoadError, match=r"ours\.pt does not fit.*shape mismatches"):
        load_detector(path, builder="ssdlite320_mobilenet_v3_large")  # 91-class head
    with pytest.raises(ModelLoadError, match=r"ours\.pt does not fit.*missing keys"):
        load_detector(path, builder="fcos_mbv3")


def test_foreign_torchvision_weights_with_a_class_map(tmp_path: Path) -> None:
    torch.manual_seed(0)
    foreign = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=91
    )
    path = tmp_path / "coco_ssdlite.pth"
    torch.save({"model": foreign.state_dict(), "epoch": 3}, path)  # torchvision reference layout
    yaml_map = tmp_path / "coco.yaml"
    yaml_map.write_text("3: car\n8: truck\n1: pedestrian\n2: cyclist\n")
    detector = load_detector(
        path, builder="ssdlite320_mobilenet_v3_large", class_map=yaml_map, device="cpu",
        score_thresh=0.0,
    )
    assert detector.class_map == {3: 1, 8: 2, 1: 3, 2: 4}
    assert detector.model_version.startswith("ssdlite320_mobilenet_v3_large@")
    torch.testing.assert_close(
        detector.model.state_dict()["head.classification_head.module_list.0.1.weight"],
        foreign.state_dict()["head.classification_head.module_list.0.1.weight"],
    )
    (det,) = detector.detect(frames(1))
    assert set(det.class_ids.tolist()) <= {1, 2, 3, 4}


def test_bad_class_map_file_for_a_foreign_model(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"missing\.yaml does not exist"):
        load_detector(path, builder="ssdlite320_mobilenet_v3_large", class_map=tmp_path / "missing.yaml")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_channels_last_path() -> None:
    detector = Detector(build_from_spec(TINY), device="cuda", score_thresh=0.0)
    assert detector.half
    conv = next(m for m in detector.model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    results = detector.detect(frames(2))
    assert len(results) == 2
    for det in results:
        assert det.boxes.dtype == np.float32
        assert len(det) > 0
        assert set(det.class_ids.tolist()) <= {1, 2, 3, 4}
