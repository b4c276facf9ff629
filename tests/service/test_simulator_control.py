"""The simulator service's one way to obey `vehicle.control`, with TestKafkaBroker."""

from __future__ import annotations

import asyncio

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import LogicSubscriber

from services.catalog import build
from services.messages import VEHICLE_CONTROL, ControlMode, FrameMeta, FrameRef, VehicleControl
from services.runtime.delivery import Record
from services.settings import Settings
from services.simulator.service import Simulator
from services.simulator.settings import SimulatorSettings

CLOSED = SimulatorSettings(scenario="ccrs_30kph", loop="closed", clock="lockstep",
                           duration_s=0.5, lockstep_timeout_s=1.0, engage_within_s=0.0)


def subscribed_topics(simulator: Simulator) -> list[str]:
    return [t for sub in simulator.runtime.broker.subscribers
            if isinstance(sub, LogicSubscriber) for t in sub.topic_names_for_subscribe]


async def test_a_closed_loop_simulator_applies_the_controls_answering_its_frames() -> None:
    built = build("simulator", Settings(), "localhost:9092", options=CLOSED, repeat=False,
                  run_id="ctl")
    simulator: Simulator = built.service
    assert subscribed_topics(simulator) == [VEHICLE_CONTROL.name]  # one subscription
    seq = 0

    @built.runtime.broker.subscriber("camera.frames")
    @built.runtime.broker.publisher(VEHICLE_CONTROL.name)
    async def answer(msg: KafkaMessage) -> bytes:
        nonlocal seq
        meta = FrameMeta.from_headers(Record.from_raw(msg.raw_message).headers)
        seq += 1
        return VehicleControl(
            vehicle_id=meta.vehicle_id, stamp_ns=meta.capture_ns, seq=seq,
            valid_until_ns=meta.capture_ns + 10**9, steering_tire_angle_rad=0.0,
            target_speed_mps=0.0, accel_mps2=-6.0, mode=ControlMode.NORMAL,
            source=FrameRef(seq=meta.seq, stamp_ns=meta.capture_ns), run_id=meta.run_id,
        ).encode()

    async with TestKafkaBroker(built.runtime.broker):
        result = await simulator.drive(CLOSED, run_id="ctl-00")
    vehicle = result["vehicles"][0]
    assert vehicle["frames"] == 10
    assert vehicle["control_timeouts"] == 0  # every frame's control came through the one path
    assert vehicle["controls_applied"] == 10
    assert vehicle["control_modes"] == {"normal": 10}


async def test_controls_of_another_run_are_not_obeyed() -> None:
    built = build("simulator", Settings(), "localhost:9092", options=CLOSED, repeat=False,
                  run_id="ctl")

    @built.runtime.broker.subscriber("camera.frames")
    @built.runtime.broker.publisher(VEHICLE_CONTROL.name)
    async def answer(msg: KafkaMessage) -> bytes:
        meta = FrameMeta.from_headers(Record.from_raw(msg.raw_message).headers)
        return VehicleControl(
            vehicle_id=meta.vehicle_id, stamp_ns=meta.capture_ns, seq=meta.seq + 1,
            valid_until_ns=meta.capture_ns + 10**9, steering_tire_angle_rad=0.0,
            target_speed_mps=0.0, accel_mps2=-6.0, mode=ControlMode.NORMAL,
            source=FrameRef(seq=meta.seq, stamp_ns=meta.capture_ns), run_id="someone-else",
        ).encode()

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
