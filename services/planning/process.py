"""The planning service in a process of its own (protocol: :mod:`services.runtime.process`).

`roadstream run` runs the real service (`services.planning.service.build`) alone in a
process: in the main job's process the simulator's renders (about 23 ms each at night) held
its event loop, and a plan waited for them (night_city in real time: 160 ms from objects to
the first control, against 45 ms elsewhere). The signing key and control rate come from the
environment (`ROADSTREAM_CONTROL_*`), as for `roadstream serve planning`. Its stopped message
carries ``commands`` ({mode: n}).

Its consumer groups start at the current end of the topics.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from services.runtime.process import ServiceProcess, child_main, serve_until_stdin_closes
from services.planning.service import build
from services.planning.settings import PlanningSettings
from services.settings import Settings


async def serve(config: dict[str, Any]) -> None:
    """Build the service from ``config`` and serve it until stdin closes."""
    settings = Settings(**config["settings"])
    options = PlanningSettings(**config["options"])
    frame = build(settings, str(config["bootstrap"]), options=options, start_from="latest")
    service = frame.planning  # type: ignore[attr-defined]

    def stopped() -> dict[str, Any]:
        return {"commands": {sample.labels["mode"]: int(sample.value)
                             for metric in service.commands.collect()
                             for sample in metric.samples if sample.name.endswith("_total")}}

    await serve_until_stdin_closes(frame, lambda: {"device": str(service.planner.device)},
                                   stopped)


class PlanningProcess(ServiceProcess):
    """The parent's handle on the planning process."""

    def __init__(self, log_path: Path | None = None) -> None:
        super().__init__("services.planning.process", log_path)


if __name__ == "__main__":
    sys.exit(child_main(serve))
