"""Device resolution: ``auto`` is CUDA when present, else CPU; torch loads only when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from common.device import resolve_device

ROOT = Path(__file__).resolve().parents[3]


def test_auto_follows_the_cuda_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected


def test_named_devices_pass_through() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # named, not checked for presence
    meta = torch.device("meta")
    assert resolve_device(meta) is meta


def test_importing_common_does_not_load_torch() -> None:
    code = ("import sys, common.classes, common.control, common.device, common.kalman, "
            "common.calibration; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
