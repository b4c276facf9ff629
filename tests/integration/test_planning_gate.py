"""The planning service and its gate against the embedded broker: signed commands, stale input."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from aiokafka import AIOKafkaProducer

from services.control.client import CommandVerifier
from services.control.settings import ControlSettings
from services.messages import (
    DetectedObject,
    FrameRef,
    LaneContext,
    PerceptionObjects,
    Pose2D,
    SafetyEvent,
    Vec2,
    Vec3,
    VehicleControl,
    VehicleState,
)
from services.planning.convert import stack_config
from services.planning.service import build
from services.planning.settings import PlanningSettings
from services.settings import Settings
from tests.kafka_helpers import collect

pytestmark = pytest.mark.integration


def state(vehicle: str, stamp_ns: int) -> VehicleState:
    return VehicleState(vehicle_id=vehicle, stamp_ns=stamp_ns, pose=Pose2D(x_m=0, y_m=0, yaw_rad=0),
                        speed_mps=10.0, run_id=vehicle,
                        lane=LaneContext(lane_index=0, n_lanes=2, lane_width_m=3.5,
                                         lateral_offset_m=0.0, heading_rel_rad=0.0,
                                         speed_limit_mps=13.9))


def objects(vehicle: str, seq: int, stamp_ns: int, car_at_m: float = 120.0) -> PerceptionObjects:
    car = DetectedObject(track_id=1, object_class="car", score=0.9, box=(300, 170, 340, 200),
                         position_m=Vec3(x=car_at_m, y=0.0, z=0.7), velocity_mps=Vec2(x=0, y=0))
    return PerceptionObjects(vehicle_id=vehicle, camera_id="front",
                             source=FrameRef(seq=seq, stamp_ns=stamp_ns), stamp_ns=stamp_ns,
                             model_version="test", objects=[car], run_id=vehicle)


async def test_stale_perception_gives_a_minimal_risk_stop_and_event_within_500ms(
        kafka_bootstrap: str, unique: str) -> None:
    vehicle = f"gate-{unique}"
    control = ControlSettings.ephemeral()
    # From the topics' ends: a backlog left by earlier tests would arrive stale and be skipped.
    runtime = build(Settings(group_prefix=f"p{unique}"), kafka_bootstrap, control=control,
                    start_from="latest").runtime
    await runtime.start()
    assert await runtime.wait_assigned()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        last_perception_ns = 0
        for i in range(70):  # 2.5 s of fresh inputs at 20 Hz, then 1 s without perception
            now = time.time_ns()
            await producer.send("vehicle.state", state(vehicle, now).encode(), key=vehicle.encode())
            if i < 50:
                await producer.send("perception.objects", objects(vehicle, i, now).encode(),
                                    key=f"{vehicle}/front".encode())
                last_perception_ns = now
            await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()
        await runtime.stop()

    records = await collect(kafka_bootstrap, "vehicle.control", lambda r: r.key == vehicle.encode(),
                            10_000, timeout_s=3)
    verifier = CommandVerifier(control.keyring(), vehicle)
    commands = [verifier.check(r.headers, r.value, now_ns=VehicleControl.decode(r.value).stamp_ns)
                for r in records]  # every command is signed, in counter order, fresh
    assert commands
    assert any(c.mode == "normal" for c in commands)
    stops = [c for c in commands if c.mode != "normal" and c.stamp_ns > last_perception_ns]
    assert stops, "the gate should command a minimal-risk stop"
    timeout_ns = stack_config(PlanningSettings(), control).gate.perception_timeout_ns
    went_stale = last_perception_ns + timeout_ns
    assert stops[0].stamp_ns - went_stale <= 500_000_000
    assert stops[0].mode == "comfortable_stop"  # the car is far: no emergency
    assert stops[0].target_speed_mps == 0.0
    # the gate's jerk limit ramps the braking in: it reaches the comfortable -1 m/s² soon after
    assert min(c.accel_mps2 for c in stops[:10]) <= -0.99
    assert all(b.accel_mps2 <= a.accel_mps2 + 1e-9 for a, b in itertools.pairwise(stops[:10]))
    events = await collect(kafka_bootstrap, "safety.events",
                           lambda r: vehicle.encode() in r.value, 10, timeout_s=2)
    decoded = [SafetyEvent.decode(r.value) for r in events]
    stop_events = [e for e in decoded if e.type == "minimal_risk_stop"]
    assert stop_events
    assert stop_events[0].stamp_ns - went_stale <= 500_000_000
    assert any(e.type == "stale_input" and e.details["input"] == "perception" for e in decoded)
