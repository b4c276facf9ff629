"""Settings of the perception service (`ROADSTREAM_PERCEPTION_*`)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from perception.eval_run import DEFAULT_WEIGHTS as SHIPPED_WEIGHTS
from services import OPENCV_MAX_IMAGE_PIXELS
from services.settings import Settings


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def model_threads(settings: Settings) -> int:
    """torch threads for the detector: ``ROADSTREAM_TORCH_THREADS``, else every usable core but one.

    The spare core runs the Kafka client, the event loop and JPEG decoding; when torch's
    threads share it they wait on each other at every parallel region (`roadstream bench
    perception` on 2 cores: 1 thread serves as many frames as 2, at 0.95 of the bare model's
    rate against 0.79; docs/benchmarks.md).
    """
    return settings.torch_threads or max(1, usable_cores() - 1)


class PerceptionSettings(BaseSettings):
    """Model, batching and input limits of the perception service."""

    model_config = SettingsConfigDict(env_prefix="ROADSTREAM_PERCEPTION_", extra="forbid")

    weights: Path = Field(default=SHIPPED_WEIGHTS, description="Checkpoint or state_dict file.")
    builder: str | None = Field(default=None, description="torchvision builder name for foreign "
                                "weights (e.g. fasterrcnn_resnet50_fpn); None = our checkpoint.")
    class_map: Path | None = Field(default=None, description="YAML/JSON {their id: our class}.")
    score_thresh: float | None = Field(
        default=None, ge=0, le=1, description="Detector score floor; None = what the tracker needs at the "
        "weights' calibrated operating score (perception.operating_point).")
    max_batch_size: int = Field(default=4, ge=1, le=64, description="Frames per model batch.")
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000,
                               description="Longest poll for a batch when none is waiting [ms].")
    latency_budget_ms: float | None = Field(
        default=500.0, gt=0, description="Frames older than this (wall clock) are dropped [ms]; "
        "None turns dropping off (lockstep replays, whose stamps are simulation time).")
    newest_per_camera: bool = Field(
        default=True, description="Of several frames of one camera in a batch, serve only the "
        "newest; the others are dropped, counted and raised as events. Behind its input the "
        "service then skips frames instead of lagging (two cameras at 10 Hz each on two cores "
        "kept perception 480 ms behind, over the gate's timeout). Off: serve every frame.")
    primary_camera: str | None = Field(
        default="front", description="Its frames are served first, in a batch of their own, "
        "when a fetch also holds other cameras' (the planner plans on this camera's results; "
        "match ROADSTREAM_PLANNING_PRIMARY_CAMERA). On a CPU a batch of two takes as long as "
        "two of one, so the others lose nothing; night_city's two cameras in real time on two "
        "cores held the front camera's objects 120 ms for the wide one's. None: one order.")
    max_fetch_records: int = Field(
        default=16, ge=1, le=256, description="Records taken from the consumer at once (the "
        "model still runs on at most max_batch_size): with newest_per_camera, the backlog to "
        "skip among; either way, the records whose offsets are committed together, and at "
        "most how many frames a crash can hand to a survivor a second time.")
    stream_forget_s: float = Field(
        default=30.0, gt=0, le=3600, description="A camera stream silent this long loses its "
        "tracker (its track ids start over if it comes back) [s].")
    max_streams: int = Field(
        default=256, ge=1, le=100_000, description="Camera streams tracked at once; beyond it "
        "the longest silent is forgotten (a producer inventing camera ids cannot grow memory).")
    from_registry: bool = Field(
        default=False, description="Serve the model registry's production version "
        "(ROADSTREAM_MODEL_REGISTRY_DIR) from the start instead of `weights`, and read the "
        "registry again once the model.deployments consumer holds its partition: a replica "
        "started or restarted after a promotion serves what the others serve. `weights` "
        "serves when nothing was promoted, or when the production fails its check "
        "(model_swap_failed).")
    shadow_weights: Path | None = Field(
        default=None, description="A candidate checkpoint or package (ours) to run in shadow "
        "beside production on the frames production serves, publishing on "
        "perception.objects.shadow (docs/models.md); None: no shadow until a `shadow` "
        "deployment.")
    shadow_report_every_s: float = Field(
        default=30.0, gt=0, le=86_400, description="Period of the model_shadow_report event "
        "comparing the shadow with production over the frames since the last one [s].")
    max_frame_bytes: int = Field(default=8 << 20, ge=1024, description="Larger frames are rejected.")
    max_pixels: int = Field(
        default=OPENCV_MAX_IMAGE_PIXELS, ge=64 * 64, le=OPENCV_MAX_IMAGE_PIXELS,
        description="Images of more pixels (by their headers or their own encoded size) are "
        "rejected before decoding; at most OpenCV's limit (services.OPENCV_MAX_IMAGE_PIXELS).")
