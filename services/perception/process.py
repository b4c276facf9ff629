"""The perception service in a process of its own, and the parent's handle on it.

`roadstream run` and `roadstream bench perception` run the real service
(`services.perception.service.build`) the way it runs in production: alone in a process, its
event loop and the model's thread not sharing the interpreter (and its lock) with the
simulator, the planner or a load generator. Protocol on the standard streams, one JSON
document per line after ``PREFIX``:

- stdin, first line: ``{"settings": {...}, "options": {...}, "bootstrap": "host:port"}``;
- stdout: ``{"ready": true, "group": ..., "device": ..., "model_version": ...}`` once the
  consumer holds its partitions;
- closing stdin stops the service gracefully (the batch in flight is drained); stdout then
  gets ``{"stopped": true, "batches": n, "batch_mean": x, "batch_sizes": [...], "dropped": {reason: n}}``.

The service's consumer group starts at the current end of `camera.frames`, so frames already
on a shared cluster are never served again. The child is sent SIGTERM when its parent dies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from services.broker.embedded import die_with_parent
from services.messages import CAMERA_FRAMES
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.settings import Settings

PREFIX = "roadstream-perception "


def say(message: dict[str, Any]) -> None:
    """One protocol line on stdout."""
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def plain_settings(settings: Settings) -> dict[str, Any]:
    """Settings as JSON for the service process, secrets included (sent over a pipe, not argv)."""
    data = settings.model_dump(mode="json")
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            data[name] = value.get_secret_value()
    return data


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
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    finally:
        await frame.stop()
    sizes = list(service.batch_sizes)
    say({"stopped": True, "batches": len(sizes),
         "batch_mean": statistics.fmean(sizes) if sizes else 0.0, "batch_sizes": sizes,
         "dropped": service.dropped_by_reason})


class PerceptionProcess:
    """The parent's handle: start the service process, wait for ready, stop it for its counts.

    Its stderr (logs) is appended to ``log_path`` when given, else goes to a temporary file; either way
    the end of it is in the error when the process exits early.
    """

    def __init__(self, log_path: Path | None = None) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        # Closed in stop().
        self.log: IO[bytes] = (open(log_path, "a+b") if log_path is not None  # noqa: SIM115
                               else tempfile.TemporaryFile())  # noqa: SIM115

    async def start(self, settings: Settings, options: PerceptionSettings, bootstrap: str,
                    timeout_s: float = 120.0) -> dict[str, Any]:
        """Start the service and wait until its consumer holds its partitions."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.perception.process", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=self.log, preexec_fn=die_with_parent)
        assert self.proc.stdin is not None
        config = {"settings": plain_settings(settings), "options": options.model_dump(mode="json"),
                  "bootstrap": bootstrap}
        self.proc.stdin.write((json.dumps(config) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._message("ready"), timeout_s)

    async def _message(self, key: str) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the perception service process exited:\n" + self.log_tail())
            text = line.decode(errors="replace")
            if text.startswith(PREFIX):
                message: dict[str, Any] = json.loads(text[len(PREFIX):])
                if message.get(key):
                    return message

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the service's stderr."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    async def stop(self) -> dict[str, Any]:
        """Close its stdin (graceful stop) and return its final statistics ({} if it is gone)."""
        summary: dict[str, Any] = {}
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                summary = await asyncio.wait_for(self._message("stopped"), 30)
                await asyncio.wait_for(self.proc.wait(), 10)
            except (TimeoutError, RuntimeError):
                self.proc.kill()
                await self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return summary


def main() -> int:
    """Entry point: ``python -m services.perception.process`` (its parent starts it)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(sys.stdin.readline())
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
