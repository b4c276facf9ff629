"""The broker killed for 30 s and restarted: every service stays up, its health goes
not-ready and back, and processing resumes with no loss of committed work.

Perception, planning, the monitor and the audit each run as `roadstream serve SERVICE`, as a
deployment runs them, against an embedded broker on a fixed port. The embedded broker keeps
its log in memory, so the restarted one is empty: "committed work" is what was served and
committed before the outage; after it, the topics are created again (as `roadstream broker`
does at start) and new frames must be served again, every one of them.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from services.broker.clients import ensure_topics, producer_kwargs
from services.broker.embedded import EmbeddedBroker, free_port
from services.control.settings import ControlSettings
from services.messages import ALL_TOPICS
from services.messages.examples import vehicle_state
from services.settings import Settings
from tests.fault_helpers import (
    ServeProcess,
    SteadyStream,
    committed_offsets,
    frame_item,
    healthz,
    held_partitions,
    poll,
    read_topic,
    served_frames,
    vehicles_per_partition,
    wait_until,
)
from tests.kafka_helpers import produce

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(900)]

OUTAGE_S = 30.0  # how long the broker stays dead (the fault injected, not an assertion)
GRACE_S = 30.0  # SIGTERM to exit, as deploy/k8s gives each service
PARTITIONS = Settings().topic_partitions
FRAMES_BEFORE = 4  # per camera, served and committed before the outage
FRAMES_AFTER = 4  # per camera, served after it, at least
RATE_HZ = 2.0  # per camera after the outage
SERVICES = ("perception", "planning", "monitor", "audit")


def environment(service: str, tmp_path: Path, control: ControlSettings) -> dict[str, str]:
    """What each service is configured with besides the broker: every frame served (none too
    old, none skipped), the run's signing key, the audit trail in the test's folder."""
    return {"perception": {"ROADSTREAM_PERCEPTION_LATENCY_BUDGET_MS": "600000",
                           "ROADSTREAM_PERCEPTION_NEWEST_PER_CAMERA": "false"},
            "planning": control.environment(),
            "monitor": {},
            "audit": {"ROADSTREAM_AUDIT_URL": str(tmp_path / "audit.db")}}[service]


async def partition_count(bootstrap: str, topic: str) -> int:
    """How many partitions the broker says `topic` has now."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        return len(await producer.partitions_for(topic))
    finally:
        await producer.stop()


async def health_codes(services: dict[str, ServeProcess]) -> dict[str, int | None]:
    """Each service's `/healthz` HTTP status (None: no answer)."""
    answers = await asyncio.gather(*(asyncio.to_thread(healthz, s.port)
                                     for s in services.values()))
    return {name: code for name, (code, _) in zip(services, answers, strict=True)}


async def test_broker_outage_services_stay_up_health_follows_and_work_resumes(
        unique: str, tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port())
    settings = Settings()
    group = f"out{unique}"
    control = ControlSettings.ephemeral()
    services = {name: ServeProcess(name, broker.bootstrap, group, tmp_path / f"{name}.log",
                                   env=environment(name, tmp_path, control))
                for name in SERVICES}
    vehicles = [vs[0] for vs in vehicles_per_partition(
        f"ego{unique}", PARTITIONS, per_partition=1).values()]
    outage: list[dict[str, int | None]] = []
    exits: dict[str, int] = {}

    def running() -> None:
        for service in services.values():
            service.check_running()

    async def commanded() -> bool:
        controls = await read_topic(broker.bootstrap, "vehicle.control",
                                    lambda r: unique.encode() in r.value)
        return bool(controls)

    broker.start()
    try:
        await broker.wait_ready(settings)
        await ensure_topics(settings, broker.bootstrap, ALL_TOPICS)
        await asyncio.gather(*(s.start() for s in services.values()))

        async def perception_holds_all() -> bool:
            return held_partitions(services["perception"].port) == set(range(PARTITIONS))

        await wait_until(perception_holds_all, 120, "perception holding every partition")
        assert set((await health_codes(services)).values()) == {200}

        # Committed work: frames served, and their offsets committed, before the outage.
        await produce(broker.bootstrap, "camera.frames", [
            frame_item(v, seq, unique) for seq in range(FRAMES_BEFORE) for v in vehicles])
        before = {(v, s) for v in vehicles for s in range(FRAMES_BEFORE)}

        async def committed_all() -> bool:
            served = await served_frames(broker.bootstrap, unique)
            offsets = await committed_offsets(broker.bootstrap,
                                              f"{group}.perception.camera.frames",
                                              "camera.frames")
            return set(served) == before and sum(offsets.values()) == len(before)

        await wait_until(committed_all, 180, "the frames before the outage served and committed")
        await wait_until(commanded, 60, "planning commanding the run's vehicles")
        # A vehicle the gate is commanding when the broker dies: its control loop publishes
        # at the control rate, and every publish of the outage fails.
        state = vehicle_state().model_copy(update={
            "vehicle_id": vehicles[0], "run_id": unique, "stamp_ns": time.time_ns()})
        await produce(broker.bootstrap, "vehicle.state",
                      [(vehicles[0].encode(), state.encode(), [])])

        broker.kill()
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            running()
            outage.append(await health_codes(services))
            await asyncio.sleep(1.0)
        running()
        broker.start()
        await broker.wait_ready(settings, timeout_s=60)
        await ensure_topics(settings, broker.bootstrap, ALL_TOPICS)

        async def healthy() -> bool:
            running()
            return set((await health_codes(services)).values()) == {200}

        await wait_until(healthy, 180, "every service healthy again after the restart")

        # Processing resumes: a steady stream on the restarted broker is served again.
        stream = SteadyStream(broker.bootstrap, vehicles, run_id=unique, rate_hz=RATE_HZ)
        producing = asyncio.create_task(stream.run())
        try:
            async def resumed() -> bool:
                served = await served_frames(broker.bootstrap, unique)
                return all(sum(1 for v, _ in served if v == vehicle) >= FRAMES_AFTER
                           for vehicle in vehicles)

            if not await poll(resumed, 180, interval_s=1.0):
                served = await served_frames(broker.bootstrap, unique)
                held = {name: await asyncio.to_thread(held_partitions, s.port)
                        for name, s in services.items() if name == "perception"}
                per_vehicle = {v: sum(1 for w, _ in served if w == v) for v in vehicles}
                raise AssertionError(
                    f"frames served after the restart: not within 180 s; served per vehicle "
                    f"{per_vehicle} of {len(stream.produced)} sent; camera.frames has "
                    f"{await partition_count(broker.bootstrap, 'camera.frames')} partitions, "
                    f"perception holds {held}")
        finally:
            stream.stop.set()
            await producing
        produced = set(stream.produced)

        async def caught_up() -> bool:
            return produced <= set(await served_frames(broker.bootstrap, unique))

        await wait_until(caught_up, 120, "every frame sent after the restart served",
                         interval_s=1.0)
        await wait_until(commanded, 60, "planning commanding again after the restart")
        served_after = await served_frames(broker.bootstrap, unique)
        running()
        for service in services.values():
            service.signal(signal.SIGTERM)
        for name, service in services.items():
            exits[name] = await asyncio.wait_for(service.wait(), GRACE_S)
    finally:
        for service in services.values():
            await service.close()
        broker.stop()

    print(f"\nbroker outage: /healthz codes during it, once a second: {outage}")
    print(f"broker outage: {len(before)} frames served and committed before it; "
          f"{len(produced)} sent after the restart, {len(served_after)} served")
    # Every service stayed up through the outage and stopped gracefully after it.
    assert exits == dict.fromkeys(SERVICES, 0)
    # Health went not-ready during the outage, and was still not ready at its end.
    always_ok = [name for name in SERVICES if all(codes[name] == 200 for codes in outage)]
    assert not always_ok, f"/healthz said ok throughout the outage: {always_ok}"
    assert 200 not in outage[-1].values(), f"/healthz at the end of the outage: {outage[-1]}"
    # After the restart every frame is served, once.
    assert set(served_after) == produced
    assert max(served_after.values()) == 1, "a frame was served twice"


async def test_planning_outlives_an_outage_longer_than_its_publish_timeout(
        unique: str, tmp_path: Path) -> None:
    """The gate commanding a vehicle when the broker dies, for longer than a publish may wait:
    the publishes of the outage fail, and the service must go on (not stop, not exit)."""
    outage_s = producer_kwargs(Settings())["request_timeout_ms"] / 1000 + 15
    broker = EmbeddedBroker(port=free_port())
    settings = Settings()
    planning = ServeProcess("planning", broker.bootstrap, f"gate{unique}",
                            tmp_path / "planning.log",
                            env=ControlSettings.ephemeral().environment())

    async def state() -> None:
        message = vehicle_state().model_copy(update={"run_id": unique, "stamp_ns": time.time_ns()})
        await produce(broker.bootstrap, "vehicle.state", [(b"ego", message.encode(), [])])

    async def commanded() -> bool:
        await state()  # keeps the vehicle fresh
        controls = await read_topic(broker.bootstrap, "vehicle.control",
                                    lambda r: unique.encode() in r.value)
        return bool(controls)

    broker.start()
    try:
        await broker.wait_ready(settings)
        await ensure_topics(settings, broker.bootstrap, ALL_TOPICS)
        await planning.start()
        await wait_until(commanded, 60, "planning commanding the vehicle")
        broker.kill()
        deadline = time.monotonic() + outage_s
        while time.monotonic() < deadline:
            planning.check_running()
            await asyncio.sleep(1.0)
        broker.start()
        await broker.wait_ready(settings, timeout_s=60)
        await ensure_topics(settings, broker.bootstrap, ALL_TOPICS)
        resumed = await poll(commanded, 120)
        planning.check_running()
        assert resumed, ("planning not commanding after the restart; its /healthz: "
                         f"{await asyncio.to_thread(healthz, planning.port)}")
        planning.signal(signal.SIGTERM)
        assert await asyncio.wait_for(planning.wait(), GRACE_S) == 0
    finally:
        await planning.close()
        broker.stop()
