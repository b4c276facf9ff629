"""A service of the process table in a process of its own, and the parent's handle on it.

`roadstream run` and `roadstream bench perception` run the services the table marks
``own_process`` (perception, planning) the way they run in production: alone in a process,
their event loop and torch threads not sharing the interpreter (and its lock) with the
simulator's renderer, the other services or a load generator. The child is
``python -m services.runtime.process``; it builds the service through the table
(`services.catalog.build`). Protocol on the standard streams, one JSON document per line
after ``PREFIX``:

- stdin, first line: ``{"service": NAME, "settings": {...}, "options": {...},
  "bootstrap": "host:port"}``;
- stdout: ``{"ready": true, ...}`` once its consumers hold their partitions, with the
  service's `BuiltService.ready` facts;
- closing stdin stops the service gracefully (work in flight is drained); stdout then gets
  ``{"stopped": true, ...}`` with its `BuiltService.counts`.

The child's consumer groups start at the current end of their topics (``start_from=
"latest"``), so messages already on a shared cluster are never served again. It is sent
SIGTERM when its parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, SecretStr

from services.broker.embedded import die_with_parent
from services.catalog import build, entry
from services.runtime.service import BuiltService
from services.settings import Settings

PREFIX = "roadstream-service "
#: The child's module (this one).
CHILD_MODULE = "services.runtime.process"
#: How long the child waits for its consumers to hold partitions before giving up [s].
ASSIGN_TIMEOUT_S = 60.0


def freeze_heap() -> int:
    """Collect once, then leave every object alive now out of all later collections; returns
    how many there are.

    A started service holds hundreds of thousands of tracked objects (torch and the other
    imports, the model, the clients; 455 000 in the main job) that live as long as the
    process. A full collection walks them all, with the event loop standing still: 211 ms
    in the main job and 74 ms in planning, mid-scenario, on this project's 2-core reference
    machine (at 20 Hz, several frames or commands late in a row). Frozen (`gc.freeze`), they
    are skipped, and a full collection walks only what was made since. Cycles among the
    frozen objects are never collected: call it once the process holds what it keeps, and
    `gc.unfreeze` before throwing much of that away.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


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


async def serve_until_stdin_closes(built: BuiltService[Any]) -> None:
    """Start the service, report ready once its consumers hold their partitions, serve until
    the parent closes stdin, stop, report its counts."""
    runtime = built.runtime
    await runtime.start()
    try:
        if not await runtime.wait_assigned(ASSIGN_TIMEOUT_S):
            raise RuntimeError(f"the {runtime.name} consumers got no partitions within "
                               f"{ASSIGN_TIMEOUT_S:g} s")
        freeze_heap()
        say({"ready": True, **built.ready()})
        loop = asyncio.get_running_loop()
        # Until the parent closes stdin, or SIGTERM (a supervisor's stop): either way the work
        # in flight drains and its offsets are committed before the process exits.
        done = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, done.set)

        def read_stdin() -> None:  # a daemon thread: a stop by SIGTERM must not wait for it
            sys.stdin.read()
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
        await done.wait()
    finally:
        await runtime.stop()
    say({"stopped": True, **built.counts()})


async def serve_config(config: dict[str, Any]) -> None:
    """Build the service a config line names, through the process table, and serve it."""
    service = entry(str(config["service"]))
    options = service.options_model()(**config["options"])
    built = build(service.name, Settings(**config["settings"]), str(config["bootstrap"]),
                  options=options, start_from="latest")
    await serve_until_stdin_closes(built)


def child_main() -> int:
    """The service process's entry point: logs to stderr, config from stdin's first line."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve_config(json.loads(sys.stdin.readline())))
    return 0


class ServiceProcess:
    """The parent's handle: start a service of the table in its own process, wait for ready,
    stop it for its counts.

    Its stderr (logs) is appended to ``log_path`` when given, else goes to a temporary file;
    either way the end of it is in the error when the process exits early.
    """

    def __init__(self, service: str, log_path: Path | None = None) -> None:
        self.service = entry(service).name
        self.proc: asyncio.subprocess.Process | None = None
        # Closed in stop().
        self.log: IO[bytes] = (open(log_path, "a+b") if log_path is not None  # noqa: SIM115
                               else tempfile.TemporaryFile())  # noqa: SIM115

    async def start(self, settings: Settings, options: BaseModel, bootstrap: str,
                    timeout_s: float = 120.0,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Start the service with its settings and options (its table's options model), and
        wait until its consumers hold their partitions; returns its ready facts. ``env``:
        variables added to the child's environment (the run's control keyring)."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", CHILD_MODULE, stdin=asyncio.subprocess.PIPE,
            env={**os.environ, **env} if env else None,
            stdout=asyncio.subprocess.PIPE, stderr=self.log, preexec_fn=die_with_parent)
        assert self.proc.stdin is not None
        config = {"service": self.service, "settings": plain_settings(settings),
                  "options": options.model_dump(mode="json"), "bootstrap": bootstrap}
        self.proc.stdin.write((json.dumps(config) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._message("ready"), timeout_s)

    async def _message(self, key: str) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {self.service} service process exited:\n"
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
                # It may have exited on its own between the check and here (a failed start).
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return summary


if __name__ == "__main__":
    sys.exit(child_main())
