"""Subscriptions: consuming a topic record by record or in micro-batches, with the DLQ guard.

Every subscription gets the raw record (FastStream does not decode values: bad bytes are ours
to dead-letter) and commits at least once: an offset is committed after its handler returned,
that is after its publishes were acknowledged. A handler's error dead-letters the record; a
failure to reach Kafka is not committed, so the record is delivered again, after a bounded
exponential backoff (one per subscription, `delivery.Backoff`), and logged once per error
class and interval rather than once per attempt.

FastStream owns the consumers. Four things it has no API for are done on the aiokafka consumer
it exposes (the subscriber's and the message's public ``consumer`` attribute), each with the
client's public methods only; the comment at each says why:

- which partitions a replica holds (`/healthz`): ``assignment()``;
- waiting until the group has formed and the start positions are resolved: ``position()``;
- topping a batch up with the records that arrived while the last one was handled:
  ``getmany()``;
- rewinding those extra records when the batch must be redelivered: ``seek()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.broker.clients import consumer_kwargs
from services.messages import TopicSpec
from services.runtime.deadletter import DeadLetters
from services.runtime.delivery import Backoff, Record, is_infrastructure_error
from services.runtime.health import GroupConsumer
from services.runtime.logs import RateLimitedLog
from services.runtime.metrics import ServiceMetrics
from services.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Record], Awaitable[None]]
BatchHandler = Callable[[list[Record]], Awaitable[None]]

#: Consumer options FastStream sets itself (commits follow the ack policy; heartbeats its own).
FASTSTREAM_OWNED = frozenset({"enable_auto_commit", "heartbeat_interval_ms"})


def rewind(consumer: AIOKafkaConsumer, raws: list[Any]) -> None:
    """Seek each partition of `raws` back to its earliest record (a batch left unhandled)."""
    earliest: dict[TopicPartition, int] = {}
    for raw in raws:
        tp = TopicPartition(raw.topic, raw.partition)
        earliest[tp] = min(raw.offset, earliest.get(tp, raw.offset))
    for tp, offset in earliest.items():
        consumer.seek(tp, offset)


def _text_headers(raw: Any) -> Any:
    """`raw` with every header value valid UTF-8 (undecodable bytes replaced)."""
    headers = [(k, bytes(v or b"").decode(errors="replace").encode()) for k, v in raw.headers]
    return dataclasses.replace(raw, headers=headers)


async def tolerant_parser(raw: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's parser, without dying of a header value that is not UTF-8.

    Kafka header values are bytes, and a producer in any language may send binary ones (a
    signature, say). FastStream decodes every header strictly, and an undecodable one would
    fail the whole delivery before our handler runs. Here FastStream sees text headers and
    `raw_message` stays the original record, so `Record.from_raw` keeps the exact bytes.
    """
    try:
        return await original(raw)
    except UnicodeDecodeError:
        batch = isinstance(raw, tuple | list)
        safe = tuple(_text_headers(r) for r in raw) if batch else _text_headers(raw)
        message = await original(safe)
        message.raw_message = raw
        return message


async def undecoded(message: Any) -> Any:
    """FastStream's decoder step, left out: handlers read the raw record (`Record.from_raw`)."""
    return message.body


class Subscriptions:
    """The subscriptions of one service on its broker.

    `watcher`: off the control path (monitor, audit), fetches may wait longer
    (`consumer_kwargs`). `start_from`: where a group without committed offsets starts.
    """

    def __init__(self, broker: KafkaBroker, settings: Settings, metrics: ServiceMetrics,
                 dead_letters: DeadLetters, *, watcher: bool, start_from: str) -> None:
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.watcher = watcher
        self.start_from = start_from
        #: Wall-clock time the last record (or batch) was taken [ns]; 0 before the first.
        self.last_message_ns = 0
        self._retry_log = RateLimitedLog(log)

    async def retry_later(self, spec: TopicSpec, backoff: Backoff, error: BaseException) -> None:
        """Count, log (rate-limited) and wait out one Kafka failure before the redelivery."""
        name = type(error).__name__
        self.metrics.retries.labels(self.metrics.service, spec.name, name).inc()
        delay_s = backoff.next_delay_s()
        self._retry_log.log(logging.WARNING, (spec.name, name),
                            "%s: Kafka unreachable while handling %s (%s: %s); retrying in "
                            "%.1f s", self.metrics.service, spec.name, name, error, delay_s)
        await asyncio.sleep(delay_s)

    def _consumer_options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        kwargs = {k: v for k, v in consumer_kwargs(self.settings, watcher=self.watcher).items()
                  if k not in FASTSTREAM_OWNED}
        kwargs["auto_offset_reset"] = self.start_from
        kwargs.update(overrides)
        return kwargs

    def add(self, spec: TopicSpec, handler: Handler, *, group_id: str, at_least_once: bool,
            **subscriber_kwargs: Any) -> None:
        """Subscribe `handler(record)` to a topic (see `ServiceRuntime.consume`)."""
        service = self.metrics.service

        # No body parameter: FastStream must not decode the value; bad bytes are ours to
        # dead-letter, and the raw record carries the original bytes.
        backoff = Backoff(self.settings.retry_backoff_max_s)

        async def guarded(msg: KafkaMessage) -> None:
            record = Record.from_raw(msg.raw_message)
            self.last_message_ns = time.time_ns()
            with self.metrics.handler_seconds.labels(service, spec.name).time():
                await self.handle_guarded(spec, handler, record, backoff)

        policy = AckPolicy.NACK_ON_ERROR if at_least_once else AckPolicy.ACK_FIRST
        self.broker.subscriber(spec.name, group_id=group_id, ack_policy=policy,
                               parser=tolerant_parser, decoder=undecoded,
                               **self._consumer_options(subscriber_kwargs))(guarded)

    def add_batch(self, spec: TopicSpec, handler: BatchHandler, *, group_id: str,
                  max_records: int, max_wait_ms: float, top_up_ms: float | None,
                  **subscriber_kwargs: Any) -> None:
        """Subscribe `handler(records)` to micro-batches (see `ServiceRuntime.consume_batch`)."""
        service = self.metrics.service
        backoff = Backoff(self.settings.retry_backoff_max_s)

        async def guarded(msg: KafkaMessage) -> None:
            raws = list(msg.raw_message) if isinstance(msg.raw_message, list | tuple) else [
                msg.raw_message]
            # FastStream's batch subscriber hands out one fetch; it cannot take a second one
            # for the same batch, so the top-up is a `getmany` on its consumer. Under
            # TestKafkaBroker the consumer is a stand-in: no top-up there.
            consumer = getattr(msg, "consumer", None)
            topped: list[Any] = []
            if top_up_ms is not None and isinstance(consumer, AIOKafkaConsumer):
                more = await consumer.getmany(timeout_ms=max(0, round(top_up_ms)),
                                              max_records=max_records)
                topped = [raw for part in more.values() for raw in part]
            records = [Record.from_raw(raw) for raw in raws + topped]
            self.last_message_ns = time.time_ns()
            with self.metrics.handler_seconds.labels(service, spec.name).time():
                try:
                    try:
                        await handler(records)
                    except Exception as error:
                        if is_infrastructure_error(error):
                            raise
                        for record in records:
                            await self.dead_letters.send(spec, record, error)
                except Exception as error:
                    # Kafka unreachable (in the handler or its dead letters): not committed
                    if is_infrastructure_error(error):
                        if topped and isinstance(consumer, AIOKafkaConsumer):
                            # FastStream's nack rewinds only the records it handed out.
                            rewind(consumer, raws + topped)
                        await self.retry_later(spec, backoff, error)
                    raise
            backoff.reset()
            self.metrics.handled.labels(service, spec.name).inc(len(records))

        self.broker.subscriber(spec.name, group_id=group_id, batch=True, max_records=max_records,
                               batch_timeout_ms=max(1, round(max_wait_ms)),
                               ack_policy=AckPolicy.NACK_ON_ERROR, parser=tolerant_parser,
                               decoder=undecoded,
                               **self._consumer_options(subscriber_kwargs))(guarded)

    async def handle_guarded(self, spec: TopicSpec, handler: Handler, record: Record,
                             backoff: Backoff) -> None:
        """Run a handler; dead-letter the record on any error but a Kafka outage.

        On an outage (in the handler or in its dead letter) the error propagates after
        `backoff`'s wait: the record is not committed and is delivered again.
        """
        try:
            try:
                await handler(record)
            except Exception as error:
                if is_infrastructure_error(error):
                    raise
                await self.dead_letters.send(spec, record, error)
        except Exception as error:
            if is_infrastructure_error(error):
                await self.retry_later(spec, backoff, error)
            raise  # not committed: delivered again once Kafka is back
        backoff.reset()
        self.metrics.handled.labels(self.metrics.service, spec.name).inc()

    def _consumers(self) -> list[AIOKafkaConsumer | None]:
        # FastStream has no API for a subscriber's assignment or positions; its subscribers
        # expose their aiokafka consumer (None until started), whose public methods tell.
        return [getattr(sub, "consumer", None) for sub in self.broker.subscribers]

    def group_consumers(self) -> list[GroupConsumer]:
        """Each started subscriber's consumer with its group id (for the health watch)."""
        return [(str(getattr(sub, "group_id", "") or ""), consumer)
                for sub in self.broker.subscribers
                if isinstance(consumer := getattr(sub, "consumer", None), AIOKafkaConsumer)]

    def assigned_partitions(self) -> dict[str, list[int]]:
        """The partitions this replica's consumers hold now, by topic (empty while joining)."""
        held: dict[str, list[int]] = {}
        for consumer in self._consumers():
            for tp in consumer.assignment() if consumer is not None else ():
                held.setdefault(tp.topic, []).append(tp.partition)
        return {topic: sorted(parts) for topic, parts in sorted(held.items())}

    async def wait_assigned(self, timeout_s: float) -> bool:
        """Wait until every consumer holds partitions and knows its start positions.

        FastStream's start returns before the groups have formed, and has no readiness hook;
        resolving each position here also pins ``latest`` to the end as of now. False when
        `timeout_s` passes first.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self._consumers()
            consumers = [c for c in found if c is not None and c.assignment()]
            if len(consumers) == len(found):
                try:
                    for c in consumers:
                        for tp in c.assignment():
                            await asyncio.wait_for(c.position(tp),
                                                   max(deadline - time.monotonic(), 0.01))
                except (TimeoutError, KafkaError) as exc:  # a rebalance moved it: look again
                    log.debug("position not resolved yet: %s", exc)
                else:
                    return True
            await asyncio.sleep(0.05)
        return False
