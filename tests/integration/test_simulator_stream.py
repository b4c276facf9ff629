"""The simulator streams through the embedded broker: frames, headers, lockstep, closed loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import cv2
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.catalog import build
from services.control.settings import ControlSettings
from services.messages import ControlClock, FrameMeta, FrameRef, GroundTruth, VehicleControl
from services.settings import Settings
from services.simulator.settings import SimulatorSettings
from tests.kafka_helpers import MAX_BYTES, collect, header

pytestmark = pytest.mark.integration
CCRS = "ccrs_30kph"
#: The keyring of this module's gate (the braking controller) and simulated vehicles.
CONTROL = ControlSettings.ephemeral()


async def stream(bootstrap: str, run_id: str, **options: Any) -> dict[str, Any]:
    """Stream one scenario on the simulator service, built as `roadstream sim` builds it."""
    sim_options = SimulatorSettings(**options)
    built = build("simulator", Settings(group_prefix=f"g{run_id}"), bootstrap,
                  options=sim_options, repeat=False, run_id=run_id, start_from="latest",
                  control=CONTROL)
    await built.runtime.start()
    try:
        assert await built.runtime.wait_assigned(60)
        return await built.service.drive(sim_options, run_id=run_id)
    finally:
        await built.runtime.stop()


async def test_every_frame_is_published_with_headers_and_decodes(kafka_bootstrap: str,
                                                                 unique: str) -> None:
    result = await stream(kafka_bootstrap, unique, scenario=CCRS, duration_s=1.0, speed=50,
                          vehicles=2)
    sent = sum(v["frames"] for v in result["vehicles"])
    assert sent > 0
    frames = await collect(kafka_bootstrap, "camera.frames",
                           lambda r: header(r, "run-id") == unique, sent)
    assert len(frames) == sent
    seen = set()
    for r in frames:
        meta = FrameMeta.from_headers(r.headers)
        assert r.key == meta.key
        assert meta.content_type == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(r.value, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None
        assert img.shape == (meta.height, meta.width, 3)
        seen.add((meta.vehicle_id, meta.camera_id, meta.seq))
    assert len(seen) == sent  # no frame twice, none missing
    assert {v for v, _, _ in seen} == {"ego-0", "ego-1"}
    states = await collect(kafka_bootstrap, "vehicle.state", lambda r: unique.encode() in r.value,
                           1)
    truths = await collect(kafka_bootstrap, "sim.ground_truth",
                           lambda r: unique.encode() in r.value, 1)
    assert states
    assert truths


async def braking_controller(bootstrap: str, run_id: str, stop: asyncio.Event,
                             brake_within_m: float = 25.0) -> None:
    """A trivial closed-loop controller: brake hard when ground truth shows something close."""
    consumer = AIOKafkaConsumer("sim.ground_truth", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=MAX_BYTES,
                                fetch_max_wait_ms=5)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await consumer.start()
    await producer.start()
    seq = 0
    signer = CONTROL.signer()  # signed as a gate signs: the simulated vehicle verifies
    try:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=50)).values():
                for r in records:
                    gt = GroundTruth.decode(r.value)
                    if gt.run_id != run_id:
                        continue
                    ahead = [o.position_m.x for o in gt.objects
                             if o.position_m.x > 0 and abs(o.position_m.y) < 2.0]
                    brake = bool(ahead) and min(ahead) < brake_within_m
                    seq += 1
                    cmd = VehicleControl(
                        vehicle_id=gt.vehicle_id, stamp_ns=gt.stamp_ns, seq=seq,
                        valid_until_ns=gt.stamp_ns + 500_000_000, steering_tire_angle_rad=0.0,
                        target_speed_mps=0.0 if brake else 30.0,
                        accel_mps2=-6.0 if brake else 0.0,
                        source=FrameRef(seq=gt.seq, stamp_ns=gt.stamp_ns), run_id=run_id,
                        clock=ControlClock.SOURCE)
                    signed = signer.sign(cmd)
                    await producer.send_and_wait(
                        "vehicle.control", signed.value, key=gt.vehicle_id.encode(),
                        headers=[(k, v.encode()) for k, v in signed.headers.items()])
    finally:
        await consumer.stop()
        await producer.stop()


async def closed_loop(bootstrap: str, run_id: str) -> dict[str, Any]:
    stop = asyncio.Event()
    task = asyncio.create_task(braking_controller(bootstrap, run_id, stop))
    try:
        return await stream(bootstrap, run_id, scenario=CCRS, loop="closed", clock="lockstep",
                            lockstep_timeout_s=5.0)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task


async def test_lockstep_runs_are_deterministic(kafka_bootstrap: str, unique: str) -> None:
    start = time.monotonic()
    a = await closed_loop(kafka_bootstrap, unique + "a")
    b = await closed_loop(kafka_bootstrap, unique + "b")
    assert time.monotonic() - start < 240
    va, vb = a["vehicles"][0], b["vehicles"][0]
    assert va["control_timeouts"] == 0
    assert vb["control_timeouts"] == 0
    assert va["frames"] == vb["frames"] > 0
    assert va["frame_hash"] == vb["frame_hash"]
    assert va["min_distance_m"] == vb["min_distance_m"]


async def test_closed_loop_braking_avoids_the_open_loop_collision(kafka_bootstrap: str,
                                                                  unique: str) -> None:
    open_loop = await stream(kafka_bootstrap, unique + "o", scenario=CCRS, speed=100)
    closed = await closed_loop(kafka_bootstrap, unique + "c")
    assert open_loop["vehicles"][0]["collision"] is True
    assert closed["vehicles"][0]["collision"] is False
    assert closed["vehicles"][0]["controls_applied"] > 0


async def test_a_camera_cap_halves_the_frames_not_the_state_or_the_world(kafka_bootstrap: str,
                                                                          unique: str) -> None:
    full = await closed_loop(kafka_bootstrap, unique + "f")
    stop = asyncio.Event()
    task = asyncio.create_task(braking_controller(kafka_bootstrap, unique + "h", stop))
    try:  # lockstep at 10 Hz frames on the scenario's 20 Hz world: no tick waits in vain
        half = await stream(kafka_bootstrap, unique + "h", scenario=CCRS, loop="closed",
                            clock="lockstep", lockstep_timeout_s=5.0, camera_rate_hz=10.0)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
    vf, vh = full["vehicles"][0], half["vehicles"][0]
    assert vh["control_timeouts"] == 0
    assert vh["collision"] is False
    assert vh["frames"] == (vf["frames"] + 1) // 2
    frames = await collect(kafka_bootstrap, "camera.frames",
                           lambda r: header(r, "run-id") == unique + "h", vh["frames"])
    assert sorted(FrameMeta.from_headers(r.headers).seq for r in frames) == list(
        range(0, 2 * vh["frames"], 2))  # every second tick of the 20 Hz world
    states = await collect(kafka_bootstrap, "vehicle.state",
                           lambda r: (unique + "h").encode() in r.value, 2 * vh["frames"] - 1)
    assert len(states) >= 2 * vh["frames"] - 1  # the state still goes out at every tick
