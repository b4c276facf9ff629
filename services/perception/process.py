"""The perception service in a process of its own (protocol: :mod:`services.runtime.process`).

`roadstream run` and `roadstream bench perception` run the real service
(`services.perception.service.build`) alone in a process. Its ready message carries
``group``, ``device`` and ``model_version``; its stopped message ``batches``, ``batch_mean``,
``batch_sizes`` and ``dropped`` ({reason: n}).

The service's consumer group starts at the current end of `camera.frames`, so frames already
on a shared cluster are never served again.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from services.runtime.process import ServiceProcess, child_main, serve_until_stdin_closes
from services.messages import CAMERA_FRAMES
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.settings import Settings


async def serve(config: dict[str, Any]) -> None:
    """Build the service from ``config`` and serve it until stdin closes."""
    settings = Settings(**config["settings"])
    options = PerceptionSettings(**config["options"])
    frame = build(settings, str(config["bootstrap"]), options=options, start_from="latest")
    service = frame.perception  # type: ignore[attr-defined]

    def stopped() -> dict[str, Any]:
        sizes = list(service.batch_sizes)
        return {"batches": len(sizes), "batch_mean": statistics.fmean(sizes) if sizes else 0.0,
                "batch_sizes": sizes, "dropped": service.dropped_by_reason}

    await serve_until_stdin_closes(
        frame, lambda: {"group": frame.topic_group(CAMERA_FRAMES),
                        "device": str(service.detector.device),
                        "model_version": service.detector.model_version}, stopped)


class PerceptionProcess(ServiceProcess):
    """The parent's handle on the perception process."""

    def __init__(self, log_path: Path | None = None) -> None:
        super().__init__("services.perception.process", log_path)


if __name__ == "__main__":
    sys.exit(child_main(serve))
