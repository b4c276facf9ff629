"""The process table: every roadstream service, described once, and how it is built.

In the manner of openpilot's ``process_config``: one entry per service names it, says what
it does, where its builder and its options model are, and whether `roadstream run` runs it
in a process of its own. Everything that starts a service goes through this table:

- `roadstream serve NAME` builds the service here (`build`) and runs it until SIGTERM;
- `roadstream run` builds the in-process services here and starts the others with
  `services.runtime.process.ServiceProcess`, whose child process builds them here too;
- `roadstream bench perception` starts perception the way `roadstream run` does.

A builder is called ``builder(settings, bootstrap, **kwargs)``; it takes its options model as
``options=`` and the runtime's keywords (``start_from``, ``run_id``...) as the rest. It
returns a `BuiltService`, or the bare `ServiceRuntime` for a service that reports nothing
beyond its metrics (monitor, recorder).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from services.runtime.service import BuiltService, ServiceRuntime
from services.settings import Settings

Builder = Callable[..., "BuiltService[Any] | ServiceRuntime"]


def _attribute(path: str) -> Any:
    """``module:name`` imported."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ServiceEntry:
    """One service: name, what it does, builder and options model (``module:name``), and
    whether `roadstream run` gives it a process of its own."""

    name: str
    summary: str
    builder: str
    options: str
    own_process: bool = False

    def load(self) -> Builder:
        """The builder, imported (importing it loads no model: builders do that, at start-up)."""
        builder: Builder = _attribute(self.builder)
        return builder

    def options_model(self) -> type[BaseModel]:
        """The pydantic model of the builder's ``options=``."""
        model: type[BaseModel] = _attribute(self.options)
        return model


SERVICES: dict[str, ServiceEntry] = {e.name: e for e in (
    ServiceEntry("simulator", "stream a scenario into camera.frames / vehicle.state / "
                 "sim.ground_truth (closed loop: obeys vehicle.control)",
                 "services.simulator.service:build",
                 "services.simulator.settings:SimulatorSettings"),
    # Perception and planning run in processes of their own in `roadstream run`: in one
    # interpreter the model's thread, the renderer, the planner and every consumer share one
    # lock, and in real time each Kafka hop waited on it, and each plan on the renders
    # (docs/benchmarks.md).
    ServiceEntry("perception", "camera.frames → detection, tracking, ranging → "
                 "perception.objects", "services.perception.service:build",
                 "services.perception.settings:PerceptionSettings", own_process=True),
    ServiceEntry("planning", "perception.objects + vehicle.state → planning.trajectory and, "
                 "through the command gate, signed vehicle.control",
                 "services.planning.service:build",
                 "services.planning.settings:PlanningSettings", own_process=True),
    ServiceEntry("monitor", "watch every topic; publish safety.events",
                 "services.monitor.service:build", "services.monitor.settings:MonitorSettings"),
    ServiceEntry("audit", "safety.events → hash-chained SQLite/PostgreSQL audit trail",
                 "services.audit.service:build", "services.audit.settings:AuditSettings"),
    ServiceEntry("recorder", "record every topic to rotating MCAP files",
                 "services.recording.service:build",
                 "services.recording.service:RecorderSettings"),
)}


def entry(name: str) -> ServiceEntry:
    """The table's entry for `name`; ValueError naming the services for an unknown one."""
    try:
        return SERVICES[name]
    except KeyError:
        raise ValueError(f"no service {name!r}; the services are: {', '.join(SERVICES)}") from None


def build(name: str, settings: Settings, bootstrap: str, **kwargs: Any) -> BuiltService[Any]:
    """Build the named service in this process (not started): ``builder(settings, bootstrap,
    **kwargs)``, its runtime wrapped in a `BuiltService` when the builder returns it alone."""
    built = entry(name).load()(settings, bootstrap, **kwargs)
    return built if isinstance(built, BuiltService) else BuiltService(built, built)
