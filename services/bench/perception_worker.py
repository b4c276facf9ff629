"""The perception service in its own process, for `roadstream bench perception`.

The benchmark measures the real service (`services.perception.service.build`) the way it
runs in production: alone in a process, its event loop not shared with the load generator.
Protocol on the standard streams, one JSON document per line after ``PREFIX``:

- stdin, first line: ``{"settings": {...}, "options": {...}, "bootstrap": "host:port"}``;
- stdout: ``{"ready": true, "group": ...}`` once the consumer holds its partitions;
- closing stdin stops the service gracefully; stdout then gets
  ``{"stopped": true, "batches": n, "batch_mean": x, "dropped": n}``.

The service's consumer group starts at the current end of `camera.frames`, so frames already
on a shared cluster are never served by the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
from typing import Any

from services.messages import CAMERA_FRAMES
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.settings import Settings

PREFIX = "roadstream-bench "


def say(message: dict[str, Any]) -> None:
    """One protocol line on stdout."""
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve(config: dict[str, Any]) -> None:
    """Build, start, report ready, serve until stdin closes, stop, report batch statistics."""
    settings = Settings(**config["settings"])
    options = PerceptionSettings(**config["options"])
    bootstrap = str(config["bootstrap"])
    frame = build(settings, bootstrap, options=options, start_from="latest")
    service = frame.perception  # type: ignore[attr-defined]
    group = frame.topic_group(CAMERA_FRAMES)
    await frame.start()
    try:
        if not await frame.wait_assigned(60):
            raise RuntimeError("the perception consumer got no partitions within 60 s")
        say({"ready": True, "group": group, "device": str(service.detector.device),
             "model_version": service.detector.model_version})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes stdin
    finally:
        await frame.stop()
    sizes = service.batch_sizes
    say({"stopped": True, "batches": len(sizes),
         "batch_mean": statistics.fmean(sizes) if sizes else 0.0,
         "dropped": service.dropped_total})


def main() -> int:
    """Entry point: ``python -m services.bench.perception_worker`` (the benchmark starts it)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(sys.stdin.readline())
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
