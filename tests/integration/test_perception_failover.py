"""Two perception workers share camera.frames; one is killed and the other takes its partitions."""

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
from pathlib import Path

import pytest

from services.messages import PerceptionObjects
from tests.kafka_helpers import collect, produce
from tests.service.test_perception_service import frame

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# Keys hash to random partitions (they hold the test's unique id): with 12 of them, the chance
# that all land on one worker's half is 2 × 2**-12.
STREAMS = 12
FIRST, TOTAL = 3, 8  # frames per stream before and after the kill


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


def worker(bootstrap: str, group: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROADSTREAM_")}
    env.update({"ROADSTREAM_BOOTSTRAP_SERVERS": bootstrap, "ROADSTREAM_GROUP_PREFIX": group,
                "ROADSTREAM_METRICS_PORT": str(port),
                "ROADSTREAM_TORCH_THREADS": "1",
                "ROADSTREAM_PERCEPTION_LATENCY_BUDGET_MS": "600000",
                # every frame must come out: a burst of one stream is not to be skipped
                "ROADSTREAM_PERCEPTION_NEWEST_PER_CAMERA": "false"})
    return subprocess.Popen([sys.executable, "-m", "services.cli.main", "serve", "perception"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def frames(unique: str, seqs: range) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    items = []
    for cam in range(STREAMS):
        vehicle = f"ego{cam}-{unique}"
        for seq in seqs:
            value, headers = frame(seq, stamp_ns=time.time_ns())
            headers = {**headers, "vehicle-id": vehicle, "run-id": unique}
            items.append((f"{vehicle}/front".encode(), value,
                          [(k, v.encode()) for k, v in headers.items()]))
    return items


async def outputs(bootstrap: str, unique: str, n: int, timeout_s: float) -> set[tuple[str, int]]:
    got = await collect(bootstrap, "perception.objects", lambda r: unique.encode() in r.value, n,
                        timeout_s=timeout_s)
    return {(o.vehicle_id, o.source.seq) for o in (PerceptionObjects.decode(r.value) for r in got)}


async def test_killed_workers_partitions_move_and_no_frame_is_lost(kafka_bootstrap: str,
                                                                   unique: str) -> None:
    group = f"f{unique}"
    port_a, port_b = free_port(), free_port()
    a, b = worker(kafka_bootstrap, group, port_a), worker(kafka_bootstrap, group, port_b)
    try:
        await settled_group((port_a, port_b))
        await produce(kafka_bootstrap, "camera.frames", frames(unique, range(FIRST)))
        first = await outputs(kafka_bootstrap, unique, STREAMS * FIRST, timeout_s=90)
        assert len(first) == STREAMS * FIRST
        served_by_a = frames_processed(port_a)
        served_by_b_before = frames_processed(port_b)
        # Each worker held partitions and served some of the streams before the kill.
        assert served_by_a > 0, served_by_a
        assert served_by_b_before > 0, served_by_b_before
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
        await produce(kafka_bootstrap, "camera.frames", frames(unique, range(FIRST, TOTAL)))
        done: set[tuple[str, int]] = set()
        for _ in range(30):
            done = await outputs(kafka_bootstrap, unique, STREAMS * TOTAL, timeout_s=3)
            if len(done) == STREAMS * TOTAL:
                break
            await asyncio.sleep(1)
        served_by_b = frames_processed(port_b)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
    assert done == {(f"ego{c}-{unique}", s) for c in range(STREAMS) for s in range(TOTAL)}
    # The survivor served everything the killed worker did not: its partitions moved over.
    assert served_by_b >= STREAMS * TOTAL - served_by_a, (served_by_a, served_by_b)
    assert served_by_b - served_by_b_before >= STREAMS * (TOTAL - FIRST)
