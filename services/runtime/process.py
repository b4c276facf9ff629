"""A service in a process of its own, and the parent's handle on it.

`roadstream run` and `roadstream bench perception` run real services (perception, planning)
the way they run in production: alone in a process, their event loop and torch threads not
sharing the interpreter (and its lock) with the simulator's renderer, the other services or a
load generator. Protocol on the standard streams, one JSON document per line after ``PREFIX``:

- stdin, first line: the service's config (``{"settings": {...}, "options": {...},
  "bootstrap": "host:port"}``);
- stdout: ``{"ready": true, ...}`` once its consumers hold their partitions;
- closing stdin stops the service gracefully (work in flight is drained); stdout then gets
  ``{"stopped": true, ...}`` with the service's final counts.

The child is sent SIGTERM when its parent dies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from services.broker.embedded import die_with_parent
from services.runtime.service import ServiceRuntime
from services.settings import Settings

PREFIX = "roadstream-service "


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


async def serve_until_stdin_closes(frame: ServiceRuntime, ready: Callable[[], dict[str, Any]],
                                   stopped: Callable[[], dict[str, Any]]) -> None:
    """Start ``frame``, report ready (with ``ready()``) once its consumers hold their
    partitions, serve until the parent closes stdin, stop, report ``stopped()``."""
    await frame.start()
    try:
        if not await frame.wait_assigned(60):
            raise RuntimeError(f"the {frame.name} consumers got no partitions within 60 s")
        say({"ready": True, **ready()})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    finally:
        await frame.stop()
    say({"stopped": True, **stopped()})


def child_main(serve: Callable[[dict[str, Any]], Coroutine[Any, Any, None]]) -> int:
    """A service process's entry point: logs to stderr, config from stdin's first line."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(sys.stdin.readline())
    asyncio.run(serve(config))
    return 0


class ServiceProcess:
    """The parent's handle: start ``python -m module``, wait for ready, stop it for its counts.

    Its stderr (logs) is appended to ``log_path`` when given, else goes to a temporary file;
    either way the end of it is in the error when the process exits early.
    """

    def __init__(self, module: str, log_path: Path | None = None) -> None:
        self.module = module
        self.proc: asyncio.subprocess.Process | None = None
        # Closed in stop().
        self.log: IO[bytes] = (open(log_path, "a+b") if log_path is not None  # noqa: SIM115
                               else tempfile.TemporaryFile())  # noqa: SIM115

    async def start(self, settings: Settings, options: Any, bootstrap: str,
                    timeout_s: float = 120.0) -> dict[str, Any]:
        """Start the service with its settings and options (a pydantic model), and wait until
        its consumers hold their partitions."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, stdin=asyncio.subprocess.PIPE,
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
                raise RuntimeError(f"the service process {self.module} exited:\n"
                                   + self.log_tail())
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
        """Close its stdin (graceful stop) and return its final counts ({} if it is gone)."""
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
