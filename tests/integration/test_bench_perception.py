"""`roadstream bench perception` end to end on tiny settings: every figure is there and positive.

Not a timing test: it checks the benchmark runs through the embedded broker with the real
service in its own process and reports what it promises, whatever the machine's speed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perception.architectures import DetectorSpec, build_from_spec
from perception.bench import calibrate_batchnorm
from perception.checkpoint import save_checkpoint
from services.bench.perception import BenchOptions, bench_perception
from services.cli.bench import perception_text
from services.settings import Settings

pytestmark = pytest.mark.integration


def tiny_weights(path: Path) -> Path:
    torch.manual_seed(0)
    spec = DetectorSpec(arch="ssdlite", image_size=(96, 160))
    model = build_from_spec(spec)
    calibrate_batchnorm(model, [torch.rand(3, 360, 640) for _ in range(2)])
    return save_checkpoint(path, model, spec, model_version="tiny-bench")


async def test_bench_perception_reports_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    opts = BenchOptions(weights=tiny_weights(tmp_path / "tiny.pt"), device="cpu", threads=1,
                        duration_s=1.0, runs=2, frames=4, warmup_s=0.3, hops=3, batch_sizes=(1, 2))
    stages: list[str] = []
    result = await bench_perception(Settings(), kafka_bootstrap, opts,
                                    lambda stage, fraction: stages.append(stage))

    assert set(result["bare_model_fps"]) == {1, 2}
    assert all(v > 0 for v in result["bare_model_fps"].values())
    for key in ("decode_fps", "floor_ms", "hop_ms", "pipeline_fps", "pipeline_batch_mean",
                "efficiency", "offered_fps"):
        assert result[key] > 0, key
    assert result["efficiency_batch_size"] in (1, 2)
    latency = result["latency_ms"]
    assert latency["n"] >= 1
    assert 0 < latency["p50"] <= latency["p99"]
    assert result["received"] == result["offered_frames"]
    assert set(result["goals"]) == {"efficiency", "p99_latency"}
    assert isinstance(result["goals"]["efficiency"]["met"], bool)
    assert result["settings"]["model_version"] == "tiny-bench"
    assert result["settings"]["torch_threads"] == 1
    assert result["service"]["ready"]
    assert result["service"]["stopped"]
    assert result["service"]["dropped"] == {}
    assert result["machine"]["cores"] >= 1
    assert {"render", "decode", "bare model", "broker hop", "pipeline", "latency"} <= set(stages)
    assert "efficiency" in perception_text(result)
