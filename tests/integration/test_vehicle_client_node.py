"""The Node.js vehicle client (kafkajs, no roadstream code) against the embedded broker.

Commands are signed by the Python gate signer and published to `vehicle.control`; genuine ones
interleaved with tampered, replayed, wrong-vehicle, non-canonical, expired, out-of-bounds and
unknown-key ones, across a gate restart and a key rotation. The client must accept exactly
the genuine ones and name the right reason for each other.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest

from services.control.settings import ControlSettings, keyring_json
from services.control.signing import SignedCommand, Signer, signature_headers
from services.messages import VehicleControl
from tests.kafka_helpers import produce
from tests.node_client import CLIENT, ensure_kafkajs, node

pytestmark = pytest.mark.integration

VALID_FOR_NS = 4_000_000_000  # generous: this checks verification, not the machine's latency
MAX_WINDOW_MS = 5000
READY_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 90

Item = tuple[bytes, dict[str, str], str]  # value, headers, expected verdict


def command(vehicle: str, seq: int, **changes: Any) -> VehicleControl:
    now = time.time_ns()
    fields: dict[str, Any] = {"vehicle_id": vehicle, "stamp_ns": now, "seq": seq,
                              "valid_until_ns": now + VALID_FOR_NS,
                              "steering_tire_angle_rad": 0.01, "target_speed_mps": 12.0,
                              "accel_mps2": 0.3, "jerk_mps3": 0.5, "run_id": "node-client"}
    return VehicleControl(**{**fields, **changes})


def genuine(signed: SignedCommand) -> Item:
    return signed.value, signed.headers, "accepted"


def plan(vehicle: str, control: ControlSettings, rotated: dict[str, bytes]) -> list[Item]:
    """What to publish, in order, with what the vehicle must make of each."""
    gate = control.signer()
    items = [genuine(gate.sign(command(vehicle, 1)))]
    second = gate.sign(command(vehicle, 2))
    items.append(genuine(second))
    tampered = gate.sign(command(vehicle, 3))
    items.append((tampered.value.replace(b'"accel_mps2":0.3', b'"accel_mps2":2.9'),
                  tampered.headers, "bad_mac"))
    items.append((second.value, second.headers, "replayed"))
    neighbour = gate.sign(command(f"{vehicle}-neighbour", 4))
    items.append((neighbour.value, neighbour.headers, "wrong_vehicle"))
    padded = gate.sign(command(vehicle, 5))
    items.append((padded.value, {**padded.headers, "sig-counter": f"0{padded.counter}"},
                  "malformed_header"))
    intruder = command(vehicle, 6).encode()
    items.append((intruder, signature_headers(os.urandom(32), "intruder", gate.epoch, 99,
                                              intruder), "unknown_key"))
    past = time.time_ns() - 10_000_000_000
    expired = gate.sign(command(vehicle, 7, stamp_ns=past, valid_until_ns=past + 200_000_000))
    items.append((expired.value, expired.headers, "expired"))
    wild = gate.sign(command(vehicle, 8, accel_mps2=20.0))
    items.append((wild.value, wild.headers, "out_of_bounds"))
    unsigned = gate.sign(command(vehicle, 9))
    items.append((unsigned.value, {k: v for k, v in unsigned.headers.items() if k != "sig-epoch"},
                  "missing_header"))
    items.append(genuine(gate.sign(command(vehicle, 10))))
    restarted = control.signer()  # the gate restarts: a larger epoch, counters from 1
    assert restarted.epoch > gate.epoch
    items.append(genuine(restarted.sign(command(vehicle, 1))))
    old_epoch = gate.sign(command(vehicle, 11))  # counter 11 of the earlier epoch
    items.append((old_epoch.value, old_epoch.headers, "replayed"))
    items.append(genuine(restarted.sign(command(vehicle, 2))))
    rotated_gate = Signer(rotated, "next")  # restarted again, signing with the new key
    items.append(genuine(rotated_gate.sign(command(vehicle, 1))))
    items.append(genuine(rotated_gate.sign(command(vehicle, 2))))
    return items


async def read_line(stream: asyncio.StreamReader, deadline: float) -> dict[str, Any] | None:
    raw = await asyncio.wait_for(stream.readline(), max(0.1, deadline - time.monotonic()))
    return json.loads(raw) if raw else None


async def test_node_client_accepts_every_genuine_command_and_names_each_rejection(
        kafka_bootstrap: str, unique: str) -> None:
    ensure_kafkajs()
    vehicle = f"node-{unique}"
    control = ControlSettings.ephemeral(max_window_ms=MAX_WINDOW_MS)
    rotated = {**control.keyring(), "next": os.urandom(32)}
    env = {**os.environ, "ROADSTREAM_CONTROL_KEYS": keyring_json(rotated)}
    count = len(plan(vehicle, control, rotated))  # signed again once the client listens
    proc = await asyncio.create_subprocess_exec(
        node(), str(CLIENT), "--brokers", kafka_bootstrap, "--vehicle", vehicle,
        "--group", f"vehicle-{unique}", "--from-beginning", "--max-messages", str(count),
        "--timeout-s", str(RUN_TIMEOUT_S), "--max-window-ms", str(MAX_WINDOW_MS),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    lines: list[dict[str, Any]] = []
    items: list[Item] = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not any(line.get("event") == "ready" for line in lines):
            line = await read_line(proc.stdout, deadline)
            assert line is not None, "the client exited before joining its group"
            lines.append(line)
        # signed now, not before the group join: those would be stale by now
        items = plan(vehicle, control, rotated)
        await produce(kafka_bootstrap, "vehicle.control",
                      [(vehicle.encode(), value, [(k, v.encode()) for k, v in headers.items()])
                       for value, headers, _ in items])
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while (line := await read_line(proc.stdout, deadline)) is not None:
            lines.append(line)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await proc.stderr.read()).decode(errors="replace")
    verdicts = [line for line in lines if "result" in line]
    got = [v["reason"] if v["result"] == "rejected" else "accepted" for v in verdicts]
    assert got == [expected for _, _, expected in items], (verdicts, stderr)
    accepted = [v for v in verdicts if v["result"] == "accepted"]
    signed = [h for _, h, expected in items if expected == "accepted"]
    assert [(v["key_id"], v["epoch"], v["counter"]) for v in accepted] == [
        (h["sig-key-id"], h["sig-epoch"], h["sig-counter"]) for h in signed]
    done = lines[-1]
    assert done["event"] == "done"
    assert "error" not in done, (done, stderr)
    assert done["accepted"] == len(signed)
    assert code == 0, stderr
