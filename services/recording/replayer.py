"""`roadstream replay`: publish a recording, a video or an image folder into Kafka.

Sources are validated completely before the first message goes out (see mcap_io and sources),
so a bad source publishes nothing. Publishing goes through the small `Publisher` protocol;
`KafkaPublisher` is the real one, tests count with a fake.

Timing: a recording is replayed with its original relative timing (Kafka timestamps) divided by
`rate`; `rate` 0 publishes as fast as possible. Replayed records get a fresh Kafka timestamp
(the time they are sent again); key, headers and value are the original bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from aiokafka import AIOKafkaProducer

from services.broker.producers import open_producer
from services.messages import CAMERA_FRAMES, Calibration, FrameMeta
from services.recording.envelope import KafkaRecord
from services.recording.sources import FrameSource, default_calibration
from services.settings import Settings

Headers = Sequence[tuple[str, bytes | None]]


class Publisher(Protocol):
    """Where replayed messages go."""

    async def send(self, topic: str, value: bytes, *, key: bytes | None,
                   headers: Headers) -> None:
        """Queue one message (delivery is confirmed by flush)."""

    async def flush(self) -> None:
        """Wait until every queued message is acknowledged; raise the first failure."""


class KafkaPublisher:
    """A Publisher on an aiokafka producer (acks=all; records keep their per-partition order)."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self._settings = settings
        self._bootstrap = bootstrap
        self._started: AIOKafkaProducer | None = None
        self._pending: set[asyncio.Future[object]] = set()
        self._error: BaseException | None = None
        self.sent = 0

    async def __aenter__(self) -> Self:
        self._started = await open_producer(self._settings, self._bootstrap, "replay")
        return self

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._started is None:
            raise RuntimeError("KafkaPublisher is used outside `async with`")
        return self._started

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if exc is None:
                await self.flush()
        finally:
            await self._producer.stop()

    async def send(self, topic: str, value: bytes, *, key: bytes | None,
                   headers: Headers) -> None:
        """Queue one message; its Kafka timestamp is the producer's clock now."""
        if self._error is not None:
            raise self._error
        future = await self._producer.send(topic, value, key=key, headers=list(headers))
        self._pending.add(future)
        future.add_done_callback(self._done)
        self.sent += 1

    def _done(self, future: asyncio.Future[object]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None and self._error is None:
            self._error = future.exception()

    async def flush(self) -> None:
        """Wait for every acknowledgement."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class Scheduled:
    """A record and when to send it [ns after the first record of the pass]."""

    offset_ns: int
    record: KafkaRecord


def schedule(records: Iterable[KafkaRecord]) -> list[Scheduled]:
    """The send order and relative times of a recording.

    Records are ordered by Kafka timestamp, but never against their recorded order within a
    (topic, key): a timestamp that went backwards for a key is lifted to the one before it,
    so each key's order survives clock skew between producers.
    """
    last: dict[tuple[str, bytes | None], int] = {}
    timed: list[tuple[int, int, KafkaRecord]] = []
    for index, record in enumerate(records):
        slot = (record.topic, record.key)
        at = max(record.time_ns, last.get(slot, record.time_ns))
        last[slot] = at
        timed.append((at, index, record))
    timed.sort(key=lambda item: (item[0], item[1]))
    if not timed:
        return []
    first = timed[0][0]
    return [Scheduled(at - first, record) for at, _, record in timed]


async def _wait_until(deadline: float, stop: asyncio.Event) -> bool:
    """Sleep until loop time `deadline`; False when `stop` was set first."""
    loop = asyncio.get_running_loop()
    delay = deadline - loop.time()
    if stop.is_set():
        return False
    if delay <= 0:
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return True
    return False


async def replay_records(plan: Sequence[Scheduled], publisher: Publisher, *, rate: float = 1.0,
                         loop: bool = False, stop: asyncio.Event | None = None) -> int:
    """Publish a schedule with its timing divided by `rate` (0: no waiting); return the count.

    With `loop` the schedule restarts after its last record until `stop` is set.
    """
    if rate < 0:
        raise ValueError("rate must be >= 0")
    stop = stop or asyncio.Event()
    sent = 0
    while plan and not stop.is_set():
        start = asyncio.get_running_loop().time()
        for item in plan:
            if rate > 0 and not await _wait_until(start + item.offset_ns / 1e9 / rate, stop):
                break
            if stop.is_set():
                break
            r = item.record
            await publisher.send(r.topic, r.value, key=r.key, headers=r.headers)
            sent += 1
        if not loop:
            break
    await publisher.flush()
    return sent


@dataclass(frozen=True)
class CameraOptions:
    """Identity and timing of a camera stream made from a video or an image folder."""

    vehicle_id: str = "ego-0"
    camera_id: str = "front"
    fps: float | None = None  # None: the source's own rate, else the registry's camera rate
    calibration: Calibration | None = None  # None: derived from each image's size
    run_id: str = ""


async def replay_frames(source: FrameSource, publisher: Publisher, options: CameraOptions, *,
                        rate: float = 1.0, loop: bool = False,
                        stop: asyncio.Event | None = None) -> int:
    """Publish a frame source on `camera.frames` at `fps × rate`; return the frame count.

    Every frame gets the full header set (FrameMeta): seq counts on across loops, capture
    time is the wall clock when the frame is sent, as a live camera would stamp it.
    """
    if rate < 0:
        raise ValueError("rate must be >= 0")
    stop = stop or asyncio.Event()
    fps = options.fps or source.fps or CAMERA_FRAMES.rate_hz or 10.0
    period_s = 1.0 / fps
    seq = 0
    start = asyncio.get_running_loop().time()
    while not stop.is_set():
        first = seq
        for frame in source.frames():
            # Deadlines run on across loops: the first frame of a pass follows the last one
            # by one period.
            if rate > 0 and not await _wait_until(start + seq * period_s / rate, stop):
                break
            if stop.is_set():
                break
            calibration = options.calibration or default_calibration(frame.width, frame.height)
            meta = FrameMeta(content_type=frame.content_type, vehicle_id=options.vehicle_id,
                             camera_id=options.camera_id, seq=seq, capture_ns=time.time_ns(),
                             width=frame.width, height=frame.height, calibration=calibration,
                             run_id=options.run_id)
            await publisher.send(CAMERA_FRAMES.name, frame.data, key=meta.key,
                                 headers=meta.to_headers())
            seq += 1
        if not loop or seq == first:
            break
    await publisher.flush()
    return seq
