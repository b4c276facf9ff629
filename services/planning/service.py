"""`roadstream serve planning`: plan on every perception result, gate, sign and publish controls.

A thin loop over :class:`planning.stack.PlanningStack` (one per vehicle and run): decode a
`vehicle.state` or `perception.objects` message, step the stack, then sign and publish what
it gives, in order — plans on `planning.trajectory`, gated commands on `vehicle.control`
and their events on `safety.events`.

- wall clock (default): the stack is also stepped at the control rate (20 Hz), and between
  plans its controller tracks the held plan;
- source clock (lockstep runs): one command per primary-camera frame, timed by the input
  stamps, so a replay gives the same commands.

A vehicle's run ends when the simulator announces it (`run_finished` on `safety.events`,
verified when the service holds the events keyring, as `roadstream run`'s services do): its
stack is dropped at once and later inputs of that run are ignored. Without this the wall-clock
loop kept stepping a vehicle whose inputs had simply ended, and its gate walked from a
comfortable to an emergency stop: a critical `minimal_risk_stop` after every real-time
scenario, for a vehicle no longer there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from prometheus_client import Counter

from common.device import resolve_device
from planning.config import PlannerConfig
from planning.planner import Planner
from planning.runtime import tune_allocator
from planning.stack import CommandOut, PlanningStack, PlanOut, StepResult
from services.control.settings import ControlSettings, load_control_settings
from services.control.signing import CommandRejected
from services.messages import (
    PERCEPTION_OBJECTS,
    PLANNING_TRAJECTORY,
    SAFETY_EVENTS,
    VEHICLE_CONTROL,
    VEHICLE_STATE,
    ControlClock,
    ControlMode,
    EventRefs,
    PerceptionObjects,
    PlanningTrajectory,
    SafetyEvent,
    Severity,
    VehicleControl,
    VehicleState,
)
from services.messages.base import MessageError
from services.planning import convert
from services.planning.convert import Source
from services.planning.settings import PlanningSettings
from services.runtime.delivery import Record
from services.runtime.event_signing import EventVerifier
from services.runtime.events import RUN_FINISHED, safety_event
from services.runtime.service import BuiltService, ServiceRuntime
from services.runtime.tracing import traceparent_of
from services.settings import Settings

log = logging.getLogger(__name__)
VEHICLE_EXPIRY_NS = 10_000_000_000  # stop commanding a vehicle silent this long [ns]
FINISHED_REMEMBERED = 4096  # ended (run, vehicle) pairs remembered, oldest forgotten first


@dataclass
class Vehicle:
    """One vehicle of one run: its planning stack and its command counter."""

    vehicle_id: str
    run_id: str
    stack: PlanningStack[Source]
    seq: int = 0


class PlanningService:
    """The planning stacks wired to the topics: decode → step → sign → publish."""

    def __init__(self, runtime: ServiceRuntime, settings: Settings, options: PlanningSettings,
                 control: ControlSettings) -> None:
        self.runtime = runtime
        self.options = options
        self.control = control
        self.signer = control.signer()  # a new epoch for every start of the gate
        self.warn_dev_key = control.uses_dev_key  # said once, with the first command
        self.planner = Planner(PlannerConfig(blind_lane_changes=options.blind_lane_changes),
                               device=str(resolve_device(settings.device)))
        self.config = convert.stack_config(options, control)
        self.vehicles: dict[str, Vehicle] = {}
        self.clamps = Counter("roadstream_gate_clamps_total", "Commands clamped by the gate",
                              ["field"], registry=runtime.registry)
        self.commands = Counter("roadstream_control_commands_total", "Commands published",
                                ["mode"], registry=runtime.registry)
        self.stale_skipped = Counter("roadstream_stale_perception_skipped_total",
                                     "Perception results too old to plan on",
                                     registry=runtime.registry)
        self.event_verifier = EventVerifier.of(settings)
        self.finished: OrderedDict[tuple[str, str], None] = OrderedDict()  # (run, vehicle)
        self.run_ends = Counter("roadstream_planning_run_ends_total",
                                "run_finished events: a vehicle's run ended (accepted), or "
                                "refused (unsigned, forged or replayed)", ["outcome"],
                                registry=runtime.registry)

    def vehicle(self, vehicle_id: str, run_id: str) -> Vehicle | None:
        """The vehicle of a run (created on its first message); None once its run ended.

        Keyed by run as well: a new run (a replay, the next scenario) starts with a fresh
        stack and command counter instead of inheriting another run's state.
        """
        if (run_id, vehicle_id) in self.finished:
            return None  # a straggler of an ended run: planning it would revive a ghost
        key = f"{run_id}/{vehicle_id}"
        if key not in self.vehicles:
            self.vehicles[key] = Vehicle(vehicle_id, run_id, PlanningStack(self.planner, self.config))
        return self.vehicles[key]

    def end_run(self, run_id: str, vehicle_id: str) -> None:
        """Drop a vehicle whose run ended, and ignore that run's later inputs."""
        self.finished[(run_id, vehicle_id)] = None
        while len(self.finished) > FINISHED_REMEMBERED:
            self.finished.popitem(last=False)
        self.vehicles.pop(f"{run_id}/{vehicle_id}", None)

    async def on_event(self, record: Record) -> None:
        """A `safety.events` message: only the simulator's `run_finished` matters here.

        A malformed event is left to the monitor and the audit, which report it; one that
        fails the signature check (when this service holds the events keyring) is refused and
        counted.
        """
        try:
            event = SafetyEvent.decode(record.value, source=f"{record.topic}@{record.offset}")
        except MessageError:
            return
        if event.type != RUN_FINISHED or event.source != "simulator" or not event.run_id:
            return
        if self.event_verifier is not None:
            try:
                self.event_verifier.check(record.headers, record.value, source=event.source,
                                          event_id=str(event.event_id))
            except CommandRejected as exc:
                self.run_ends.labels("refused").inc()
                log.warning("planning: run_finished for %s/%s refused: %s", event.run_id,
                            event.vehicle_id, exc)
                return
        self.run_ends.labels("accepted").inc()
        self.end_run(event.run_id, event.vehicle_id)

    async def on_state(self, record: Record) -> None:
        """A `vehicle.state` message."""
        state = VehicleState.decode(record.value, source=f"{record.topic}@{record.offset}")
        v = self.vehicle(state.vehicle_id, state.run_id)
        if v is not None:
            await self.publish(v, v.stack.step(time.time_ns(), convert.vehicle_input(state)))

    async def on_objects(self, record: Record) -> None:
        """A `perception.objects` message. Its consume span (in its frame's trace) is the parent
        of the publishes of the plan it triggers, whenever those happen."""
        result = PerceptionObjects.decode(record.value, source=f"{record.topic}@{record.offset}")
        trace = traceparent_of() or record.header("traceparent") or ""
        v = self.vehicle(result.vehicle_id, result.run_id)
        if v is not None:
            await self.publish(v, v.stack.step(time.time_ns(), convert.camera_objects(result, trace)))

    async def publish(self, v: Vehicle, step: StepResult[Source]) -> None:
        """Publish a step's plans and commands, in order."""
        if step.stale_skipped:
            self.stale_skipped.inc()
        for out in step.outputs:
            if isinstance(out, PlanOut):
                await self.publish_plan(v, out)
            else:
                await self.publish_control(v, out)

    async def publish_plan(self, v: Vehicle, out: PlanOut[Source]) -> None:
        """A plan on `planning.trajectory`."""
        result, trace = out.frame.tag
        await self.runtime.publish(PLANNING_TRAJECTORY, PlanningTrajectory(
            vehicle_id=v.vehicle_id, stamp_ns=out.stamp_ns,
            points=convert.trajectory_points(out.plan.trajectory),
            behaviour=str(out.plan.behaviour),
            costs={k: round(float(c), 4) for k, c in out.plan.cost_terms.items()},
            perception_stamp_ns=result.stamp_ns, state_stamp_ns=out.state_stamp_ns,
            run_id=v.run_id), key=v.vehicle_id, headers={"traceparent": trace} if trace else None)

    async def publish_control(self, v: Vehicle, out: CommandOut[Source]) -> None:
        """Sign and publish a gated command; its events go to safety.events."""
        v.seq += 1
        cmd = out.gate.command
        source, trace = out.frame.tag if out.frame is not None else (None, "")
        control = VehicleControl(
            vehicle_id=v.vehicle_id, stamp_ns=out.stamp_ns, seq=v.seq,
            valid_until_ns=out.stamp_ns + round(self.control.valid_for_ms * 1e6),
            steering_tire_angle_rad=cmd.steering_tire_angle_rad,
            steering_tire_rotation_rate_radps=cmd.steering_tire_rotation_rate_radps,
            target_speed_mps=max(0.0, cmd.target_speed_mps), accel_mps2=cmd.accel_mps2,
            jerk_mps3=cmd.jerk_mps3, mode=ControlMode(str(out.gate.mode)),
            source=source.source if source is not None else None, run_id=v.run_id,
            clock=ControlClock(self.options.clock))
        signed = self.signer.sign(control)
        headers = dict(signed.headers)
        if trace:
            headers["traceparent"] = trace
        headers["content-type"] = "application/json"
        await self.runtime.publish(VEHICLE_CONTROL, signed.value, key=v.vehicle_id,
                                  headers=headers)
        self.commands.labels(control.mode.value).inc()
        for name in out.gate.clamped:
            self.clamps.labels(name).inc()
        if self.warn_dev_key:
            self.warn_dev_key = False
            await self.runtime.emit(safety_event(
                source="gate", type_="development_key", severity=Severity.WARNING,
                vehicle_id=v.vehicle_id, details={"key_id": self.signer.key_id,
                                                  "why": "ROADSTREAM_CONTROL_DEV_KEY is set: "
                                                  "anyone can forge these commands"},
                run_id=v.run_id))
        for event in out.gate.events:
            await self.runtime.emit(safety_event(
                source="gate", type_=event.type, severity=Severity(event.severity),
                vehicle_id=v.vehicle_id, details=dict(event.details),
                refs=EventRefs(command_seq=v.seq, frame_seq=control.source.seq
                               if control.source else None), run_id=v.run_id))

    async def control_loop(self, stop: asyncio.Event) -> None:
        """Wall clock: step every vehicle's stack at the control rate."""
        period_s = self.config.control_period_s
        next_t = time.monotonic()
        while not stop.is_set():
            now = time.time_ns()
            for key, v in list(self.vehicles.items()):
                if now - v.stack.last_input_ns > VEHICLE_EXPIRY_NS:
                    # silent for long (or history read back): the gate has long since
                    # commanded its stop; forget it rather than command a ghost forever
                    del self.vehicles[key]
                    continue
                try:
                    await self.publish(v, v.stack.step(now))
                except Exception as exc:
                    # A broker outage fails the publish (the runtime has already retried it);
                    # the next tick commands again, from the gate's state, when it is back.
                    log.warning("planning: control tick for %s not published: %s: %s",
                                v.vehicle_id, type(exc).__name__, exc)
            next_t += period_s
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))


def build(settings: Settings, bootstrap: str, *, options: PlanningSettings | None = None,
          control: ControlSettings | None = None,
          **runtime_kwargs: Any) -> BuiltService[PlanningService]:
    """The planning service (planner, controller, gate, signer).

    Ready facts: ``device``; counts: ``commands`` ({mode: n} published).
    """
    options = options or PlanningSettings()
    tune_allocator()  # without it every plan page-faults its scratch tensors again
    # One thread unless told: a plan's tensors are small, and on a shared CPU more threads made
    # one plan take 0.45 s (median; 1.2 s at worst) against 10 ms on one, and ticks late.
    torch.set_num_threads(settings.torch_threads or 1)
    runtime = ServiceRuntime("planning", settings, bootstrap, **runtime_kwargs)
    service = PlanningService(runtime, settings, options, control or load_control_settings())
    # Only the newest state and objects matter (older ones are stale to the gate), so no
    # commit round trip per record: at 20 + 20 records/s those bound the service's intake.
    runtime.consume(VEHICLE_STATE, at_least_once=False)(service.on_state)
    runtime.consume(PERCEPTION_OBJECTS, at_least_once=False)(service.on_objects)
    # Every instance hears every run's end (a group of its own), from now on.
    runtime.consume(SAFETY_EVENTS, at_least_once=False, auto_offset_reset="latest",
                    group_id=runtime.instance_group(SAFETY_EVENTS))(service.on_event)
    if options.clock == "wall":
        runtime.background(service.control_loop)

    def counts() -> dict[str, Any]:
        return {"commands": {sample.labels["mode"]: int(sample.value)
                             for metric in service.commands.collect()
                             for sample in metric.samples if sample.name.endswith("_total")}}

    return BuiltService(runtime, service, ready=lambda: {"device": str(service.planner.device)},
                        counts=counts)
