"""Model packages of the shipped weights, exported once per test session into a temporary folder.

The fp32 package is evaluated on the held-out fixture at export (the round-trip test compares
that with a later `roadstream eval`); the int8 one is calibrated on 32 rendered validation frames
to keep the export short (the figures in docs/benchmarks.md use 64).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.eval_run import DEFAULT_WEIGHTS
from perception.export import export_package

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
