"""Training configuration: one YAML file, validated by pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Everything ``roadstream train`` needs; relative paths are taken from the working dir.

    Steps are optimizer steps (one batch each). The learning rate warms up linearly for
    ``warmup_steps`` and then follows a cosine down to ``lr * min_lr_ratio`` at ``steps``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="ssdlite_sim", pattern=r"^[A-Za-z0-9_\-.]+$")
    data_dir: Path = Path("data/sim_coco")  # holds train.json / val.json from `roadstream dataset`
    out_dir: Path = Path("runs/train/ssdlite_sim")
    arch: str = "ssdlite"
    image_size: tuple[int, int] = (320, 576)  # (h, w) [px]
    arch_extra: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    steps: int = Field(default=6000, ge=1)
    batch_size: int = Field(default=32, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(default=2e-3, gt=0)
    min_lr_ratio: float = Field(default=0.02, ge=0, le=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    warmup_steps: int = Field(default=300, ge=0)
    grad_clip: float = Field(default=10.0, gt=0)
    rare_boost: float = Field(default=1.0, ge=0, description="extra sampling weight, rare classes")
    zoom_prob: float = Field(default=0.4, ge=0, le=1)
    min_zoom: float = Field(default=0.6, gt=0.1, le=1)
    colour_jitter: float = Field(default=0.2, ge=0, le=1)
    checkpoint_every: int = Field(default=500, ge=1)
    val_every: int = Field(default=1000, ge=1)
    val_images: int | None = Field(default=500, ge=1)
    log_every: int = Field(default=50, ge=1)
    device: str = "auto"  # auto = CUDA when present, else CPU
    num_threads: int | None = Field(default=None, ge=1)
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    time_limit_s: float | None = Field(default=None, gt=0, description="stop (and save) after")
    train_images: int | None = Field(default=None, ge=1, description="use only the first N")
    init_weights: Path | None = Field(
        default=None, description="fine-tune: start from this checkpoint's weights (same arch "
        "and image_size) instead of a random initialisation; ignored on --resume")


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config and apply ``overrides`` (field → value); pydantic errors on bad input."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"training config {path} must hold a mapping")
    data.update(overrides or {})
    return TrainConfig.model_validate(data)
