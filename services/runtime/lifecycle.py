"""The lifecycle of a service: start its parts, serve, then drain and stop them.

Start: the parts in order (ops endpoint, tracing, broker and its subscribers), then the
service's own background loops. Stop (graceful shutdown, on SIGINT/SIGTERM or when a loop
returns): the stop event is set, the loops are given time to finish, the service's own
resources are closed once nothing uses them any more, and the parts stop in reverse order;
stopping the broker drains the handlers in flight and commits their offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[None]]
Phase = Literal["starting", "ok", "stopping"]
#: How long `stop` waits for each background loop to return [s].
LOOP_DRAIN_S = 10.0
#: How long `stop` waits for each part to stop before it goes on to the next [s]: a stop that
#: hangs (a client waiting on a broker that no longer answers) must not keep the service, or
#: the run that hosts it, from ending.
PART_STOP_S = 60.0


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Part:
    """One thing a service starts and stops (started in order, stopped in reverse)."""

    name: str
    start: Callable[[], Awaitable[None]] = _nothing
    stop: Callable[[], Awaitable[None]] = _nothing


class Lifecycle:
    """Starts and stops one service's parts, loops and resources; says which phase it is in."""

    def __init__(self, service: str, parts: Sequence[Part]) -> None:
        self.service = service
        self.parts = tuple(parts)
        #: Set when the service should stop (a signal, `stop`, or a loop that returned).
        self.stop_event = asyncio.Event()
        self._phase: Phase = "starting"
        self._loops: list[Loop] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], None]] = []

    @property
    def phase(self) -> Phase:
        """``starting`` until every part runs, ``ok`` while serving, then ``stopping``."""
        return self._phase

    def background(self, loop: Loop) -> None:
        """Run `loop(stop_event)` while the service runs; when it returns, the service stops."""
        self._loops.append(loop)

    def on_stop(self, close: Callable[[], None]) -> None:
        """Have `stop` call `close` (in a thread) once the handlers are drained."""
        self._closers.append(close)

    async def start(self) -> None:
        """Start the parts in order, then the background loops."""
        for part in self.parts:
            await part.start()
        if self._phase == "starting":
            self._phase = "ok"
        self._tasks = [asyncio.create_task(self._run_loop(loop)) for loop in self._loops]

    async def _run_loop(self, loop: Loop) -> None:
        try:
            await loop(self.stop_event)
        finally:
            self.stop_event.set()

    async def stop(self) -> None:
        """Drain the loops, close the service's resources, stop the parts in reverse order."""
        self._phase = "stopping"
        self.stop_event.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=LOOP_DRAIN_S)
        while self._closers:
            close = self._closers.pop()
            try:
                await asyncio.to_thread(close)
            except Exception:  # one resource failing to close must not keep the rest open
                log.exception("%s: closing %r failed", self.service, close)
        for part in reversed(self.parts):
            try:
                await asyncio.wait_for(part.stop(), PART_STOP_S)
            except TimeoutError:
                log.warning("%s: stopping the %s took over %g s; going on without it",
                            self.service, part.name, PART_STOP_S)
            except Exception as exc:  # the parts after it must still stop
                log.warning("%s: stopping the %s failed: %s: %s", self.service, part.name,
                            type(exc).__name__, exc)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start; serve until SIGINT/SIGTERM, a loop's end or `stop`; then stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop_event.set)
        await self.start()
        try:
            waits = [asyncio.create_task(self.stop_event.wait())]
            if stop is not None:
                waits.append(asyncio.create_task(stop.wait()))
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            await self.stop()
