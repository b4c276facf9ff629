"""The closed loop verifies: forged, replayed, expired and wrong-key commands injected into a live
lockstep run are every one refused by the simulated vehicle, counted by reason and audited, and
the ego drives on its genuine commands."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.control.settings import ControlSettings
from services.control.signing import Signer, verify
from services.mainjob import RunOptions, run_main_job
from services.messages import ControlClock, VehicleControl
from services.settings import Settings
from tests.integration.test_tracing import own_bootstrap  # noqa: F401 - the module's own broker

pytestmark = pytest.mark.integration


async def inject_attacks(bootstrap: str, run_id: str, control: ControlSettings,
                         injected: asyncio.Event) -> None:
    """Wait for the run's first genuine command, then publish four bad ones for the same vehicle
    and run: a forged value, the genuine record again, a correctly signed but expired command
    and one signed with a key the vehicle does not hold."""
    consumer = AIOKafkaConsumer("vehicle.control", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await consumer.start()
    await producer.start()
    try:
        genuine = None
        while genuine is None:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if json.loads(r.value)["run_id"] == run_id:
                        genuine = r
                        break
        headers = list(genuine.headers)
        command = VehicleControl.decode(genuine.value)
        signature = verify(control.keyring(), headers, genuine.value)
        epoch = signature.freshness[0]
        key = command.vehicle_id.encode()
        forged = json.dumps({**json.loads(genuine.value), "accel_mps2": 3.0,
                             "target_speed_mps": 40.0}).encode()  # "full throttle"
        old = command.model_copy(update={"stamp_ns": command.stamp_ns - 10_000_000_000,
                                         "valid_until_ns": command.stamp_ns - 9_800_000_000,
                                         "clock": ControlClock.SOURCE})
        # Signed with the run's own key and a later epoch: it passes every check but expiry.
        expired = Signer(control.keyring(), control.signing_key_id(), epoch=epoch + 1).sign(old)
        intruder = Signer({"intruder": secrets.token_bytes(32)}, "intruder").sign(command)
        bad = [(forged, headers), (genuine.value, headers),
               (expired.value, list(expired.headers.items())),
               (intruder.value, list(intruder.headers.items()))]
        for value, hdrs in bad:
            await producer.send_and_wait("vehicle.control", value, key=key, headers=[
                (k, v if isinstance(v, bytes) else v.encode()) for k, v in hdrs])
        injected.set()
    finally:
        await producer.stop()
        await consumer.stop()


async def test_injected_bad_commands_are_all_refused_and_audited(
        own_bootstrap: str, unique: str, tmp_path: Path) -> None:  # noqa: F811
    control = ControlSettings.ephemeral()
    injected = asyncio.Event()
    attack = asyncio.create_task(inject_attacks(own_bootstrap, f"{unique}-00", control, injected))
    summary = await run_main_job(Settings(), own_bootstrap, RunOptions(
        scenarios=("ccrs_30kph",), clock="lockstep", run_id=unique, out_dir=tmp_path,
        record=False, duration_s=3.0, control=control))
    await asyncio.wait_for(attack, timeout=10)
    assert injected.is_set()
    (row,) = summary.scenarios
    assert row.commands_rejected == {"bad_mac": 1, "expired": 1, "replayed": 1,
                                     "unknown_key": 1}
    assert row.commands_expired == 0
    assert not row.collision
    assert row.control_timeouts == 0
    assert set(row.control_modes) == {"normal"}
    assert row.max_decel_mps2 > 0  # it braked for the stopped car: the forged throttle was not obeyed
    with sqlite3.connect(tmp_path / "audit.db") as db:
        reasons = sorted(json.loads(details)["reason"] for (details,) in db.execute(
            "select json_extract(event_json, '$.details') from audit_events "
            "where type = 'command_rejected'"))
    assert reasons == ["bad_mac", "expired", "replayed", "unknown_key"]
