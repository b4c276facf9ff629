"""Device resolution, defined once: ``auto`` means the first CUDA device when present, else CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` when a CUDA device is present, else ``cpu``; a ``torch.device`` is
    returned as is; any other string (``"cpu"``, ``"cuda:1"``) as torch reads it.

    torch is imported here, not at module level, so ``common`` stays cheap to import.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
