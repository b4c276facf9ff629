"""Two perception workers share camera.frames; a busy one is killed and the other takes over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.partitioner import DefaultPartitioner

from services.messages import PerceptionObjects, SafetyEvent
from services.perception.settings import PerceptionSettings
from services.settings import Settings
from tests.kafka_helpers import collect
from tests.service.test_perception_service import frame

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
PER_PARTITION = 2  # camera streams on each camera.frames partition: both workers have input
RATE_HZ = 10.0  # frames per stream per second: above what two workers serve
BUSY_BUDGET_MS = 5000.0  # stale-dropping on; long enough that the survivor catches up
AFTER_KILL_S = 15.0  # input goes on this long after the kill: the group's 10 s session timeout
FETCH_RECORDS = PerceptionSettings().max_fetch_records


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frames_processed(port: int) -> float:
    """The worker's own count of frames it served, from its /metrics."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith("roadstream_frames_processed_total"))


def held(port: int) -> set[int] | None:
    """The camera.frames partitions a worker holds, from its /healthz; None before it serves."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
    except OSError:  # not listening yet, or 503 while starting
        return None
    return set(json.loads(body)["partitions"].get("camera.frames", []))


async def settled_group(ports: tuple[int, ...], timeout_s: float = 120) -> None:
    """Wait until every worker holds camera.frames partitions and no two hold the same one.

    The workers start seconds apart (model load): frames produced before the second one joined
    would all go to the first, and the test would prove nothing about the kill.
    """
    deadline = time.monotonic() + timeout_s
    last: list[set[int] | None] = []
    while time.monotonic() < deadline:
        last = [await asyncio.to_thread(held, port) for port in ports]
        parts = [p for p in last if p]
        if len(parts) == len(ports) and sum(map(len, parts)) == len(set().union(*parts)):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the workers' group did not settle in {timeout_s} s: {last}")


def worker(bootstrap: str, group: str, port: int,
           options: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROADSTREAM_")}
    env.update({"ROADSTREAM_BOOTSTRAP_SERVERS": bootstrap, "ROADSTREAM_GROUP_PREFIX": group,
                "ROADSTREAM_METRICS_PORT": str(port),
                "ROADSTREAM_TORCH_THREADS": "1", **options})
    return subprocess.Popen([sys.executable, "-m", "services.cli.main", "serve", "perception"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def streams(unique: str) -> list[str]:
    """Vehicle ids whose keys fill every camera.frames partition with PER_PARTITION streams
    (picked with the producer's own partitioner, so neither worker can end up idle)."""
    parts = list(range(Settings().topic_partitions))
    chosen: dict[int, list[str]] = {p: [] for p in parts}
    i = 0
    while any(len(v) < PER_PARTITION for v in chosen.values()):
        vehicle = f"ego{i}-{unique}"
        part = DefaultPartitioner()(f"{vehicle}/front".encode(), parts, parts)
        if len(chosen[part]) < PER_PARTITION:
            chosen[part].append(vehicle)
        i += 1
    return [v for p in parts for v in chosen[p]]


def drops(records: list[ConsumerRecord], unique: str) -> list[tuple[str, int]]:
    """(vehicle, seq) of every frame named in a ``frame_dropped`` event of this test's run."""
    named = []
    for r in records:
        event = SafetyEvent.decode(r.value)
        if event.type == "frame_dropped" and event.run_id == unique:
            seqs = event.details["frame_seqs"]
            assert isinstance(seqs, list)
            named += [(event.vehicle_id, int(seq)) for seq in seqs]
    return named


async def test_a_busy_worker_killed_mid_stream_loses_no_frame_and_duplicates_are_bounded(
        kafka_bootstrap: str, unique: str) -> None:
    """SIGKILL a worker while frames keep coming, with stale-dropping on (the defaults).

    The offered rate (streams × RATE_HZ) is above what the two workers serve, so the killed one
    is serving when it dies. Every frame produced is then either served or dropped on purpose
    and named in a ``frame_dropped`` event; none is lost. The killed worker's uncommitted fetch
    is delivered again to the survivor: frames handled twice are counted, and at most the
    records of one fetch (the batch plus its top-up, 2 × max_fetch_records).
    """
    group = f"b{unique}"
    port_a, port_b = free_port(), free_port()
    stale_on = {"ROADSTREAM_PERCEPTION_LATENCY_BUDGET_MS": str(BUSY_BUDGET_MS),
                "ROADSTREAM_PERCEPTION_NEWEST_PER_CAMERA": "true"}
    a = worker(kafka_bootstrap, group, port_a, stale_on)
    b = worker(kafka_bootstrap, group, port_b, stale_on)
    image, _ = frame(0)
    vehicles = streams(unique)
    produced: dict[tuple[str, int], int] = {}  # (vehicle, seq) -> partition
    kill_after: dict[str, int] = {}  # vehicle -> first seq produced after the kill
    stop = asyncio.Event()
    killed = asyncio.Event()

    async def offer(producer: AIOKafkaProducer) -> None:
        # One record per request (send_and_wait): the embedded broker's ListOffsets counts a
        # batch of several records as one (docs/kafka.md), and a batched tail would move the
        # "latest" that later tests' consumers start from.
        seq = 0
        while not stop.is_set():
            for vehicle in vehicles:
                _, headers = frame(seq, stamp_ns=time.time_ns())
                headers = {**headers, "vehicle-id": vehicle, "run-id": unique}
                if killed.is_set():
                    kill_after.setdefault(vehicle, seq)
                sent = await producer.send_and_wait(
                    "camera.frames", image, key=f"{vehicle}/front".encode(),
                    headers=[(k, v.encode()) for k, v in headers.items()])
                produced[(vehicle, seq)] = sent.partition
            seq += 1
            await asyncio.sleep(1 / RATE_HZ)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False,
                                acks="all")
    await producer.start()
    try:
        await settled_group((port_a, port_b))
        offering = asyncio.create_task(offer(producer))
        # Kill A while it serves: its own count rose in the last poll and input keeps coming.
        before, rising, deadline = frames_processed(port_a), 0, time.monotonic() + 120
        while rising < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            now = frames_processed(port_a)
            rising = rising + 1 if now > before else 0
            before = now
        assert rising == 3, "worker A never served in three polls in a row"
        a_partitions = held(port_a) or set()
        a.send_signal(signal.SIGKILL)
        killed.set()
        a.wait(timeout=10)
        await asyncio.sleep(AFTER_KILL_S)  # the survivor takes A's partitions meanwhile
        stop.set()
        await offering
    finally:
        await producer.stop()
    try:
        # Settle: every produced frame served or named as dropped (or the deadline).
        served: list[tuple[str, int]] = []
        dropped: list[tuple[str, int]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            results = await collect(kafka_bootstrap, "perception.objects",
                                    lambda r: unique.encode() in r.value, 10**6,
                                    timeout_s=4)
            served = [(o.vehicle_id, o.source.seq)
                      for o in (PerceptionObjects.decode(r.value) for r in results)]
            events = await collect(kafka_bootstrap, "safety.events",
                                   lambda r: unique.encode() in r.value, 10**6, timeout_s=3)
            dropped = drops(events, unique)
            if set(produced) <= set(served) | set(dropped):
                break
        b_partitions = held(port_b) or set()
    finally:
        if b.poll() is None:
            b.send_signal(signal.SIGTERM)
            b.wait(timeout=30)
    handled = Counter(served) + Counter(dropped)
    lost = set(produced) - set(handled)
    duplicates = sum(n - 1 for n in handled.values())
    print(f"\nproduced {len(produced)}, served {len(set(served))}, dropped on purpose "
          f"{len(set(dropped))}, lost {len(lost)}, handled twice {duplicates}")
    assert not lost, sorted(lost)[:20]
    assert set(handled) == set(produced)  # nothing of anyone else's
    assert duplicates <= 2 * FETCH_RECORDS, duplicates
    # A held partitions when it died, and the survivor took them over and served on them.
    assert a_partitions, "worker A held no partition when it was killed"
    assert a_partitions <= b_partitions, (a_partitions, b_partitions)
    after_on_a = {(v, s) for (v, s), part in produced.items()
                  if part in a_partitions and s >= kill_after.get(v, 1 << 62)}
    assert after_on_a & set(served), "nothing produced on A's partitions after the kill was served"
