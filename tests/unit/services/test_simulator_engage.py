"""Closed loop engages at the stack's first fresh `normal` command; the scenario's driver
holds the route until then, for at most `engage_within_s`."""

from __future__ import annotations

from services.messages import ControlMode, VehicleControl
from services.messages.examples import vehicle_control
from services.runtime.service import ServiceRuntime
from services.settings import Settings
from services.simulator import convert
from services.simulator.runner import ScenarioStreamer
from services.simulator.settings import SimulatorSettings

DT = 0.05
FAR_FUTURE_NS = 2**62


def streamer(**options: object) -> ScenarioStreamer:
    runtime = ServiceRuntime("simulator", Settings(), "localhost:9092", run_id="engage")
    opts = SimulatorSettings(scenario="free_cruise", loop="closed", clock="realtime", **options)
    return ScenarioStreamer(runtime, opts, run_id="engage")


def control(mode: ControlMode, accel: float, valid_until_ns: int = FAR_FUTURE_NS) -> VehicleControl:
    return vehicle_control().model_copy(update={"mode": mode, "accel_mps2": accel,
                                                "valid_until_ns": valid_until_ns})


def test_the_driver_holds_the_route_until_the_first_normal_command() -> None:
    s = streamer(engage_within_s=2.0)
    run = s.vehicles["ego"]
    speed0 = run.world.ego_state().speed_mps
    seen = []
    for tick in range(20):
        if tick >= 4:  # the gate's startup stop: no perception result yet
            run.latest = control(ControlMode.COMFORTABLE_STOP, -1.0)
        if tick >= 12:
            run.latest = control(ControlMode.NORMAL, 0.5)
        cmd = s._command(run, stamp_ns=0)
        seen.append(cmd)
        run.world.step(DT, cmd)
    assert all(c is None for c in seen[:12])  # the scenario's own driver
    assert seen[12] == convert.control_command(control(ControlMode.NORMAL, 0.5))
    assert run.engaged_at_s == round(12 * DT, 3)
    assert run.modes == {"driver": 12, "normal": 8}
    assert abs(run.world.ego_state().speed_mps - speed0) < 1.0  # no startup stop was obeyed
    assert run.summary()["engaged_at_s"] == run.engaged_at_s


def test_once_engaged_a_stop_is_obeyed() -> None:
    s = streamer()
    run = s.vehicles["ego"]
    run.latest = control(ControlMode.NORMAL, 0.0)
    assert s._command(run, 0) is not None
    run.latest = control(ControlMode.COMFORTABLE_STOP, -1.0)
    cmd = s._command(run, 0)
    assert cmd is not None
    assert cmd.accel_mps2 == -1.0
    run.latest = None
    assert s._command(run, 0) == convert.FALLBACK_COMMAND


def test_a_stack_that_never_gets_ready_gets_the_fallback_after_the_wait() -> None:
    s = streamer(engage_within_s=0.5)
    run = s.vehicles["ego"]
    cmds = []
    for _ in range(20):
        cmd = s._command(run, 0)
        cmds.append(cmd)
        run.world.step(DT, cmd)
    assert cmds[:10] == [None] * 10
    assert cmds[10:] == [convert.FALLBACK_COMMAND] * 10
    assert run.engaged_at_s == 0.5


def test_a_stale_normal_command_does_not_engage_and_zero_wait_engages_at_once() -> None:
    s = streamer()
    run = s.vehicles["ego"]
    run.latest = control(ControlMode.NORMAL, 0.0, valid_until_ns=1)
    assert s._command(run, stamp_ns=10) is None
    s0 = streamer(engage_within_s=0.0)
    assert s0._command(s0.vehicles["ego"], 0) == convert.FALLBACK_COMMAND
    assert s0.vehicles["ego"].engaged_at_s == 0.0
