"""scripts/gpu-check: the one command that gives every CUDA figure where a GPU exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu-check"


def test_the_script_parses_and_is_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this case is the machine without a GPU")
def test_without_a_gpu_it_stops_at_once_and_says_why(tmp_path: Path) -> None:
    done = subprocess.run([str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)})
    assert done.returncode != 0
    assert "no CUDA device is visible to torch" in done.stderr
    assert not (tmp_path / "cuda-tests.txt").exists()  # nothing ran after the check
