"""`roadstream serve planning`: plan on every perception result, gate, sign and publish controls.

Per vehicle it keeps the latest vehicle state and the latest objects of each camera. A result
of the primary camera triggers a plan (published on `planning.trajectory`) and a controller
command, which goes through the command gate (limits, stale inputs → minimal-risk stop) and
is published signed on `vehicle.control`:

- wall clock (default): the gate ticks at the control rate (20 Hz); between plans the
  controller tracks the last plan while it is fresh;
- source clock (lockstep runs): one command per primary-camera frame, timed by the input
  stamps, so a replay gives the same commands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import torch
from prometheus_client import Counter

from planning.controller import TrajectoryController
from planning.gate import Gate, GateConfig, GateOutput
from planning.ground_motion import GroundMotion
from planning.planner import Planner
from planning.runtime import tune_allocator
from planning.types import PlanResult
from services.control.settings import ControlSettings
from services.control.signing import sign
from services.runtime.delivery import Record
from services.runtime.events import safety_event
from services.runtime.service import ServiceRuntime
from services.runtime.tracing import traceparent_of
from services.messages import (
    PERCEPTION_OBJECTS,
    PLANNING_TRAJECTORY,
    VEHICLE_CONTROL,
    VEHICLE_STATE,
    ControlMode,
    EventRefs,
    FrameRef,
    PerceptionObjects,
    PlanningTrajectory,
    Severity,
    VehicleControl,
    VehicleState,
)
from services.planning import convert
from services.planning.settings import PlanningSettings
from services.settings import Settings

log = logging.getLogger(__name__)
MAX_STATES = 64  # recent states kept per vehicle to match frames by stamp
VEHICLE_EXPIRY_NS = 10_000_000_000  # stop commanding a vehicle silent this long [ns]


@dataclass
class VehicleContext:
    """Everything the service keeps for one vehicle."""

    vehicle_id: str
    gate: Gate
    controller: TrajectoryController
    run_id: str = ""
    seq: int = 0
    latest_state: VehicleState | None = None
    states: OrderedDict[int, VehicleState] = field(default_factory=OrderedDict)
    objects: dict[str, deque[PerceptionObjects]] = field(default_factory=dict)  # newest last
    pending: tuple[PerceptionObjects, str] | None = None  # a frame waiting for its state
    plan: PlanResult | None = None
    plan_stamp_ns: int = 0
    source: FrameRef | None = None
    traceparent: str = ""
    last_input_ns: int = 0  # newest input stamp
    motion: GroundMotion = field(default_factory=GroundMotion)  # objects' world-frame filters


class PlanningService:
    """Planner, controller and gate wired to the topics."""

    def __init__(self, frame: ServiceRuntime, settings: Settings, options: PlanningSettings,
                 control: ControlSettings) -> None:
        self.frame = frame
        self.options = options
        self.control = control
        self.key = control.hmac_key.get_secret_value().encode()
        device = "cuda" if settings.device == "cuda" or (
            settings.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.planner = Planner(device=device)
        self.period_s = 1.0 / control.rate_hz
        k = options.timeout_periods
        perception_period_s = (1.0 / options.perception_rate_hz if options.perception_rate_hz
                               else PERCEPTION_OBJECTS.period_s or 0.05)
        perception_ns = round(k * perception_period_s * 1e9)
        self.gate_config = GateConfig(
            perception_timeout_ns=perception_ns,
            vehicle_state_timeout_ns=round(k * (VEHICLE_STATE.period_s or 0.05) * 1e9),
            command_timeout_ns=perception_ns)
        self.vehicles: dict[str, VehicleContext] = {}
        self.clamps = Counter("roadstream_gate_clamps_total", "Commands clamped by the gate",
                              ["field"], registry=frame.registry)
        self.commands = Counter("roadstream_control_commands_total", "Commands published",
                                ["mode"], registry=frame.registry)
        self.stale_skipped = Counter("roadstream_stale_perception_skipped_total",
                                     "Perception results too old to plan on",
                                     registry=frame.registry)

    def vehicle(self, vehicle_id: str, run_id: str) -> VehicleContext:
        """The context of a vehicle in a run (created on its first message).

        Keyed by run as well: a new run (a replay, the next scenario) starts with a fresh
        gate, controller and command counter instead of inheriting another run's state.
        """
        key = f"{run_id}/{vehicle_id}"
        ctx = self.vehicles.get(key)
        if ctx is None:
            ctx = VehicleContext(vehicle_id, Gate(self.gate_config), TrajectoryController(),
                                 run_id=run_id)
            self.vehicles[key] = ctx
        return ctx

    def now_ns(self, stamp_ns: int) -> int:
        """The gate's clock: the wall clock, or the inputs' stamps in source mode."""
        return stamp_ns if self.options.clock == "source" else time.time_ns()

    async def on_state(self, record: Record) -> None:
        """Keep the vehicle's state; in source mode it may complete a waiting frame."""
        state = VehicleState.decode(record.value, source=f"{record.topic}@{record.offset}")
        ctx = self.vehicle(state.vehicle_id, state.run_id)
        ctx.latest_state = state
        ctx.last_input_ns = max(ctx.last_input_ns, state.stamp_ns)
        ctx.states[state.stamp_ns] = state
        while len(ctx.states) > MAX_STATES:
            ctx.states.popitem(last=False)
        ctx.gate.on_vehicle_state(state.stamp_ns, state.speed_mps)
        if ctx.pending is not None and ctx.pending[0].source.stamp_ns in ctx.states:
            (result, trace), ctx.pending = ctx.pending, None
            await self.plan(ctx, result, ctx.states[result.source.stamp_ns], trace)

    async def on_objects(self, record: Record) -> None:
        """Keep a camera's objects; the primary camera's trigger a plan."""
        result = PerceptionObjects.decode(record.value, source=f"{record.topic}@{record.offset}")
        ctx = self.vehicle(result.vehicle_id, result.run_id)
        ctx.objects.setdefault(result.camera_id, deque(maxlen=4)).append(result)
        ctx.last_input_ns = max(ctx.last_input_ns, result.source.stamp_ns)
        if result.camera_id != self.options.primary_camera:
            return
        # This record's consume span (in its frame's trace) is the parent of the plan's publishes,
        # set explicitly: a plan may be published from another record's handler (its state
        # came later), and its commands from the control timer, outside any handler.
        trace = traceparent_of() or record.header("traceparent") or ""
        if self.options.clock == "source":
            if ctx.pending is not None and ctx.latest_state is not None:
                # its state never came: plan it with the latest rather than never
                (older, older_trace), ctx.pending = ctx.pending, None
                await self.plan(ctx, older, ctx.latest_state, older_trace)
            state = ctx.states.get(result.source.stamp_ns)
            if state is None:
                ctx.pending = (result, trace)
                return
        else:
            state = ctx.latest_state
            if state is None:
                return
            if time.time_ns() - result.source.stamp_ns > self.gate_config.perception_timeout_ns:
                # Already stale (a backlog, or history read back): never plan on it; the gate
                # sees the stale input and stops the vehicle.
                self.stale_skipped.inc()
                return
        await self.plan(ctx, result, state, trace)

    def camera_results(self, ctx: VehicleContext,
                       primary: PerceptionObjects) -> list[PerceptionObjects]:
        """The primary result and each other camera's newest one to plan with.

        In source mode another camera's result counts only when its frame is older than the
        primary's: whether a frame of the same instant was served before or after the
        primary's is a race between two partitions, and a replay must not depend on it.
        """
        chosen = [primary]
        for camera, results in ctx.objects.items():
            if camera == primary.camera_id:
                continue
            usable = [r for r in results if self.options.clock != "source"
                      or r.source.stamp_ns < primary.source.stamp_ns]
            if usable:
                chosen.append(usable[-1])
        return chosen

    async def plan(self, ctx: VehicleContext, result: PerceptionObjects,
                   state: VehicleState, traceparent: str) -> None:
        """Plan, control, publish the trajectory; in source mode also tick and publish."""
        ctx.traceparent = traceparent  # the controls of this plan continue the frame's trace
        ego = convert.ego_state(state)
        obstacles = convert.obstacles(self.camera_results(ctx, result), state, ctx.motion,
                                      ctx.states)
        ctx.motion.prune(result.source.stamp_ns)
        source_stamp = result.source.stamp_ns
        ctx.gate.on_perception(source_stamp, *(convert.closest_in_path(obstacles) or (None,)))
        plan = self.planner.plan(ego, obstacles, previous_lane=ctx.plan.target_lane_index
                                 if ctx.plan is not None else None)
        command = ctx.controller.step(plan.trajectory, speed_mps=state.speed_mps,
                                      dt_s=self.period_s)
        stamp = self.now_ns(source_stamp)
        ctx.plan, ctx.plan_stamp_ns, ctx.source = plan, stamp, result.source
        ctx.gate.on_command(command, stamp)
        headers = {"traceparent": ctx.traceparent} if ctx.traceparent else None
        await self.frame.publish(PLANNING_TRAJECTORY, PlanningTrajectory(
            vehicle_id=ctx.vehicle_id, stamp_ns=stamp,
            points=convert.trajectory_points(plan.trajectory), behaviour=str(plan.behaviour),
            costs={k: round(float(v), 4) for k, v in plan.cost_terms.items()},
            perception_stamp_ns=result.stamp_ns, state_stamp_ns=state.stamp_ns,
            run_id=ctx.run_id), key=ctx.vehicle_id, headers=headers)
        if self.options.clock == "source":
            await self.publish_control(ctx, ctx.gate.tick(stamp), stamp)

    async def tick(self, ctx: VehicleContext) -> None:
        """A wall-clock control tick: track the held plan, gate it, publish."""
        now = time.time_ns()
        if ctx.plan is not None and ctx.latest_state is not None:
            x, y, yaw = convert.pose_on_plan(ctx.plan.trajectory, (now - ctx.plan_stamp_ns) / 1e9)
            command = ctx.controller.step(ctx.plan.trajectory, speed_mps=ctx.latest_state.speed_mps,
                                          dt_s=self.period_s, x_m=x, y_m=y, yaw_rad=yaw)
            ctx.gate.on_command(command, ctx.plan_stamp_ns)
        await self.publish_control(ctx, ctx.gate.tick(now), now)

    async def publish_control(self, ctx: VehicleContext, out: GateOutput, stamp_ns: int) -> None:
        """Sign and publish the gate's command; its events go to safety.events."""
        ctx.seq += 1
        cmd = out.command
        control = VehicleControl(
            vehicle_id=ctx.vehicle_id, stamp_ns=stamp_ns, seq=ctx.seq,
            valid_until_ns=stamp_ns + round(self.control.valid_for_ms * 1e6),
            steering_tire_angle_rad=cmd.steering_tire_angle_rad,
            steering_tire_rotation_rate_radps=cmd.steering_tire_rotation_rate_radps,
            target_speed_mps=max(0.0, cmd.target_speed_mps), accel_mps2=cmd.accel_mps2,
            jerk_mps3=cmd.jerk_mps3, mode=ControlMode(str(out.mode)), source=ctx.source,
            run_id=ctx.run_id)
        value = control.encode()
        headers = sign(self.key, self.control.key_id, ctx.seq, value)
        if ctx.traceparent:
            headers["traceparent"] = ctx.traceparent
        headers["content-type"] = "application/json"
        await self.frame.publish(VEHICLE_CONTROL, value, key=ctx.vehicle_id, headers=headers)
        self.commands.labels(control.mode.value).inc()
        for name in out.clamped:
            self.clamps.labels(name).inc()
        for event in out.events:
            await self.frame.emit(safety_event(
                source="gate", type_=event.type, severity=Severity(event.severity),
                vehicle_id=ctx.vehicle_id, details=dict(event.details),
                refs=EventRefs(command_seq=ctx.seq,
                               frame_seq=ctx.source.seq if ctx.source else None),
                run_id=ctx.run_id))

    async def control_loop(self, stop: asyncio.Event) -> None:
        """Wall clock: tick every vehicle's gate at the control rate."""
        next_t = time.monotonic()
        while not stop.is_set():
            now = time.time_ns()
            for key, ctx in list(self.vehicles.items()):
                if now - ctx.last_input_ns > VEHICLE_EXPIRY_NS:
                    # silent for long (or history read back): the gate has long since
                    # commanded its stop; forget it rather than command a ghost forever
                    del self.vehicles[key]
                    continue
                await self.tick(ctx)
            next_t += self.period_s
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))


def build(settings: Settings, bootstrap: str, *, options: PlanningSettings | None = None,
          control: ControlSettings | None = None, **frame_kwargs: Any) -> ServiceRuntime:
    """The planning service (planner, controller, gate, signer)."""
    options = options or PlanningSettings()
    tune_allocator()  # without it every plan page-faults its scratch tensors again
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    frame = ServiceRuntime("planning", settings, bootstrap, **frame_kwargs)
    service = PlanningService(frame, settings, options, control or ControlSettings())
    # Only the newest state and objects matter (older ones are stale to the gate), so no
    # commit round trip per record: at 20 + 20 records/s those bound the service's intake.
    frame.consume(VEHICLE_STATE, at_least_once=False)(service.on_state)
    frame.consume(PERCEPTION_OBJECTS, at_least_once=False)(service.on_objects)
    if options.clock == "wall":
        frame.background(service.control_loop)
    frame.planning = service  # type: ignore[attr-defined]
    return frame
