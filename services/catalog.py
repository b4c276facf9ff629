"""The roadstream services: what `roadstream serve NAME` can run, and where each comes from.

A service that has not landed yet is listed with the issue that brings it, so compose.yaml
and the CLI already agree on names; serving it says so plainly instead of pretending.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.runtime.service import ServiceRuntime
    from services.settings import Settings

Builder = Callable[["Settings", str], "ServiceRuntime"]


class ServiceNotAvailableError(RuntimeError):
    """The named service exists in the design but has not been built yet."""


@dataclass(frozen=True)
class ServiceEntry:
    """A service of the design: its name, what it does, and its builder (module:function)."""

    name: str
    summary: str
    builder: str | None
    pending: str = ""

    def load(self) -> Builder:
        """Import the builder; ServiceNotAvailableError when it has not landed."""
        if self.builder is None:
            raise ServiceNotAvailableError(
                f"service {self.name!r} is not built yet ({self.pending}); "
                f"available now: {', '.join(available())}")
        module, _, func = self.builder.partition(":")
        builder: Builder = getattr(importlib.import_module(module), func)
        return builder


SERVICES: dict[str, ServiceEntry] = {e.name: e for e in (
    ServiceEntry("simulator", "stream a scenario into camera.frames / vehicle.state / "
                 "sim.ground_truth (closed loop: obeys vehicle.control)",
                 "services.simulator.service:build"),
    ServiceEntry("perception", "camera.frames → detection, tracking, ranging → "
                 "perception.objects", "services.perception.service:build"),
    ServiceEntry("planning", "perception.objects + vehicle.state → planning.trajectory and, "
                 "through the command gate, signed vehicle.control",
                 "services.planning.service:build"),
    ServiceEntry("monitor", "watch every topic; publish safety.events",
                 "services.monitor.service:build"),
    ServiceEntry("audit", "safety.events → hash-chained SQLite/PostgreSQL audit trail",
                 "services.audit.service:build"),
    ServiceEntry("recorder", "record every topic to rotating MCAP files",
                 "services.recording.service:build"),
)}


def available() -> list[str]:
    """Names of the services that can be served now."""
    return [name for name, entry in SERVICES.items() if entry.builder is not None]
