"""The planning stack of one vehicle: fusion, planner, controller and command gate, one entry point.

In the spirit of openpilot's planner processes: the service decodes a message, calls
:meth:`PlanningStack.step` with it and the clock, and publishes what comes back, in order.
Everything stateful lives here — the vehicle's recent states, each camera's latest objects,
the world-frame filters (:mod:`planning.fusion`), the held plan, the controller and the gate —
and the clock is injected, so the same inputs give the same outputs.

Two clocks (``StackConfig.clock``):

- ``"source"`` (lockstep runs and replays): a primary-camera frame is planned with the state
  of its own stamp (waiting for it when the state comes later), and each plan gives one gated
  command at the frame's stamp, so a replay gives the same commands;
- ``"wall"``: a primary-camera frame is planned with the latest state unless it is already
  older than the perception timeout; commands come from :meth:`PlanningStack.step` with no
  input, called at the control rate, which tracks the held plan from where the ego should be
  on it by now.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Generic, Literal

from planning.controller import TrajectoryController
from planning.fusion import closest_in_path, obstacles, pose_on_plan
from planning.gate import Gate, GateConfig, GateOutput
from planning.ground_motion import GroundMotion
from planning.inputs import CameraObjects, Tag, VehicleInput
from planning.planner import Planner
from planning.types import PlanResult

Clock = Literal["source", "wall"]


@dataclass(frozen=True, slots=True)
class StackConfig:
    """How a stack plans: its clock, its primary camera, the control period and the gate."""

    clock: Clock = "wall"
    primary_camera: str = "front"
    control_period_s: float = 0.05  # [s]
    gate: GateConfig = field(default_factory=GateConfig)
    max_states: int = 64  # recent states kept to match frames by stamp
    results_per_camera: int = 4  # recent results kept per camera


@dataclass(frozen=True, slots=True)
class PlanOut(Generic[Tag]):
    """A plan made at ``stamp_ns`` from ``frame`` (the primary camera's) and the state of
    ``state_stamp_ns``."""

    plan: PlanResult
    stamp_ns: int
    frame: CameraObjects[Tag]
    state_stamp_ns: int


@dataclass(frozen=True, slots=True)
class CommandOut(Generic[Tag]):
    """A gated command for ``stamp_ns``; ``frame``: the frame of the plan it follows (None
    before the first plan)."""

    gate: GateOutput
    stamp_ns: int
    frame: CameraObjects[Tag] | None


@dataclass(slots=True)
class StepResult(Generic[Tag]):
    """What one step gave, in the order to publish; ``stale_skipped``: a primary frame was
    too old to plan on (wall clock)."""

    outputs: list[PlanOut[Tag] | CommandOut[Tag]] = field(default_factory=list)
    stale_skipped: bool = False


class PlanningStack(Generic[Tag]):
    """One vehicle's planning, from its inputs to gated commands.

    ``planner`` may be shared between stacks (it keeps no per-vehicle state).
    """

    def __init__(self, planner: Planner, config: StackConfig | None = None) -> None:
        self.planner = planner
        self.config = config if config is not None else StackConfig()
        self.gate = Gate(self.config.gate)
        self.controller = TrajectoryController()
        self.motion = GroundMotion()  # objects' world-frame filters
        self.states: OrderedDict[int, VehicleInput] = OrderedDict()
        self.latest_state: VehicleInput | None = None
        self.objects: dict[str, deque[CameraObjects[Tag]]] = {}  # newest last
        self.pending: CameraObjects[Tag] | None = None  # a frame waiting for its state
        self.plan: PlanResult | None = None
        self.plan_stamp_ns = 0
        self.planned: CameraObjects[Tag] | None = None  # the frame of the held plan
        self.last_input_ns = 0  # newest input stamp

    def step(self, now_ns: int,
             inp: VehicleInput | CameraObjects[Tag] | None = None) -> StepResult[Tag]:
        """Feed one input (a state, a camera's objects) or, with none, tick the control loop
        (wall clock); ``now_ns`` is the wall clock, unused on the source clock."""
        result: StepResult[Tag] = StepResult()
        if isinstance(inp, VehicleInput):
            self._on_state(inp, now_ns, result)
        elif isinstance(inp, CameraObjects):
            self._on_objects(inp, now_ns, result)
        else:
            self._tick(now_ns, result)
        return result

    def _seen(self, stamp_ns: int, now_ns: int) -> None:
        """Move the newest input stamp on; on the wall clock never past what the gate accepts
        as present (a stamp years ahead must not keep a silent vehicle from expiring)."""
        if self.config.clock == "wall":
            stamp_ns = min(stamp_ns, now_ns + self.config.gate.future_tolerance_ns)
        self.last_input_ns = max(self.last_input_ns, stamp_ns)

    def _on_state(self, state: VehicleInput, now_ns: int, out: StepResult[Tag]) -> None:
        self.latest_state = state
        self._seen(state.stamp_ns, now_ns)
        self.states[state.stamp_ns] = state
        while len(self.states) > self.config.max_states:
            self.states.popitem(last=False)
        self.gate.on_vehicle_state(state.stamp_ns, state.speed_mps)
        if self.pending is not None and self.pending.stamp_ns in self.states:
            frame, self.pending = self.pending, None
            self._plan(frame, self.states[frame.stamp_ns], frame.stamp_ns, out)

    def _on_objects(self, frame: CameraObjects[Tag], now_ns: int, out: StepResult[Tag]) -> None:
        self.objects.setdefault(frame.camera_id, deque(maxlen=self.config.results_per_camera)
                                ).append(frame)
        self._seen(frame.stamp_ns, now_ns)
        if frame.camera_id != self.config.primary_camera:
            return
        if self.config.clock == "source":
            if self.pending is not None and self.latest_state is not None:
                # its state never came: plan it with the latest rather than never
                older, self.pending = self.pending, None
                self._plan(older, self.latest_state, older.stamp_ns, out)
            state = self.states.get(frame.stamp_ns)
            if state is None:
                self.pending = frame
                return
            self._plan(frame, state, frame.stamp_ns, out)
            return
        state = self.latest_state
        if state is None:
            return
        if now_ns - frame.stamp_ns > self.config.gate.perception_timeout_ns:
            # Already stale (a backlog, or history read back): never plan on it; the gate
            # sees the stale input and stops the vehicle.
            out.stale_skipped = True
            return
        self._plan(frame, state, now_ns, out)

    def camera_results(self, primary: CameraObjects[Tag]) -> list[CameraObjects[Tag]]:
        """The primary result and each other camera's newest one to plan with.

        On the source clock another camera's result counts only when its frame is older than
        the primary's: whether a frame of the same instant was served before or after the
        primary's is a race between two partitions, and a replay must not depend on it.
        """
        chosen = [primary]
        for camera, results in self.objects.items():
            if camera == primary.camera_id:
                continue
            usable = [r for r in results if self.config.clock != "source"
                      or r.stamp_ns < primary.stamp_ns]
            if usable:
                chosen.append(usable[-1])
        return chosen

    def _plan(self, frame: CameraObjects[Tag], state: VehicleInput, stamp_ns: int,
              out: StepResult[Tag]) -> None:
        """Fuse, gate the perception input, plan; on the source clock also control and tick."""
        found = obstacles(self.camera_results(frame), state, self.motion, self.states)
        self.motion.prune(frame.stamp_ns)
        self.gate.on_perception(frame.stamp_ns, *(closest_in_path(found) or (None,)))
        plan = self.planner.plan(state.ego, found, previous_lane=self.plan.target_lane_index
                                 if self.plan is not None else None)
        self.plan, self.plan_stamp_ns, self.planned = plan, stamp_ns, frame
        out.outputs.append(PlanOut(plan, stamp_ns, frame, state.stamp_ns))
        if self.config.clock == "source":
            command = self.controller.step(plan.trajectory, speed_mps=state.speed_mps,
                                           dt_s=self.config.control_period_s)
            self.gate.on_command(command, stamp_ns)
            out.outputs.append(CommandOut(self.gate.tick(stamp_ns), stamp_ns, frame))

    def _tick(self, now_ns: int, out: StepResult[Tag]) -> None:
        """A wall-clock control tick: track the held plan, gate it."""
        if self.plan is not None and self.latest_state is not None:
            x, y, yaw = pose_on_plan(self.plan.trajectory, (now_ns - self.plan_stamp_ns) / 1e9)
            command = self.controller.step(self.plan.trajectory,
                                           speed_mps=self.latest_state.speed_mps,
                                           dt_s=self.config.control_period_s,
                                           x_m=x, y_m=y, yaw_rad=yaw)
            self.gate.on_command(command, self.plan_stamp_ns)
        out.outputs.append(CommandOut(self.gate.tick(now_ns), now_ns, self.planned))
