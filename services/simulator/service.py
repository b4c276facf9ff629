"""`roadstream serve simulator`: stream the configured scenario again and again (new run ids)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from services.runtime.delivery import Record
from services.runtime.service import ServiceRuntime
from services.messages import VEHICLE_CONTROL
from services.settings import Settings
from services.simulator.runner import ScenarioStreamer
from services.simulator.settings import SimulatorSettings

log = logging.getLogger(__name__)


def build(settings: Settings, bootstrap: str) -> ServiceRuntime:
    """The simulator service, configured by ROADSTREAM_SIM_*."""
    options = SimulatorSettings()
    frame = ServiceRuntime("simulator", settings, bootstrap)
    current: list[ScenarioStreamer] = []

    async def on_control(record: Record) -> None:
        if current:
            await current[-1].on_control(record)

    if options.loop == "closed":
        frame.consume(VEHICLE_CONTROL)(on_control)

    async def loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            run_id = uuid.uuid4().hex[:12]
            streamer = ScenarioStreamer(frame, options, run_id=run_id)
            current[:] = [streamer]
            result = await streamer.run(stop=stop)
            log.info("simulator: %s run %s done: %s", result["scenario"], run_id,
                     result["vehicles"])

    frame.background(loop)
    return frame
