"""The load-generating side of `roadstream bench perception`.

Rendered frames, a collector of `perception.objects` that stamps each message on arrival,
and the broker-hop measurement. The perception service itself runs in a process of its own
(`services.runtime.process`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.broker.clients import client_kwargs, consumer_kwargs
from services.messages import CAMERA_FRAMES, PERCEPTION_OBJECTS, FrameRef, PerceptionObjects
from services.runtime.delivery import Record
from services.settings import Settings
from services.simulator import convert
from simulators.camera import Camera
from simulators.library import load_scenario
from simulators.render import encode_jpeg
from simulators.world import World

VEHICLE = "bench"


def render_frames(scenario: str, n: int, width: int, height: int) -> list[tuple[bytes, Camera]]:
    """Rendered JPEG frames and the camera that took them (for headers and calibration)."""
    sc = load_scenario(scenario)
    world = World.from_scenario(sc)
    cam = world.cameras[sc.cameras[0].id].scaled(width, height)
    out = []
    for _ in range(n):
        if world.done:
            world = World.from_scenario(sc)
        out.append((encode_jpeg(world.render(cam), 85), cam))
        world.step(0.1)
    return out


def frame_record(image: bytes, cam: Camera, *, seq: int, run_id: str, stamp_ns: int) -> Record:
    """A camera.frames record as the service receives it."""
    meta = convert.frame_meta(cam, vehicle_id=VEHICLE, seq=seq, stamp_ns=stamp_ns, run_id=run_id)
    return Record(topic=CAMERA_FRAMES.name, partition=0, offset=seq, key=meta.key, value=image,
                  headers=tuple(meta.to_headers()))


class Collector:
    """Reads `perception.objects` from its end; stamps each message when it arrives."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        kwargs = {k: v for k, v in consumer_kwargs(settings).items() if k != "auto_offset_reset"}
        self.consumer = AIOKafkaConsumer(**client_kwargs(settings, bootstrap, "bench-collect"),
                                         group_id=None, **kwargs)
        self.received: list[tuple[int, bytes]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition at its end and start reading in the background."""
        await self.consumer.start()
        parts = self.consumer.partitions_for_topic(PERCEPTION_OBJECTS.name) or {0}
        tps = [TopicPartition(PERCEPTION_OBJECTS.name, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before anything is produced
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.time_ns()
            for records in batches.values():
                self.received.extend((now, bytes(r.value or b"")) for r in records)
            if batches:
                self._arrived.set()

    def of_run(self, run_id: str) -> list[tuple[int, PerceptionObjects]]:
        """Received results of one run id, decoded, in arrival order."""
        tag = json.dumps(run_id).encode()
        return [(t, PerceptionObjects.decode(v)) for t, v in self.received if tag in v]

    def count(self, run_id: str) -> int:
        """How many results of ``run_id`` have arrived."""
        tag = json.dumps(run_id).encode()
        return sum(1 for _, v in self.received if tag in v)

    async def wait_count(self, run_id: str, n: int, timeout_s: float) -> bool:
        """Wait until ``n`` results of ``run_id`` have arrived; False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.count(run_id) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._arrived.clear()  # no await since the count: nothing can have slipped by
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return True

    async def wait_for(self, run_id: str, n: int, *, stall_s: float,
                       progress: Callable[[int], None]) -> int:
        """Wait until ``n`` results of ``run_id`` arrived, or none arrived for ``stall_s``."""
        got = self.count(run_id)
        progress(got)
        while got < n:
            if not await self.wait_count(run_id, got + 1, stall_s):
                break
            got = self.count(run_id)
            progress(got)
        return got

    async def stop(self) -> None:
        """Stop reading and close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


async def measure_hops(producer: AIOKafkaProducer, collector: Collector, n: int) -> list[float]:
    """One-way produce → consume times [ms] of small `perception.objects` messages."""
    run_id = f"bench-hop-{uuid.uuid4().hex[:8]}"
    hops = []
    for seq in range(n + 2):  # the first two warm the connections up
        sent_ns = time.time_ns()
        msg = PerceptionObjects(vehicle_id=VEHICLE, camera_id="hop",
                                source=FrameRef(seq=seq, stamp_ns=sent_ns), stamp_ns=sent_ns,
                                model_version="bench-hop", run_id=run_id)
        await producer.send_and_wait(PERCEPTION_OBJECTS.name, msg.encode(),
                                     key=f"{VEHICLE}/hop".encode(),
                                     headers=[("content-type", b"application/json")])
        if not await collector.wait_count(run_id, seq + 1, timeout_s=10):
            raise RuntimeError("a broker hop took longer than 10 s")
        arrived = [(t, m) for t, m in collector.of_run(run_id) if m.source.seq == seq]
        if seq >= 2:
            hops.append((arrived[0][0] - sent_ns) / 1e6)
    return hops


async def send_frame(producer: AIOKafkaProducer, image: bytes, cam: Camera, *, seq: int,
                     run_id: str) -> asyncio.Future[Any]:
    """Queue one frame, stamped as captured now; the returned future resolves on the ack."""
    meta = convert.frame_meta(cam, vehicle_id=VEHICLE, seq=seq, stamp_ns=time.time_ns(),
                              run_id=run_id)
    future: asyncio.Future[Any] = await producer.send(CAMERA_FRAMES.name, image, key=meta.key,
                                                      headers=meta.to_headers())
    return future
