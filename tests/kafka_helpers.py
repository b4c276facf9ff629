"""Plain aiokafka helpers for the integration tests (no roadstream code on the reading side)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

MAX_BYTES = 8 << 20


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes,
                  list[tuple[str, bytes]]]]) -> None:
    """Send (key, value, headers) items and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False,
                                max_request_size=MAX_BYTES, acks="all")
    await producer.start()
    try:
        for key, value, headers in items:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def collect(bootstrap: str, topic: str, want: Callable[[ConsumerRecord], bool], count: int,
                  timeout_s: float = 20.0) -> list[ConsumerRecord]:
    """Read `topic` from the start until `count` records match `want` (or the timeout)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_bytes=MAX_BYTES * 2, max_partition_fetch_bytes=MAX_BYTES)
    await consumer.start()
    found: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(r for r in records if want(r))
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return found


def header(record: ConsumerRecord, name: str) -> str | None:
    """First header of that name as text."""
    for k, v in record.headers or ():
        if k == name:
            return bytes(v).decode()
    return None
