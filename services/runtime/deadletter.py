"""Dead-lettering: a record a handler rejected goes to `<topic>.dlq`, with a safety event.

The dead letter carries the original bytes and key, the original headers, and the DLQ error
headers of the registry (`DLQ_HEADERS`: source topic, partition and offset, error class and
message, service, time). `roadstream_dead_letters_total` counts it, and an aggregated
`dead_letter` warning on `safety.events` (`deadletter_events`) references it.

Poison is not an outage. When the dead letter itself is refused for a record-level reason
(too large, invalid: `delivery.is_record_error`), a truncated copy is sent instead: the value
cut to fit `max_message_bytes`, with `TRUNCATION_HEADERS` saying so and giving the original
size; if even a small copy is refused, the record is skipped with a `record_skipped` event.
Either way `send` returns and the record's offset moves on. Only a failure to reach Kafka
propagates (the record is then delivered again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import Counter

from services.messages import DLQ_HEADERS, DLQ_TRUNCATION_HEADERS, Payload, TopicSpec
from services.runtime.deadletter_events import (
    DEAD_LETTER,
    MAX_ERROR_CHARS,
    RECORD_SKIPPED,
    WINDOW_S,
    DeadLetterEvents,
)
from services.runtime.delivery import Record, is_record_error
from services.runtime.logs import RateLimitedLog

log = logging.getLogger(__name__)

#: Headers of a truncated dead letter, besides the DLQ error headers: that it was cut, the
#: original value's size [bytes], and why the full copy was refused (error class: message).
TRUNCATION_HEADERS: Final = DLQ_TRUNCATION_HEADERS
#: Room left for the headers the client library and tracing add to every publish [bytes].
PUBLISH_OVERHEAD_BYTES = 4096
#: The value bound of the last-chance copy, which also leaves out the original headers
#: (they may be what is too large) [bytes].
SMALL_COPY_BYTES = 64 << 10
#: Least time between two flush attempts of the event windows [s] (bounds a retry loop).
MIN_FLUSH_WAIT_S = 0.05

#: publish(value, topic, key, headers): sends one record and waits for its acknowledgement.
Publish = Callable[[bytes, str, bytes | None, dict[str, str]], Awaitable[object]]


def dead_letter_headers(record: Record, error: BaseException, service: str) -> dict[str, str]:
    """The original headers plus the DLQ error headers (see the registry)."""
    message = str(error)[:MAX_ERROR_CHARS] or type(error).__name__
    values = (record.topic, str(record.partition), str(record.offset), type(error).__name__,
              message, service, str(time.time_ns()))
    headers = {k: v for k, v in record.header_map().items() if not k.startswith("dlq-")}
    headers.update(dict(zip(DLQ_HEADERS, values, strict=True)))
    return headers


def record_size(key: bytes | None, value: bytes, headers: dict[str, str]) -> int:
    """The size the producer checks against `max_request_size` for this record [bytes]."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(
        key, value, [(k, v.encode()) for k, v in headers.items()]))


def truncated_copies(record: Record, headers: dict[str, str], produce_error: BaseException,
                     max_message_bytes: int) -> list[tuple[bytes, dict[str, str]]]:
    """The copies to try, in order, when the full dead letter was refused: (value, headers).

    First the value cut to what fits `max_message_bytes` beside all headers; then a small copy
    (`SMALL_COPY_BYTES`) with the DLQ headers only, for a broker whose own limit is lower
    or headers that are themselves too large. Both carry `TRUNCATION_HEADERS`.
    """
    note = dict(zip(TRUNCATION_HEADERS, (
        "true", str(len(record.value)),
        f"{type(produce_error).__name__}: {produce_error}"[:MAX_ERROR_CHARS]), strict=True))
    copies = []
    full = {**headers, **note}
    room = (max_message_bytes - record_size(record.key, b"", full)
            - PUBLISH_OVERHEAD_BYTES - 8)  # 8: the value's length prefix, at most
    if 0 < room < len(record.value):
        copies.append((record.value[:room], full))
    small = {k: v for k, v in headers.items() if k in DLQ_HEADERS} | note
    copies.append((record.value[:SMALL_COPY_BYTES], small))
    return copies


class DeadLetters:
    """Sends rejected records of one service to their topic's DLQ, and raises their events.

    `publish` sends a record (the runtime's broker); `emit` publishes a safety event (the
    runtime's, traced and acknowledged like any other publish); `counter` is
    `roadstream_dead_letters_total`, `skipped` counts the records not even a truncated copy
    of could be written. `max_message_bytes` bounds a truncated copy. Events are aggregated
    over `window_s` and flushed at each window's end and by `flush` (at stop).
    """

    def __init__(self, service: str, publish: Publish, counter: Counter,
                 emit: Callable[[Payload], Awaitable[None]], run_id: str = "", *,
                 max_message_bytes: int, skipped: Counter | None = None,
                 window_s: float = WINDOW_S) -> None:
        self.service = service
        self.run_id = run_id
        self.max_message_bytes = max_message_bytes
        self._publish = publish
        self._counter = counter
        self._skipped = skipped
        self.events = DeadLetterEvents(service, emit, window_s=window_s, run_id=run_id)
        self._log = RateLimitedLog(log)
        self._flusher: asyncio.Task[None] | None = None

    async def send(self, spec: TopicSpec, record: Record, error: BaseException) -> None:
        """Send the original bytes to `<topic>.dlq` with error headers, and count an event.

        A record-level refusal sends a truncated copy, or skips the record (see the module).
        Raises what publishing raises when Kafka is unreachable: the record is then not
        committed and is delivered again.
        """
        error_class = type(error).__name__
        headers = dead_letter_headers(record, error, self.service)
        try:
            await self._publish(record.value, spec.dlq, record.key, headers)
        except Exception as refused:
            if not is_record_error(refused):
                raise
            kept = await self._send_truncated(spec, record, headers, refused)
            type_ = DEAD_LETTER if kept else RECORD_SKIPPED
            self.events.add(type_, record, error, dlq_topic=spec.dlq, truncated=kept,
                            produce_error=refused)
            if not kept:
                if self._skipped is not None:
                    self._skipped.labels(self.service, spec.name, error_class).inc()
                self._schedule_flush()
                return
        else:
            self.events.add(DEAD_LETTER, record, error, dlq_topic=spec.dlq)
        self._counter.labels(self.service, spec.name, error_class).inc()
        self._log.log(logging.WARNING, (spec.name, error_class),
                      "%s: %s[%d]@%d dead-lettered: %s: %s", self.service, record.topic,
                      record.partition, record.offset, error_class,
                      str(error)[:MAX_ERROR_CHARS])
        self._schedule_flush()

    async def _send_truncated(self, spec: TopicSpec, record: Record, headers: dict[str, str],
                              refused: BaseException) -> bool:
        """Try the truncated copies in turn; True once one is written, False if none is."""
        last = refused
        for value, copy_headers in truncated_copies(record, headers, refused,
                                                    self.max_message_bytes):
            try:
                await self._publish(value, spec.dlq, record.key, copy_headers)
            except Exception as again:
                if not is_record_error(again):
                    raise
                last = again
                continue
            self._log.log(logging.WARNING, ("truncated", spec.name, type(refused).__name__),
                          "%s: the dead letter of %s[%d]@%d (%d bytes) was refused (%s); "
                          "sent its first %d bytes", self.service, record.topic,
                          record.partition, record.offset, len(record.value),
                          type(refused).__name__, len(value))
            return True
        self._log.log(logging.ERROR, ("skipped", spec.name, type(last).__name__),
                      "%s: %s[%d]@%d skipped: not even a truncated copy could be "
                      "dead-lettered: %s: %s", self.service, record.topic, record.partition,
                      record.offset, type(last).__name__, last)
        return False

    def _schedule_flush(self) -> None:
        """Have the open windows emitted when they end (one task, alive while any is open)."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_when_due())

    async def _flush_when_due(self) -> None:
        while (due_s := self.events.next_due_s()) is not None:
            await asyncio.sleep(max(MIN_FLUSH_WAIT_S, due_s - time.monotonic()))
            try:
                await self.events.flush()
            except Exception as exc:  # Kafka unreachable: the windows stay for the next try
                self._log.log(logging.WARNING, ("flush", type(exc).__name__),
                              "%s: %d dead-letter events wait for Kafka: %s: %s",
                              self.service, self.events.pending, type(exc).__name__, exc)
                await asyncio.sleep(self.events.window_s)

    async def flush(self) -> None:
        """Emit every open window now (at stop, and in tests); stop the scheduled flush.

        Raises what emitting raises (Kafka unreachable); the windows not emitted stay.
        """
        flusher, self._flusher = self._flusher, None
        if flusher is not None and flusher is not asyncio.current_task():
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        await self.events.flush(everything=True)
