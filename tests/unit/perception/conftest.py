"""Model packages of the shipped weights, exported once per test session into a temporary folder.

The fp32 packages are evaluated on the held-out fixture at export (the round-trip tests compare
that with a later `roadstream eval`); the int8 ones are calibrated on 32 rendered validation
frames to keep the export short (the figures in docs/benchmarks.md use 64). The OpenVINO
packages are written by the CLI itself (`roadstream export --format openvino`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.eval_run import DEFAULT_WEIGHTS
from perception.export import export_package
from services.cli.main import main

FIXTURE = Path(__file__).parents[2] / "fixtures" / "perception_heldout"
TEST_CALIB_FRAMES = 32  # 8 frames clip the activations' range: scores move by over 0.1


@pytest.fixture(scope="session")
def fp32_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An fp32 ONNX package, its manifest evaluated on the held-out fixture."""
    out = tmp_path_factory.mktemp("packages") / "fp32"
    export_package(DEFAULT_WEIGHTS, out, eval_data=FIXTURE)
    return out


@pytest.fixture(scope="session")
def int8_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An int8 ONNX package calibrated on a few rendered validation frames, not evaluated."""
    out = tmp_path_factory.mktemp("packages") / "int8"
    export_package(DEFAULT_WEIGHTS, out, int8=True, calib_frames=TEST_CALIB_FRAMES, evaluate=False)
    return out


@pytest.fixture(scope="session")
def ov_fp32_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An fp32 OpenVINO package, its manifest evaluated on the held-out fixture."""
    out = tmp_path_factory.mktemp("packages") / "ov-fp32"
    assert main(["export", "--weights", str(DEFAULT_WEIGHTS), "--format", "openvino",
                 "--data", str(FIXTURE), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def ov_int8_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An int8 OpenVINO package (NNCF) calibrated as ``int8_package`` is, not evaluated."""
    out = tmp_path_factory.mktemp("packages") / "ov-int8"
    assert main(["export", "--weights", str(DEFAULT_WEIGHTS), "--format", "openvino", "--int8",
                 "--calib-frames", str(TEST_CALIB_FRAMES), "--no-eval", "--out", str(out)]) == 0
    return out
