"""A run's end, announced by the simulator, retires its vehicle in planning: no false stop.

In real time the gate used to keep stepping a vehicle whose inputs had simply ended (its
scenario finished), walk from a comfortable to an emergency stop, and raise a critical
`minimal_risk_stop` for a vehicle no longer there, once per scenario. The simulator's
`run_finished` (signed, on `safety.events`) is the end; a forged one is refused and changes
nothing. Real broker, the real planning service, wall clock (its control loop runs).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from services.control.client import CommandVerifier
from services.control.settings import ControlSettings
from services.messages import SafetyEvent, Severity, VehicleControl
from services.planning.service import build
from services.runtime.event_signing import event_signer, with_run_events_key
from services.runtime.events import RUN_FINISHED, safety_event
from services.settings import Settings
from tests.integration.test_planning_gate import PERIOD_S, objects, state
from tests.kafka_helpers import collect

pytestmark = pytest.mark.integration
END_WAIT_S = 20.0  # at most, for planning to take in the end events (a loaded machine)


def ends(registry: object, outcome: str) -> float:
    value = registry.get_sample_value(  # type: ignore[attr-defined]
        "roadstream_planning_run_ends_total", {"outcome": outcome})
    return value or 0.0


async def test_a_finished_run_is_no_longer_commanded_and_a_forged_end_changes_nothing(
        own_kafka_bootstrap: str, unique: str) -> None:
    bootstrap = own_kafka_bootstrap
    settings = with_run_events_key(Settings(group_prefix=f"p{unique}", torch_threads=1))
    control = ControlSettings.ephemeral()
    built = build(settings, bootstrap, control=control, start_from="latest")
    runtime = built.runtime
    await runtime.start()
    assert await runtime.wait_assigned()
    ended, forged = f"ended-{unique}", f"forged-{unique}"
    signer = event_signer(settings)
    assert signer is not None
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    seq = 0

    async def drive(*vehicles: str) -> None:
        nonlocal seq
        now = time.time_ns()
        for v in vehicles:
            await producer.send("vehicle.state", state(v, now).encode(), key=v.encode())
            await producer.send("perception.objects", objects(v, seq, now, 120.0).encode(),
                                key=f"{v}/front".encode())
        seq += 1
        await asyncio.sleep(PERIOD_S)

    try:
        for _ in range(20):  # 1 s at 20 Hz: both vehicles driven normally
            await drive(ended, forged)
        end = safety_event(source="simulator", type_=RUN_FINISHED, severity=Severity.INFO,
                           vehicle_id=ended, run_id=ended, details={"reason": "completed"})
        body = end.encode()
        signed = signer.sign_value("simulator", body)
        await producer.send("safety.events", body, key=ended.encode(),
                            headers=[(k, v.encode()) for k, v in signed.headers.items()])
        fake = safety_event(source="simulator", type_=RUN_FINISHED, severity=Severity.INFO,
                            vehicle_id=forged, run_id=forged, details={"reason": "completed"})
        await producer.send("safety.events", fake.encode(), key=forged.encode())  # unsigned
        # Inputs go on until planning has taken both in: no stop may start before the end.
        deadline = time.monotonic() + END_WAIT_S
        while ends(runtime.registry, "accepted") + ends(runtime.registry, "refused") < 2:
            assert time.monotonic() < deadline, "planning did not take in the end events"
            await drive(ended, forged)
        taken_ns = time.time_ns()
        for _ in range(10):  # stragglers of the ended run: they must not revive it
            await drive(ended, forged)
        await asyncio.sleep(1.0)  # both silent: the forged vehicle's gate must stop it
        await producer.flush()
    finally:
        await producer.stop()
        await runtime.stop()

    assert (ends(runtime.registry, "accepted"), ends(runtime.registry, "refused")) == (1.0, 1.0)
    commands: dict[str, list[VehicleControl]] = {}
    for v in (ended, forged):
        records = await collect(bootstrap, "vehicle.control", lambda r, v=v: r.key == v.encode(),
                                10_000, timeout_s=3)
        verifier = CommandVerifier(control.keyring(), v)
        commands[v] = [verifier.check(r.headers, r.value,
                                      now_ns=VehicleControl.decode(r.value).stamp_ns)
                       for r in records]
    events = [SafetyEvent.decode(r.value) for r in await collect(
        bootstrap, "safety.events", lambda r: r.key in (ended.encode(), forged.encode()),
        10_000, timeout_s=3)]
    # The ended vehicle was commanded normally once its gate engaged (it starts stopped until
    # its inputs are fresh), then not at all: no command after planning took the end in, and
    # no stop or stale event from its gate after that. (Before the end, on a loaded machine
    # this test's own inputs can come late, and the gate then rightly stops for a while: the
    # subject is what follows the end, the walk to an emergency stop for a car gone.)
    assert len([c for c in commands[ended] if c.mode == "normal"]) >= 5
    assert max(c.stamp_ns for c in commands[ended]) <= taken_ns
    assert not [e for e in events if e.vehicle_id == ended and e.source == "gate"
                and e.type in ("minimal_risk_stop", "stale_input") and e.stamp_ns > taken_ns]
    # The forged end changed nothing: the gate went on commanding, and stopped that vehicle
    # when its inputs went silent, with its event.
    after = [c for c in commands[forged] if c.stamp_ns > taken_ns]
    assert len(after) >= 10
    assert after[-1].mode != "normal"
    assert [e for e in events if e.vehicle_id == forged and e.source == "gate"
            and e.type == "minimal_risk_stop"]
