"""A served model and what named it, and loading a replacement that is safe to switch to.

``ServedModel`` is what the perception service serves: a ``Detector`` with the version and the
artifact digest (``perception.registry.artifact_sha256``) that every result names.

``load_verified`` is the whole check a hot swap makes before it switches: the artifact's digest
must be the one asked for (checked before the file is opened, so a changed file never runs),
it must load, its model_version must be the one asked for, and it must run a dummy frame
(warm-up: the first inference builds kernels and buffers, paid here rather than by the first
real frame). Any failure raises ``SwapError`` naming the path and the step; the caller keeps
serving the model it had.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.detector import Detector
from perception.registry import RegistryError, artifact_sha256

#: Size of the warm-up frame [px] (height, width): the simulator's camera.
WARMUP_FRAME_HW: tuple[int, int] = (360, 640)
MS = 1e-6  # ns → ms


class SwapError(RuntimeError):
    """A replacement model that must not serve; ``step`` is where it failed."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step  # "sha256", "load", "version" or "warmup"


@dataclass(frozen=True)
class ServedModel:
    """A detector and the names of what it was loaded from (``sha256`` None: from no file)."""

    detector: Detector
    version: str
    sha256: str | None


@dataclass(frozen=True)
class LoadTimes:
    """Where a replacement's preparation spent its time [ms]."""

    hash_ms: float
    load_ms: float
    warmup_ms: float


def warm_up(detector: Detector) -> float:
    """Run ``detector`` once on a grey frame; its time [ms]. Raises what the detector raises."""
    t0 = time.perf_counter_ns()
    detector.detect([np.full((*WARMUP_FRAME_HW, 3), 114, np.uint8)])
    return (time.perf_counter_ns() - t0) * MS


def load_verified(path: str | Path, *, version: str, sha256: str,
                  load: Callable[[Path], Detector]) -> tuple[ServedModel, LoadTimes]:
    """Load the artifact at ``path`` with ``load`` once it is known to be ``version``/``sha256``.

    Steps, each failing with ``SwapError``: the digest of ``path`` equals ``sha256``; ``load``
    returns a detector; its ``model_version`` equals ``version``; it detects on a warm-up frame.
    """
    p = Path(path)
    t0 = time.perf_counter_ns()
    try:
        digest = artifact_sha256(p)
    except (RegistryError, OSError) as exc:
        raise SwapError("sha256", f"{p}: {exc}") from exc
    if digest != sha256:
        raise SwapError("sha256", f"{p} has sha256 {digest[:12]}…, the deployment says "
                                  f"{sha256[:12]}…: not the registered artifact")
    t1 = time.perf_counter_ns()
    try:
        detector = load(p)
    except Exception as exc:  # any loader failure: a bad file must never take the service down
        raise SwapError("load", f"{p} does not load: {type(exc).__name__}: {exc}") from exc
    t2 = time.perf_counter_ns()
    if detector.model_version != version:
        raise SwapError("version", f"{p} is model version {detector.model_version!r}, the "
                                   f"deployment says {version!r}")
    try:
        warmup_ms = warm_up(detector)
    except Exception as exc:  # a model that cannot run one frame must not serve real ones
        raise SwapError("warmup", f"{p} fails on a warm-up frame: {type(exc).__name__}: "
                                  f"{exc}") from exc
    return (ServedModel(detector, version, sha256),
            LoadTimes(hash_ms=(t1 - t0) * MS, load_ms=(t2 - t1) * MS, warmup_ms=warmup_ms))
