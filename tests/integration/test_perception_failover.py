"""Two perception workers share camera.frames; one is killed and the other takes its partitions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.messages import PerceptionObjects
from tests.kafka_helpers import collect, produce
from tests.service.test_perception_service import frame

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def worker(bootstrap: str, group: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROADSTREAM_")}
    env.update({"ROADSTREAM_BOOTSTRAP_SERVERS": bootstrap, "ROADSTREAM_GROUP_PREFIX": group,
                "ROADSTREAM_TORCH_THREADS": "1",
                "ROADSTREAM_PERCEPTION_LATENCY_BUDGET_MS": "600000"})
    return subprocess.Popen([sys.executable, "-m", "services.cli.main", "serve", "perception"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def frames(unique: str, seqs: range) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    items = []
    for cam in range(3):  # three keys: spread over the partitions
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
    a, b = worker(kafka_bootstrap, group), worker(kafka_bootstrap, group)
    try:
        await produce(kafka_bootstrap, "camera.frames", frames(unique, range(5)))
        first = await outputs(kafka_bootstrap, unique, 15, timeout_s=90)
        assert len(first) == 15, "both workers should serve the first frames"
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
        await produce(kafka_bootstrap, "camera.frames", frames(unique, range(5, 15)))
        done: set[tuple[str, int]] = set()
        for _ in range(30):
            done = await outputs(kafka_bootstrap, unique, 45, timeout_s=3)
            if len(done) == 45:
                break
            await asyncio.sleep(1)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
    assert done == {(f"ego{c}-{unique}", s) for c in range(3) for s in range(15)}
