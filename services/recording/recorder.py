"""`roadstream record`: consume topics and write them to an MCAP file.

The recorder reads every partition of the topics itself (no consumer group, nothing committed:
recording never disturbs the services' offsets), from the end (default) or the beginning,
and writes records in the order it receives them, which keeps the order of every key (a key
lives on one partition). It stops on the stop event (Ctrl-C/SIGTERM), after a duration or a
number of messages, and always finishes the file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.broker.clients import client_kwargs, consumer_kwargs
from services.messages import TopicSpec
from services.recording.envelope import KafkaRecord, RecordingError
from services.recording.mcap_io import RecordingWriter
from services.settings import Settings

POLL_MS = 100  # how long one fetch waits; bounds the reaction to stop and duration


@dataclass
class RecordResult:
    """What a recording run wrote."""

    path: Path
    messages: int
    per_topic: dict[str, int]
    duration_s: float
    bytes: int
    stopped_by: str
    partitions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"path": str(self.path), "messages": self.messages, "per_topic": self.per_topic,
                "duration_s": round(self.duration_s, 3), "bytes": self.bytes,
                "stopped_by": self.stopped_by, "partitions": self.partitions}


def to_record(message: ConsumerRecord[bytes, bytes]) -> KafkaRecord:
    """The KafkaRecord of a consumed message (value None, a tombstone, is kept as b"")."""
    return KafkaRecord(topic=message.topic, key=message.key, value=message.value or b"",
                       headers=tuple((str(n), None if v is None else bytes(v))
                                     for n, v in message.headers or ()),
                       timestamp_ms=int(message.timestamp), partition=message.partition,
                       offset=message.offset, timestamp_type=int(message.timestamp_type))


class Recorder:
    """Records `topics` from `bootstrap` into the MCAP file `out`."""

    def __init__(self, settings: Settings, bootstrap: str, topics: Sequence[TopicSpec],
                 out: Path, *, from_beginning: bool = False) -> None:
        if not topics:
            raise ValueError("Recorder needs at least one topic")
        self.settings = settings
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.out = out
        self.from_beginning = from_beginning

    async def run(self, stop: asyncio.Event | None = None, *, duration_s: float | None = None,
                  max_messages: int | None = None,
                  on_ready: Callable[[], None] | None = None) -> RecordResult:
        """Record until `stop` is set, `duration_s` passed or `max_messages` were written.

        `on_ready` is called once every partition is positioned: a message published after
        it is recorded. The duration counts from then.
        """
        stop = stop or asyncio.Event()
        consumer = self._consumer()
        await consumer.start()
        try:
            partitions = await self._position(consumer)
            writer = RecordingWriter(self.out, self.topics, metadata={
                "bootstrap_servers": self.bootstrap, "from_beginning": str(self.from_beginning),
                "started_ns": str(time.time_ns())})
            with writer:
                if on_ready is not None:
                    on_ready()
                started = time.monotonic()
                reason = await self._loop(consumer, writer, stop, started, duration_s,
                                          max_messages)
                elapsed = time.monotonic() - started
        finally:
            await consumer.stop()
        return RecordResult(path=self.out, messages=writer.messages, per_topic=dict(writer.counts),
                            duration_s=elapsed, bytes=self.out.stat().st_size, stopped_by=reason,
                            partitions=partitions)

    def _consumer(self) -> AIOKafkaConsumer:
        options = consumer_kwargs(self.settings, watcher=True)
        options["auto_offset_reset"] = "earliest" if self.from_beginning else "latest"
        # No group: every partition is read and no offset is committed.
        return AIOKafkaConsumer(*(t.name for t in self.topics), group_id=None,
                                **client_kwargs(self.settings, self.bootstrap, "recorder"),
                                **options)

    async def _position(self, consumer: AIOKafkaConsumer) -> list[str]:
        assigned = consumer.assignment()
        missing = [t.name for t in self.topics if not any(tp.topic == t.name for tp in assigned)]
        if missing:
            raise RecordingError(f"topic(s) {', '.join(missing)} do not exist on "
                                 f"{self.bootstrap}")
        ordered = sorted(assigned, key=lambda tp: (tp.topic, tp.partition))
        if self.from_beginning:
            await consumer.seek_to_beginning(*ordered)
        else:
            await consumer.seek_to_end(*ordered)
        # Resolve the offsets now, so that "ready" means it. (The embedded Tansu broker answers
        # "latest" with the base offset of the last batch + 1, so there the rest of that batch
        # is recorded too; Apache Kafka answers the true log end.)
        for tp in ordered:
            await consumer.position(tp)
        return [f"{tp.topic}[{tp.partition}]" for tp in ordered]

    async def _loop(self, consumer: AIOKafkaConsumer, writer: RecordingWriter,
                    stop: asyncio.Event, started: float, duration_s: float | None,
                    max_messages: int | None) -> str:
        while True:
            if stop.is_set():
                return "signal"
            if max_messages is not None and writer.messages >= max_messages:
                return "max-messages"
            wait_ms = POLL_MS
            if duration_s is not None:
                left_s = started + duration_s - time.monotonic()
                if left_s <= 0:
                    return "duration"
                wait_ms = max(1, min(POLL_MS, int(left_s * 1000)))
            batches = await consumer.getmany(timeout_ms=wait_ms)
            for messages in batches.values():
                for message in messages:
                    if max_messages is not None and writer.messages >= max_messages:
                        break
                    writer.write(to_record(message))
