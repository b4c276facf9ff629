"""The simulator service: streams scenarios and, in closed loop, obeys `vehicle.control`.

`roadstream serve simulator` streams the configured scenario (``ROADSTREAM_SIM_*``) again and
again, each time under a new run id. `roadstream run` and `roadstream sim` build it without
that loop and drive the scenarios they choose (`Simulator.drive`). Either way the service
consumes `vehicle.control` one way: one subscription, made when it is built, that hands each
record to the scenario being streamed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from services.control.client import CommandVerifier
from services.control.settings import ControlSettings, load_control_settings
from services.messages import VEHICLE_CONTROL
from services.runtime.delivery import Record
from services.runtime.service import BuiltService, ServiceRuntime
from services.settings import Settings
from services.simulator.runner import Progress, ScenarioStreamer
from services.simulator.settings import SimulatorSettings

log = logging.getLogger(__name__)


class Simulator:
    """Streams one scenario at a time on `runtime`; in closed loop, feeds it the controls.

    Only the newest control matters to a streamed vehicle, so the subscription commits in the
    background (no broker round trip per command). Controls of other runs or vehicles are
    dropped by the streamer (`ScenarioStreamer.on_control`).
    """

    def __init__(self, runtime: ServiceRuntime, *, closed_loop: bool,
                 control: ControlSettings | None = None) -> None:
        self.runtime = runtime
        self.closed_loop = closed_loop
        # Closed loop reads vehicle.control as a vehicle does: through the vehicle-side
        # verifier, one per vehicle for the service's life (its last accepted freshness holds
        # across scenarios). The keyring is loaded now so a missing key stops the start.
        self.keyring = (control or load_control_settings()).keyring() if closed_loop else {}
        self.policy = (control or load_control_settings()).policy() if closed_loop else None
        self.verifiers: dict[str, CommandVerifier] = {}
        self._current: ScenarioStreamer | None = None
        if closed_loop:
            runtime.consume(VEHICLE_CONTROL, at_least_once=False)(self.on_control)

    async def on_control(self, record: Record) -> None:
        """Hand a `vehicle.control` record to the scenario being streamed (if any)."""
        if self._current is not None:
            await self._current.on_control(record)

    def verifier(self, vehicle_id: str) -> CommandVerifier:
        """The vehicle-side verifier of ``vehicle_id`` (made on first use)."""
        if vehicle_id not in self.verifiers:
            self.verifiers[vehicle_id] = CommandVerifier(self.keyring, vehicle_id,
                                                         policy=self.policy)
        return self.verifiers[vehicle_id]

    async def drive(self, options: SimulatorSettings, *, run_id: str,
                    progress: Progress | None = None,
                    stop: asyncio.Event | None = None) -> dict[str, Any]:
        """Stream one scenario under `run_id` (the runtime must be started); its metrics.

        Closed loop needs the service built closed-loop (its control subscription).
        """
        if options.loop == "closed" and not self.closed_loop:
            raise ValueError(f"scenario {options.scenario or '(default)'} is closed loop, but "
                             "the simulator was built open loop: it does not read controls")
        streamer = ScenarioStreamer(self.runtime, options, run_id=run_id,
                                    verifier=self.verifier if self.closed_loop else None)
        self._current = streamer
        try:
            return await streamer.run(progress, stop)
        finally:
            self._current = None


def build(settings: Settings, bootstrap: str, *, options: SimulatorSettings | None = None,
          repeat: bool = True, control: ControlSettings | None = None,
          **runtime_kwargs: Any) -> BuiltService[Simulator]:
    """The simulator service, configured by `options` (default ``ROADSTREAM_SIM_*``).

    `repeat`: stream ``options``' scenario again and again while the service runs (`roadstream
    serve`); False: the caller drives scenarios itself with `Simulator.drive`. Closed loop
    (``options.loop``) subscribes to `vehicle.control` and verifies every command with
    ``control``'s keyring (default ``ROADSTREAM_CONTROL_*``). `runtime_kwargs` go to the runtime.
    """
    options = options or SimulatorSettings()
    runtime = ServiceRuntime("simulator", settings, bootstrap, **runtime_kwargs)
    simulator = Simulator(runtime, closed_loop=options.loop == "closed", control=control)

    async def loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            run_id = uuid.uuid4().hex[:12]
            result = await simulator.drive(options, run_id=run_id, stop=stop)
            log.info("simulator: %s run %s done: %s", result["scenario"], run_id,
                     result["vehicles"])

    if repeat:
        runtime.background(loop)
    return BuiltService(runtime, simulator)
