"""Settings of the perception service (`ROADSTREAM_PERCEPTION_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from perception.eval_run import DEFAULT_WEIGHTS as SHIPPED_WEIGHTS


class PerceptionSettings(BaseSettings):
    """Model, batching and input limits of the perception service."""

    model_config = SettingsConfigDict(env_prefix="ROADSTREAM_PERCEPTION_", extra="forbid")

    weights: Path = Field(default=SHIPPED_WEIGHTS, description="Checkpoint or state_dict file.")
    builder: str | None = Field(default=None, description="torchvision builder name for foreign "
                                "weights (e.g. fasterrcnn_resnet50_fpn); None = our checkpoint.")
    class_map: Path | None = Field(default=None, description="YAML/JSON {their id: our class}.")
    score_thresh: float = Field(default=0.4, ge=0, le=1)
    max_batch_size: int = Field(default=4, ge=1, le=64, description="Frames per model batch.")
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000,
                               description="Longest poll for a batch when none is waiting [ms].")
    latency_budget_ms: float | None = Field(
        default=500.0, gt=0, description="Frames older than this (wall clock) are dropped [ms]; "
        "None turns dropping off (lockstep replays, whose stamps are simulation time).")
    max_frame_bytes: int = Field(default=8 << 20, ge=1024, description="Larger frames are rejected.")
    max_pixels: int = Field(default=4096 * 4096, ge=64 * 64,
                            description="Decoded images above this are rejected.")
