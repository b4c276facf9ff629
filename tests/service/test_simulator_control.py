"""The simulator service's one way to obey `vehicle.control`, with TestKafkaBroker."""

from __future__ import annotations

import asyncio

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import LogicSubscriber

from services.catalog import build
from services.control.settings import ControlSettings
from services.control.signing import Signer
from services.messages import (
    VEHICLE_CONTROL,
    ControlClock,
    ControlMode,
    FrameMeta,
    FrameRef,
    VehicleControl,
)
from services.runtime.delivery import Record
from services.runtime.service import BuiltService
from services.settings import Settings
from services.simulator.service import Simulator
from services.simulator.settings import SimulatorSettings

CLOSED = SimulatorSettings(scenario="ccrs_30kph", loop="closed", clock="lockstep",
                           duration_s=0.5, lockstep_timeout_s=1.0, engage_within_s=0.0)


def subscribed_topics(simulator: Simulator) -> list[str]:
    return [t for sub in simulator.runtime.broker.subscribers
            if isinstance(sub, LogicSubscriber) for t in sub.topic_names_for_subscribe]


def answering(built: BuiltService[Simulator], signer: Signer | None, run_id: str | None = None,
              ) -> None:
    """Answer every camera frame with a braking command for it, signed by ``signer`` (None:
    unsigned), for ``run_id`` (None: the frame's own run)."""
    seq = 0

    @built.runtime.broker.subscriber("camera.frames")
    async def answer(msg: KafkaMessage) -> None:
        nonlocal seq
        meta = FrameMeta.from_headers(Record.from_raw(msg.raw_message).headers)
        seq += 1
        command = VehicleControl(
            vehicle_id=meta.vehicle_id, stamp_ns=meta.capture_ns, seq=seq,
            valid_until_ns=meta.capture_ns + 200_000_000, steering_tire_angle_rad=0.0,
            target_speed_mps=0.0, accel_mps2=-6.0, mode=ControlMode.NORMAL,
            source=FrameRef(seq=meta.seq, stamp_ns=meta.capture_ns),
            run_id=run_id or meta.run_id, clock=ControlClock.SOURCE)
        signed = signer.sign(command) if signer is not None else None
        await built.runtime.broker.publish(
            signed.value if signed else command.encode(), VEHICLE_CONTROL.name,
            key=meta.vehicle_id.encode(), headers=signed.headers if signed else None)


async def test_a_closed_loop_simulator_applies_the_controls_answering_its_frames() -> None:
    control = ControlSettings.ephemeral()
    built = build("simulator", Settings(), "localhost:9092", options=CLOSED, repeat=False,
                  run_id="ctl", control=control)
    simulator: Simulator = built.service
    assert subscribed_topics(simulator) == [VEHICLE_CONTROL.name]  # one subscription
    answering(built, control.signer())
    async with TestKafkaBroker(built.runtime.broker):
        result = await simulator.drive(CLOSED, run_id="ctl-00")
    vehicle = result["vehicles"][0]
    assert vehicle["frames"] == 10
    assert vehicle["control_timeouts"] == 0  # every frame's control came through the one path
    assert vehicle["controls_applied"] == 10
    assert vehicle["control_modes"] == {"normal": 10}
    assert vehicle["commands_rejected"] == {}


async def test_unsigned_or_wrongly_signed_controls_are_refused_and_counted() -> None:
    control = ControlSettings.ephemeral()
    other = ControlSettings.ephemeral()  # a gate whose key this vehicle does not hold
    for signer, reason in ((None, "missing_header"), (other.signer(), "unknown_key")):
        built = build("simulator", Settings(), "localhost:9092", options=CLOSED, repeat=False,
                      run_id="ctl", control=control)
        answering(built, signer)
        async with TestKafkaBroker(built.runtime.broker):
            result = await built.service.drive(
                CLOSED.model_copy(update={"lockstep_timeout_s": 0.05}), run_id="ctl-00")
        vehicle = result["vehicles"][0]
        assert vehicle["controls_applied"] == 0
        assert vehicle["commands_rejected"] == {reason: 10}
        assert vehicle["control_timeouts"] == vehicle["frames"] == 10


async def test_controls_of_another_run_are_not_obeyed() -> None:
    control = ControlSettings.ephemeral()
    built = build("simulator", Settings(), "localhost:9092", options=CLOSED, repeat=False,
                  run_id="ctl", control=control)
    answering(built, control.signer(), run_id="someone-else")
    async with TestKafkaBroker(built.runtime.broker):
        result = await built.service.drive(CLOSED.model_copy(update={"lockstep_timeout_s": 0.05}),
                                           run_id="ctl-00")
    vehicle = result["vehicles"][0]
    assert vehicle["controls_applied"] == 0
    assert vehicle["control_timeouts"] == vehicle["frames"] == 10


async def test_an_open_loop_simulator_reads_no_controls_and_refuses_a_closed_loop_drive() -> None:
    built = build("simulator", Settings(), "localhost:9092",
                  options=SimulatorSettings(loop="open"), repeat=False)
    assert subscribed_topics(built.service) == []
    with pytest.raises(ValueError, match="built open loop"):
        await built.service.drive(CLOSED, run_id="x")


async def test_served_it_streams_its_scenario_on_its_own_until_stopped() -> None:
    built = build("simulator", Settings(), "localhost:9092", options=SimulatorSettings(
        scenario="ccrs_30kph", loop="open", clock="realtime", speed=50, ground_truth=False))
    runs: set[str] = set()
    two_runs = asyncio.Event()

    @built.runtime.broker.subscriber("camera.frames")
    async def on_frame(msg: KafkaMessage) -> None:
        runs.add(FrameMeta.from_headers(Record.from_raw(msg.raw_message).headers).run_id)
        if len(runs) >= 2:
            two_runs.set()

    async with TestKafkaBroker(built.runtime.broker):
        await built.runtime.start()
        try:
            await asyncio.wait_for(two_runs.wait(), timeout=60)
        finally:
            await built.runtime.stop()
    assert len(runs) >= 2  # the scenario again, under a new run id
