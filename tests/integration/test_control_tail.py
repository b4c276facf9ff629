"""`roadstream control tail --verify` prints each command with accepted or rejected and why."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from services.control.settings import ControlSettings
from services.messages import ControlClock, ControlMode, VehicleControl

pytestmark = pytest.mark.integration


async def test_tail_verify_names_each_verdict(kafka_bootstrap: str, unique: str,
                                              tmp_path: Path) -> None:
    control = ControlSettings.ephemeral()
    assert control.keys is not None
    keys = tmp_path / "control.keys.json"
    keys.write_text(control.keys.get_secret_value(), encoding="utf-8")
    signer = control.signer()
    vehicle = f"tail-{unique}"
    now = time.time_ns()
    records = []
    for seq in (1, 2, 3, 4):
        # 1-3 on the source clock (a lockstep run's: expiry is not judged on the wall clock),
        # 4 on the wall clock and long expired by the time tail reads it
        clock = ControlClock.SOURCE if seq < 4 else ControlClock.WALL
        stamp = now if seq < 4 else now - 10 * 10**9
        signed = signer.sign(VehicleControl(
            vehicle_id=vehicle, stamp_ns=stamp, seq=seq, valid_until_ns=stamp + 200_000_000,
            steering_tire_angle_rad=0.0, target_speed_mps=5.0, accel_mps2=-0.5,
            mode=ControlMode.NORMAL, run_id=unique, clock=clock))
        records.append((signed.value, list(signed.headers.items())))
    records.append((records[2][0].replace(b'"accel_mps2":-0.5', b'"accel_mps2":2.5'),
                    records[2][1]))  # tampered after signing
    records.append(records[0])  # replayed
    wide = signer.sign(VehicleControl(
        vehicle_id=vehicle, stamp_ns=now, seq=5, valid_until_ns=now + 60 * 10**9,
        steering_tire_angle_rad=0.0, target_speed_mps=5.0, accel_mps2=-0.5, run_id=unique,
        clock=ControlClock.SOURCE))
    records.append((wide.value, list(wide.headers.items())))  # valid for a minute: too long
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait("vehicle.control", value, key=vehicle.encode(),
                                         headers=[(k, v.encode()) for k, v in headers])
    finally:
        await producer.stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROADSTREAM_")}
    env["ROADSTREAM_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "control", "tail", "--verify", "--keys",
        str(keys), "--vehicle", vehicle, "--from-beginning", "--count", "7", "--timeout", "30",
        "--json", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [(x["seq"], x["verdict"], x.get("reason")) for x in lines] == [
        (1, "accepted", None), (2, "accepted", None), (3, "accepted", None),
        (4, "rejected", "expired"), (3, "rejected", "bad_mac"), (1, "rejected", "replayed"),
        (5, "rejected", "validity_window")]
