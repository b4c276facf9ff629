"""The planning stack's one entry point: inputs in, plans and gated commands out, on either clock."""

from __future__ import annotations

import pytest

from common.classes import ObjectClass
from planning.gate import GateMode
from planning.inputs import CameraObjects, SeenObject, VehicleInput
from planning.planner import Planner
from planning.stack import CommandOut, PlanningStack, PlanOut, StackConfig
from planning.types import EgoState

T0 = 1_000_000_000_000  # [ns]
STEP_NS = 50_000_000


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner(device="cpu")


def state(k: int, speed_mps: float = 10.0) -> VehicleInput:
    return VehicleInput(stamp_ns=T0 + k * STEP_NS, x_m=speed_mps * k * 0.05, y_m=0.0,
                        yaw_rad=0.0, ego=EgoState(speed_mps=speed_mps))


def frame(k: int, camera: str = "front", lead_x_m: float = 40.0) -> CameraObjects[str]:
    lead = SeenObject(track_id=1, object_class=ObjectClass.CAR, position_m=(lead_x_m, 0.0),
                      velocity_mps=(0.0, 0.0), accel_mps2=(0.0, 0.0))
    return CameraObjects(camera_id=camera, stamp_ns=T0 + k * STEP_NS, objects=(lead,),
                         tag=f"{camera}-{k}")


def kinds(outputs: list[PlanOut[str] | CommandOut[str]]) -> list[tuple[str, str | None]]:
    """(plan|command, tag of its frame) of each output, in order."""
    return [("plan" if isinstance(o, PlanOut) else "command",
             o.frame.tag if o.frame is not None else None) for o in outputs]


def test_source_clock_a_frame_with_its_state_gives_a_plan_then_its_command(
        planner: Planner) -> None:
    stack: PlanningStack[str] = PlanningStack(planner, StackConfig(clock="source"))
    assert stack.step(0, state(0)).outputs == []  # a state alone plans nothing
    out = stack.step(0, frame(0)).outputs
    assert kinds(out) == [("plan", "front-0"), ("command", "front-0")]
    plan, command = out
    assert isinstance(plan, PlanOut)
    assert isinstance(command, CommandOut)
    assert plan.stamp_ns == command.stamp_ns == T0  # on the frame's clock, not the wall's
    assert plan.state_stamp_ns == T0
    assert command.gate.mode == GateMode.NORMAL


def test_source_clock_a_frame_waits_for_the_state_of_its_stamp(planner: Planner) -> None:
    stack: PlanningStack[str] = PlanningStack(planner, StackConfig(clock="source"))
    stack.step(0, state(0))
    assert stack.step(0, frame(1)).outputs == []  # its state (stamp 1) has not come yet
    out = stack.step(0, state(1)).outputs
    assert kinds(out) == [("plan", "front-1"), ("command", "front-1")]
    assert isinstance(out[0], PlanOut)
    assert out[0].state_stamp_ns == T0 + STEP_NS


def test_source_clock_a_frame_whose_state_never_came_is_planned_with_the_latest(
        planner: Planner) -> None:
    stack: PlanningStack[str] = PlanningStack(planner, StackConfig(clock="source"))
    stack.step(0, state(0))
    stack.step(0, frame(1))  # waits for state 1, which never comes
    out = stack.step(0, frame(2)).outputs  # nor state 2: frame 1 goes with state 0
    assert kinds(out) == [("plan", "front-1"), ("command", "front-1")]
    assert isinstance(out[0], PlanOut)
    assert out[0].state_stamp_ns == T0
    assert stack.pending is not None
    assert stack.pending.tag == "front-2"


def test_other_cameras_are_fused_but_never_trigger_a_plan(planner: Planner) -> None:
    stack: PlanningStack[str] = PlanningStack(planner, StackConfig(clock="source"))
    stack.step(0, state(0))
    stack.step(0, state(1))
    assert stack.step(0, frame(0, camera="rear")).outputs == []
    same_instant = frame(1, camera="left")
    stack.step(0, same_instant)
    primary = frame(1)
    # On the source clock only frames older than the primary's count: which of two frames of
    # the same instant came first is a race between partitions.
    assert [r.tag for r in stack.camera_results(primary)] == ["front-1", "rear-0"]
    wall: PlanningStack[str] = PlanningStack(planner, StackConfig(clock="wall"))
    wall.step(T0, frame(0, camera="rear"))
    wall.step(T0, same_instant)
    assert [r.tag for r in wall.camera_results(primary)] == ["front-1", "rear-0", "left-1"]


def test_wall_clock_plans_without_commanding_and_ticks_command(planner: Planner) -> None:
    config = StackConfig(clock="wall")
    stack: PlanningStack[str] = PlanningStack(planner, config)
    stack.step(T0, state(0))
    now = T0 + 10_000_000
    out = stack.step(now, frame(0)).outputs
    assert kinds(out) == [("plan", "front-0")]
    assert out[0].stamp_ns == now  # the plan is stamped on the wall clock
    tick = stack.step(now + STEP_NS).outputs
    assert kinds(tick) == [("command", "front-0")]
    assert isinstance(tick[0], CommandOut)
    assert tick[0].stamp_ns == now + STEP_NS
    assert tick[0].gate.mode == GateMode.NORMAL


def test_wall_clock_never_plans_on_a_frame_older_than_the_perception_timeout(
        planner: Planner) -> None:
    config = StackConfig(clock="wall")
    stack: PlanningStack[str] = PlanningStack(planner, config)
    stack.step(T0, state(0))
    late = T0 + config.gate.perception_timeout_ns + 1
    result = stack.step(late, frame(0))
    assert result.outputs == []
    assert result.stale_skipped
    (command,) = stack.step(late).outputs
    assert isinstance(command, CommandOut)
    assert command.frame is None  # nothing planned yet
    assert command.gate.mode != GateMode.NORMAL  # stale perception: a minimal-risk stop


def test_the_same_inputs_give_the_same_commands(planner: Planner) -> None:
    def drive() -> list[tuple[float, float, str]]:
        stack: PlanningStack[str] = PlanningStack(planner, StackConfig(clock="source"))
        commands = []
        for k in range(10):
            stack.step(0, state(k))
            for o in stack.step(0, frame(k, lead_x_m=40.0 - 0.5 * k)).outputs:
                if isinstance(o, CommandOut):
                    commands.append((o.gate.command.accel_mps2,
                                     o.gate.command.steering_tire_angle_rad, str(o.gate.mode)))
        return commands

    first = drive()
    assert len(first) == 10
    assert drive() == first


def test_a_stamp_years_ahead_does_not_keep_a_vehicle_alive(planner: Planner) -> None:
    config = StackConfig(clock="wall")
    stack: PlanningStack[str] = PlanningStack(planner, config)
    now = T0
    future = VehicleInput(stamp_ns=now + 10 * 365 * 86_400 * 10**9, x_m=0.0, y_m=0.0,
                          yaw_rad=0.0, ego=EgoState(speed_mps=10.0))
    stack.step(now, future)
    # the newest input counts as at most the gate's tolerance ahead of the clock
    assert stack.last_input_ns == now + config.gate.future_tolerance_ns
