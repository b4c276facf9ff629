"""Detector training: a smoke run of a few steps, exact resume, schedule and config handling."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from perception.checkpoint import load_checkpoint, load_detector
from perception.data_memory import load_split, make_batch
from perception.dataset import build_dataset
from perception.train_config import TrainConfig, load_train_config
from perception.training import load_state, lr_at, parse_overrides, train

IMAGE_SIZE = (64, 112)  # (h, w) [px]: tiny, so a step takes well under a second


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train_coco")
    build_dataset(out, images={"train": 12, "val": 4}, size=(160, 90), frames_per_scene=4)
    return out


def _cfg(data_dir: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "data_dir": data_dir, "out_dir": out, "image_size": IMAGE_SIZE, "steps": 3,
        "batch_size": 4, "warmup_steps": 1, "log_every": 1, "val_every": 3,
        "checkpoint_every": 1, "val_images": 4, "device": "cpu", "num_threads": 2,
    }
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_smoke_training_writes_checkpoints_and_log(data_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(data_dir, tmp_path / "run")
    result = train(cfg)
    assert result.step == 3
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert rows[-1]["val_map50"] != ""
    ckpt = load_checkpoint(tmp_path / "run" / "final.pt")
    assert ckpt.spec.arch == "ssdlite"
    assert ckpt.spec.image_size == IMAGE_SIZE
    detector = load_detector(tmp_path / "run" / "final.pt", device="cpu")
    assert detector.model_version == "ssdlite_sim-step3"


def test_resume_restores_step_optimizer_and_continues_exactly(
    data_dir: Path, tmp_path: Path
) -> None:
    straight = train(_cfg(data_dir, tmp_path / "a", steps=4, val_every=100))
    assert straight.step == 4
    first = train(_cfg(data_dir, tmp_path / "b", steps=4, val_every=100), stop_at=2)
    assert first.step == 2
    assert first.stopped_early
    state = load_state(tmp_path / "b" / "last.pt")
    assert state["step"] == 2
    assert state["optimizer"]["state"], "optimizer moments must be saved"
    resumed = train(_cfg(data_dir, tmp_path / "b", steps=4, val_every=100), resume=True)
    assert resumed.step == 4
    rows = list(csv.DictReader((tmp_path / "b" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    a = load_checkpoint(tmp_path / "a" / "final.pt").state_dict
    b = load_checkpoint(tmp_path / "b" / "final.pt").state_dict
    for key, value in a.items():
        if value.is_floating_point():
            assert torch.allclose(value, b[key], atol=1e-5, rtol=1e-4), key


def test_resume_without_state_fails_clearly(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_cfg(data_dir, tmp_path / "none"), resume=True)


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(lrs[9:]))
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_config_file_overrides_and_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps: 10\nimage_size: [96, 160]\n")
    cfg = load_train_config(path, parse_overrides(["batch_size=2", "device=cpu"]))
    assert (cfg.steps, cfg.image_size, cfg.batch_size, cfg.device) == (10, (96, 160), 2, "cpu")
    path.write_text("stepz: 10\n")
    with pytest.raises(ValidationError):
        load_train_config(path)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["steps"])


def test_augmented_batches_keep_valid_boxes(data_dir: Path) -> None:
    data = load_split(data_dir / "train.json", IMAGE_SIZE)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        images, targets = make_batch(data, list(range(len(data))), gen, augment=True, zoom_prob=0.7)
        for img, tgt in zip(images, targets, strict=True):
            assert img.shape == (3, *IMAGE_SIZE)
            assert 0.0 <= float(img.min()) <= float(img.max()) <= 1.0
            b = tgt["boxes"]
            assert b.shape[0] == tgt["labels"].shape[0]
            if b.numel():
                assert bool((b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all())
                assert float(b.min()) >= -1e-4
                assert float(b[:, 2].max()) <= IMAGE_SIZE[1] + 1e-3
