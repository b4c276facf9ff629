"""Preparing a replacement model: each check refuses by name, and a good one comes out warm."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.checkpoint import load_detector
from perception.detector import Detector
from perception.hotswap import SwapError, load_verified
from perception.packages import file_sha256
from tests.unit.perception.test_registry import checkpoint


def cpu_load(path: Path) -> Detector:
    return load_detector(path, device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkpoint(tmp_path_factory.mktemp("w") / "v7.pt", "v7")


def test_a_verified_model_is_loaded_and_warmed_up(weights: Path) -> None:
    served, times = load_verified(weights, version="v7", sha256=file_sha256(weights), load=cpu_load)
    assert (served.version, served.sha256) == ("v7", file_sha256(weights))
    assert served.detector.model_version == "v7"
    assert times.load_ms > 0
    assert times.warmup_ms > 0


def test_each_failure_names_its_step_and_path(weights: Path, tmp_path: Path) -> None:
    digest = file_sha256(weights)
    with pytest.raises(SwapError, match=r"v7\.pt has sha256 .* the deployment says 000000") as err:
        load_verified(weights, version="v7", sha256="0" * 64, load=cpu_load)
    assert err.value.step == "sha256"
    with pytest.raises(SwapError, match=r"gone\.pt does not exist") as err:
        load_verified(tmp_path / "gone.pt", version="v7", sha256=digest, load=cpu_load)
    assert err.value.step == "sha256"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(SwapError, match=r"junk\.pt does not load: ModelLoadError") as err:
        load_verified(junk, version="v7", sha256=file_sha256(junk), load=cpu_load)
    assert err.value.step == "load"
    with pytest.raises(SwapError, match=r"is model version 'v7', the deployment says 'v8'") as err:
        load_verified(weights, version="v8", sha256=digest, load=cpu_load)
    assert err.value.step == "version"

    def broken(path: Path) -> Detector:
        detector = cpu_load(path)
        detector.model = None  # type: ignore[assignment]  # a model that cannot run
        return detector

    with pytest.raises(SwapError, match=r"fails on a warm-up frame: TypeError") as err:
        load_verified(weights, version="v7", sha256=digest, load=broken)
    assert err.value.step == "warmup"
