"""Tools of the fault suite (tests marked ``faults``): live workers, steady frame streams, and
reading back what the stack published, committed and reported.

Everything is read from outside the processes under test: their `/healthz` and `/metrics`
over HTTP, and the topics and consumer-group offsets with a plain aiokafka client.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import murmur2

from services.broker.embedded import free_port
from services.messages import FrameMeta, PerceptionObjects, SafetyEvent
from services.messages.examples import CALIBRATION
from services.perception.service import _DROP_REASONS as DROP_REASONS
from tests.kafka_helpers import MAX_BYTES

#: The drop reasons of a `frame_dropped` event's details, as the perception service words
#: them, back to the keys of its counts (`perception.batching.DROP_*`).
DROP_REASON_KEYS = {text: key for key, text in DROP_REASONS.items()}
FRAMES_SERVED = "roadstream_frames_processed_total"

Frame = tuple[str, int]  # (vehicle id, seq): a frame's identity within one run and camera
ROOT = Path(__file__).resolve().parents[1]


def _image() -> bytes:
    img = np.full((360, 640, 3), 90, np.uint8)
    cv2.rectangle(img, (280, 160), (360, 220), (30, 30, 200), -1)
    return bytes(cv2.imencode(".jpg", img)[1].tobytes())


JPEG = _image()


def healthz(port: int) -> tuple[int | None, dict[str, object]]:
    """``(HTTP status, document)`` of a service's `/healthz`; ``(None, {})`` when it does not
    answer at all (not listening yet, or gone)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as error:
        try:
            return int(error.code), json.loads(error.read())
        except ValueError:
            return int(error.code), {}
    except (OSError, ValueError):
        return None, {}


def held_partitions(port: int, topic: str = "camera.frames") -> set[int]:
    """The partitions of `topic` a service holds, from its `/healthz` (empty when unknown)."""
    _, document = healthz(port)
    partitions = document.get("partitions")
    return set(partitions.get(topic, [])) if isinstance(partitions, dict) else set()


def metric_total(port: int, name: str) -> float:
    """The sum of a counter's samples on a service's `/metrics` (0 when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            body = reply.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(name))


async def poll(condition: Callable[[], Awaitable[bool]], timeout_s: float,
               interval_s: float = 0.5) -> bool:
    """Poll `condition` until it holds (True) or `timeout_s` passes (False).

    A bounded wait on a condition, never a fixed sleep: a loaded machine only makes it take
    longer, and what a test asserts is the condition, not the time.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(interval_s)
    return await condition()


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout_s: float,
                     what: str, interval_s: float = 0.5) -> None:
    """`poll`, and AssertionError naming `what` when the condition never held."""
    if not await poll(condition, timeout_s, interval_s):
        raise AssertionError(f"{what}: not within {timeout_s:g} s")


async def settled_group(ports: tuple[int, ...], partitions: int, timeout_s: float = 120) -> None:
    """Wait until the workers' camera.frames partitions are disjoint, cover the topic, and
    each worker holds some: the group has formed, with no rebalance pending."""

    async def settled() -> bool:
        held = [await asyncio.to_thread(held_partitions, port) for port in ports]
        return (all(held) and sum(map(len, held)) == partitions
                and set().union(*held) == set(range(partitions)))

    await wait_until(settled, timeout_s, f"the workers on ports {ports} sharing "
                     f"{partitions} partitions")


class ServeProcess:
    """`roadstream serve SERVICE` in a process of its own, configured by its environment as a
    deployment configures it (no other ``ROADSTREAM_*`` variable leaks in); its output goes
    to `log`, its `/healthz` and `/metrics` to `port`."""

    def __init__(self, service: str, bootstrap: str, group: str, log: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.service = service
        self.port = free_port()
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROADSTREAM_")}
        self.env.update({"ROADSTREAM_BOOTSTRAP_SERVERS": bootstrap,
                         "ROADSTREAM_GROUP_PREFIX": group, "ROADSTREAM_TORCH_THREADS": "1",
                         "ROADSTREAM_METRICS_PORT": str(self.port), **(env or {})})
        self.proc: asyncio.subprocess.Process | None = None
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in close()

    async def start(self, timeout_s: float = 240) -> None:
        """Spawn it; return once `/healthz` says ok and it holds partitions."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", "serve", self.service, cwd=ROOT,
            env=self.env, stdout=self._log_file, stderr=self._log_file)

        async def serving() -> bool:
            self.check_running()
            code, document = await asyncio.to_thread(healthz, self.port)
            return code == 200 and bool(document.get("partitions"))

        await wait_until(serving, timeout_s, f"{self.service} serving")

    def check_running(self) -> None:
        """AssertionError with the end of its log when the process has exited."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"{self.service} exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text(errors='replace')[-3000:]}")

    def signal(self, sig: int) -> None:
        """Send it a signal."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        """Its exit code, once it exits."""
        assert self.proc is not None
        return await self.proc.wait()

    async def close(self) -> None:
        """Kill it if it still runs; close its log."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._log_file.close()


def vehicles_per_partition(prefix: str, partitions: int, per_partition: int) -> dict[int, list[str]]:
    """Vehicle ids whose front-camera key lands on each partition, `per_partition` each.

    Chosen with the producer's own partitioner (murmur2 of the key, as Kafka's clients do),
    so every worker of a group has streams of its own, whatever the random test id.
    """
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while any(len(v) < per_partition for v in found.values()):
        vehicle = f"{prefix}-{n}"
        n += 1
        partition = (murmur2(f"{vehicle}/front".encode()) & 0x7FFFFFFF) % partitions
        if len(found[partition]) < per_partition:
            found[partition].append(vehicle)
    return found


def frame_item(vehicle: str, seq: int, run_id: str,
               capture_ns: int | None = None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A valid camera.frames record ``(key, value, headers)`` of the front camera."""
    meta = FrameMeta(vehicle_id=vehicle, camera_id="front", seq=seq,
                     capture_ns=capture_ns or time.time_ns(), width=640, height=360,
                     calibration=CALIBRATION, run_id=run_id)
    return meta.key, JPEG, meta.to_headers()


@dataclass
class SteadyStream:
    """Frames of several front cameras at a steady rate, until `stop` is set.

    `produced`: each acknowledged frame and the partition it went to.
    """

    bootstrap: str
    vehicles: list[str]
    run_id: str
    rate_hz: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    produced: dict[Frame, int] = field(default_factory=dict)
    next_seq: int = 0

    async def run(self) -> None:
        """Send one frame per camera every 1/rate_hz seconds (no catching up after a stall)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=False,
                                    max_request_size=MAX_BYTES, acks="all")
        await producer.start()
        try:
            while not self.stop.is_set():
                tick = time.monotonic()
                seq = self.next_seq
                sent = [(vehicle, await producer.send("camera.frames", value, key=key,
                                                      headers=headers))
                        for vehicle in self.vehicles
                        for key, value, headers in [frame_item(vehicle, seq, self.run_id)]]
                for vehicle, future in sent:
                    self.produced[(vehicle, seq)] = (await future).partition
                self.next_seq += 1
                pause = 1 / self.rate_hz - (time.monotonic() - tick)
                if pause > 0:
                    await asyncio.sleep(pause)
        finally:
            await producer.stop()


async def read_topic(bootstrap: str, topic: str, want: Callable[[ConsumerRecord], bool],
                     timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """Every record of `topic` from its start up to its end as of this call that `want`s.

    The end is each partition's high watermark as fetch responses give it. (The embedded
    broker's ListOffsets answer, behind `end_offsets`, counts a batch of several records as
    one, so it falls short of the end: records would be missed.)
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_bytes=MAX_BYTES * 2,
                                max_partition_fetch_bytes=MAX_BYTES)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster's metadata
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found: list[ConsumerRecord] = []
        end: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(end) < len(parts) or any([await consumer.position(tp) < end[tp] for tp in parts]):
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} to its end took over {timeout_s:g} s")
            batches = await consumer.getmany(timeout_ms=200)
            for tp in parts:  # the end as of the first fetch that told it
                if tp not in end and consumer.highwater(tp) is not None:
                    end[tp] = consumer.highwater(tp)
            for tp, records in batches.items():
                found.extend(r for r in records if r.offset < end.get(tp, r.offset + 1) and want(r))
        return found
    finally:
        await consumer.stop()


async def served_frames(bootstrap: str, run_id: str) -> Counter[Frame]:
    """How many times each frame of a run was served: its perception.objects results."""
    records = await read_topic(bootstrap, "perception.objects",
                               lambda r: run_id.encode() in r.value)
    results = [PerceptionObjects.decode(r.value) for r in records]
    return Counter((o.vehicle_id, o.source.seq) for o in results if o.run_id == run_id)


async def drop_events(bootstrap: str, run_id: str) -> list[SafetyEvent]:
    """The run's `frame_dropped` safety events (one per reason, camera and fetch)."""
    records = await read_topic(bootstrap, "safety.events", lambda r: run_id.encode() in r.value)
    events = [SafetyEvent.decode(r.value) for r in records]
    return [e for e in events if e.run_id == run_id and e.type == "frame_dropped"]


def dropped_frames(events: list[SafetyEvent]) -> Counter[Frame]:
    """How many times each frame was reported dropped on purpose, by those events."""
    out: Counter[Frame] = Counter()
    for event in events:
        seqs = event.details["frame_seqs"]
        assert event.details["frames"] == len(seqs), event
        out.update((event.vehicle_id, int(seq)) for seq in seqs)
    return out


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """A consumer group's committed offset of each partition of `topic` (absent: none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster's metadata
        out = {}
        for p in sorted(consumer.partitions_for_topic(topic) or ()):
            offset = await consumer.committed(TopicPartition(topic, p))
            if offset is not None:
                out[p] = offset
        return out
    finally:
        await consumer.stop()


async def commit_first_offsets(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 0 of every partition of `topic` for a consumer group that has not joined
    yet (on a broker of the test's own, where `topic` is still empty).

    Its members then start at the first record. A member of a group with nothing committed
    starts at "latest" as of its first fetch, which, after the rebalance a second member's
    arrival causes, can come after frames were already sent: they would be skipped.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster's metadata
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        await consumer.commit(dict.fromkeys(parts, 0))
    finally:
        await consumer.stop()
