"""The service frame: a FastStream Kafka app with settings, metrics, health, DLQ and shutdown.

A service is a thin loop over pure code::

    frame = ServiceRuntime("perception", settings, bootstrap)

    @frame.consume(CAMERA_FRAMES)
    async def on_frame(record: Record) -> None:
        result = pure_function(record.value)         # may raise: the record is dead-lettered
        await frame.publish(PERCEPTION_OBJECTS, result, key=record.key)

    await frame.run()      # until SIGINT/SIGTERM, then drains and stops

Offsets are committed only after the handler returns, that is after its publishes were
acknowledged by the brokers (at-least-once); a failure to reach Kafka is not committed and
the message is delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.broker.clients import consumer_kwargs, security_kwargs
from services.runtime.delivery import Record, dead_letter_headers, is_infrastructure_error
from services.runtime.events import safety_event
from services.runtime.http import OpsServer
from services.runtime.tracing import Tracing
from services.messages import SAFETY_EVENTS, EventRefs, Payload, Severity, TopicSpec
from services.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Record], Awaitable[None]]
BatchHandler = Callable[[list[Record]], Awaitable[None]]


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


def faststream_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's security object for the configured protocol (None for PLAINTEXT)."""
    kw = security_kwargs(settings)
    ssl_context = kw.get("ssl_context")
    use_ssl = settings.security_protocol in {"SSL", "SASL_SSL"}
    if settings.security_protocol.startswith("SASL"):
        cls = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256,
               "PLAIN": SASLPlaintext}[settings.sasl_mechanism]
        return cls(username=kw["sasl_plain_username"], password=kw["sasl_plain_password"],
                   ssl_context=ssl_context, use_ssl=use_ssl)
    if use_ssl:
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    return None


class ServiceMetrics:
    """Metrics every service has, on its own registry."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.handled = Counter("roadstream_messages_handled_total", "Messages handled",
                               ["service", "topic"], registry=registry)
        self.dead_letters = Counter("roadstream_dead_letters_total",
                                    "Messages sent to a dead-letter topic",
                                    ["service", "topic", "error"], registry=registry)
        self.handler_seconds = Histogram("roadstream_handler_duration_seconds",
                                         "Time in a message handler", ["service", "topic"],
                                         registry=registry)
        self.service = service


class ServiceRuntime:
    """A roadstream service: FastStream app + Kafka broker + ops endpoint + DLQ policy."""

    def __init__(self, name: str, settings: Settings, bootstrap: str, *,
                 registry: CollectorRegistry | None = None, run_id: str = "",
                 broker: KafkaBroker | None = None, start_from: str = "earliest",
                 watcher: bool = False) -> None:
        self.name = name
        # Off the control path (monitor, audit): fetches may wait longer (`consumer_kwargs`).
        self.watcher = watcher
        # Where a consumer group without committed offsets starts: "earliest" (a service that
        # must not miss what was published before it joined) or "latest" (a fresh group of one
        # run, e.g. the main job's, which must not work through older runs' history first).
        if start_from not in {"earliest", "latest"}:
            raise ValueError(f"start_from must be 'earliest' or 'latest', not {start_from!r}")
        self.start_from = start_from
        self.settings = settings
        self.run_id = run_id
        self.registry = registry or CollectorRegistry()
        self.metrics = ServiceMetrics(self.registry, name)
        # Every consume and publish is a span; published messages carry `traceparent`.
        self.tracing = Tracing(name, settings)
        self.broker = broker or KafkaBroker(
            bootstrap,
            client_id=f"{settings.client_id}-{name}",
            acks="all",
            enable_idempotence=False,  # the embedded broker has no InitProducerId
            max_request_size=settings.max_message_bytes,
            security=faststream_security(settings),
            middlewares=[KafkaPrometheusMiddleware(registry=self.registry, app_name=name,
                                                   metrics_prefix="roadstream"),
                         *self.tracing.middlewares],
            graceful_timeout=10.0,
            logger=logging.getLogger(f"roadstream.{name}"),
        )
        self.app = FastStream(self.broker, logger=logging.getLogger(f"roadstream.{name}"))
        self.ops = OpsServer(self.registry, self.health, settings.metrics_host,
                             settings.metrics_port)
        self._started = False
        self._stopping = False
        self._background: list[Callable[[asyncio.Event], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], None]] = []
        self._stop = asyncio.Event()
        self._last_message_ns = 0

    @property
    def group_id(self) -> str:
        """The prefix of this service's consumer groups: `<group prefix>.<service>`."""
        return f"{self.settings.group_prefix}.{self.name}"

    def topic_group(self, spec: TopicSpec) -> str:
        """The consumer group of one subscription: `<group prefix>.<service>.<topic>`.

        One group per topic: a group whose members subscribe to different topics rebalances
        whenever any of them joins, which stalls every topic of the service.
        """
        return f"{self.group_id}.{spec.name}"

    def health(self) -> dict[str, object]:
        """The `/healthz` document."""
        status = "ok" if self._started and not self._stopping else "starting"
        if self._stopping:
            status = "stopping"
        return {"service": self.name, "status": status,
                "last_message_age_s": (time.time_ns() - self._last_message_ns) / 1e9
                if self._last_message_ns else None,
                "partitions": self.assigned_partitions()}

    def assigned_partitions(self) -> dict[str, list[int]]:
        """The partitions this replica's consumers hold now, by topic (empty while joining).

        Operators see which replica serves which partitions; after a rebalance, the replicas'
        lists are disjoint and together cover the topic.
        """
        held: dict[str, list[int]] = {}
        for sub in self.broker.subscribers:
            consumer = getattr(sub, "consumer", None)
            for tp in consumer.assignment() if consumer is not None else ():
                held.setdefault(tp.topic, []).append(tp.partition)
        return {topic: sorted(parts) for topic, parts in sorted(held.items())}

    def consume(self, spec: TopicSpec, *, group_id: str | None = None, at_least_once: bool = True,
                **subscriber_kwargs: Any) -> Callable[[Handler], Handler]:
        """Subscribe `handler(record)` to a topic with at-least-once commits and the DLQ guard.

        At least once, each record's offset is committed after its handler returned: a broker
        round trip per record, which bounds the rate one consumer can take. With
        ``at_least_once=False`` the client commits in the background every few seconds (a
        restart may skip what was in flight): for inputs only the newest of which matters,
        such as the simulator's controls.
        """

        def decorate(handler: Handler) -> Handler:
            kwargs = {k: v for k, v in consumer_kwargs(self.settings, watcher=self.watcher).items()
                      if k not in {"enable_auto_commit", "heartbeat_interval_ms"}}
            kwargs["auto_offset_reset"] = self.start_from
            kwargs.update(subscriber_kwargs)

            # No body parameter: FastStream must not decode the value; bad bytes are ours to
            # dead-letter, and the raw record carries the original bytes.
            async def guarded(msg: KafkaMessage) -> None:
                record = Record.from_raw(msg.raw_message)
                self._last_message_ns = time.time_ns()
                with self.metrics.handler_seconds.labels(self.name, spec.name).time():
                    await self.handle_guarded(spec, handler, record)

            policy = AckPolicy.NACK_ON_ERROR if at_least_once else AckPolicy.ACK_FIRST
            self.broker.subscriber(spec.name, group_id=group_id or self.topic_group(spec),
                                   ack_policy=policy, parser=tolerant_parser, decoder=undecoded,
                                   **kwargs)(guarded)
            return handler

        return decorate

    def consume_batch(self, spec: TopicSpec, *, max_records: int, max_wait_ms: float,
                      group_id: str | None = None, top_up_ms: float | None = None,
                      **subscriber_kwargs: Any) -> Callable[[BatchHandler], BatchHandler]:
        """Subscribe `handler(records)` to micro-batches of a topic.

        A batch is every record already fetched, across partitions (cameras), up to
        `max_records`; when none is waiting the consumer polls for at most `max_wait_ms`. Under
        light load a frame is handled alone at once; under load batches fill. Offsets of the
        whole batch are committed after the handler returns. The handler dead-letters bad
        records itself (`frame.dead_letter`); an error escaping it dead-letters the whole batch.

        `top_up_ms`: what the consumer hands out first was fetched when the previous batch was
        taken (a partition is fetched again only once its buffered records are consumed), so
        behind its input a handler would always see records one handling time old. With this
        set, the batch is topped up with one more fetch of up to `top_up_ms`, which holds the
        records that came meanwhile; a handler that serves only each stream's newest record
        (perception) then serves fresh ones.
        """

        def decorate(handler: BatchHandler) -> BatchHandler:
            kwargs = {k: v for k, v in consumer_kwargs(self.settings, watcher=self.watcher).items()
                      if k not in {"enable_auto_commit", "heartbeat_interval_ms"}}
            kwargs["auto_offset_reset"] = self.start_from
            kwargs.update(subscriber_kwargs)

            async def guarded(msg: KafkaMessage) -> None:
                raws = list(msg.raw_message) if isinstance(msg.raw_message, list | tuple) else [
                    msg.raw_message]
                consumer = getattr(msg, "consumer", None)
                topped: list[Any] = []
                if top_up_ms is not None and isinstance(consumer, AIOKafkaConsumer):
                    more = await consumer.getmany(timeout_ms=max(0, round(top_up_ms)),
                                                  max_records=max_records)
                    topped = [raw for part in more.values() for raw in part]
                records = [Record.from_raw(raw) for raw in raws + topped]
                self._last_message_ns = time.time_ns()
                with self.metrics.handler_seconds.labels(self.name, spec.name).time():
                    try:
                        await handler(records)
                    except Exception as error:
                        if is_infrastructure_error(error):
                            if topped and isinstance(consumer, AIOKafkaConsumer):
                                rewind(consumer, raws + topped)  # FastStream rewinds only raws
                            raise
                        for record in records:
                            await self.dead_letter(spec, record, error)
                self.metrics.handled.labels(self.name, spec.name).inc(len(records))

            self.broker.subscriber(spec.name, group_id=group_id or self.topic_group(spec), batch=True,
                                   max_records=max_records,
                                   batch_timeout_ms=max(1, round(max_wait_ms)),
                                   ack_policy=AckPolicy.NACK_ON_ERROR, parser=tolerant_parser,
                                   decoder=undecoded, **kwargs)(guarded)
            return handler

        return decorate

    async def handle_guarded(self, spec: TopicSpec, handler: Handler, record: Record) -> None:
        """Run a handler; dead-letter the record on any error but a Kafka outage."""
        try:
            await handler(record)
        except Exception as error:
            if is_infrastructure_error(error):
                raise  # not committed: delivered again once Kafka is back
            await self.dead_letter(spec, record, error)
        self.metrics.handled.labels(self.name, spec.name).inc()

    async def dead_letter(self, spec: TopicSpec, record: Record, error: BaseException) -> None:
        """Send the original bytes to `<topic>.dlq` with error headers, and raise an event."""
        log.warning("%s: %s[%d]@%d dead-lettered: %s: %s", self.name, record.topic,
                    record.partition, record.offset, type(error).__name__, error)
        await self.broker.publish(record.value, topic=spec.dlq, key=record.key,
                                  headers=dead_letter_headers(record, error, self.name))
        self.metrics.dead_letters.labels(self.name, spec.name, type(error).__name__).inc()
        await self.emit(safety_event(
            source=self.name, type_="dead_letter", severity=Severity.WARNING,
            vehicle_id=(record.key or b"").decode(errors="replace").split("/")[0],
            details={"error_class": type(error).__name__, "error": str(error)[:1000],
                     "dlq_topic": spec.dlq},
            refs=EventRefs(topic=record.topic, partition=record.partition, offset=record.offset),
            run_id=self.run_id))

    async def publish(self, spec: TopicSpec, value: Payload | bytes, *, key: bytes | str | None,
                      headers: dict[str, str] | None = None) -> None:
        """Publish to a registry topic and wait for the brokers' acknowledgement."""
        if isinstance(value, Payload):
            if spec.value is not None and not isinstance(value, spec.value):
                raise TypeError(f"{spec.name} carries {spec.value.__name__}, "
                                f"not {type(value).__name__}")
            body = value.encode()
            headers = {"content-type": "application/json", **(headers or {})}
        else:
            body = value
        await self.broker.publish(body, topic=spec.name,
                                  key=key.encode() if isinstance(key, str) else key,
                                  headers=headers)

    async def emit(self, event: Payload) -> None:
        """Publish a safety event."""
        vehicle = getattr(event, "vehicle_id", "") or ""
        await self.publish(SAFETY_EVENTS, event, key=vehicle or None)

    def background(self, loop: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run `loop(stop_event)` while the service runs (e.g. a producer's main loop).

        When the loop returns, the service stops.
        """
        self._background.append(loop)

    async def _run_background(self, loop: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        try:
            await loop(self._stop)
        finally:
            self._stop.set()

    async def start(self) -> None:
        """Connect, start the ops endpoint, the subscribers and the background loops."""
        await self.ops.start()
        await self.broker.start()
        self._started = True
        self._tasks = [asyncio.create_task(self._run_background(b)) for b in self._background]
        log.info("%s: serving (metrics and health on %s:%d)", self.name,
                 self.settings.metrics_host, self.ops.port)

    async def wait_assigned(self, timeout_s: float = 30.0) -> bool:
        """Wait until every subscriber's consumer has joined its group and holds partitions.

        A consumer group takes seconds to form; callers that must not miss the first messages
        (tests, the main job) wait for it. The start positions are resolved too, so that with
        ``start_from="latest"`` a message published after this returns is not skipped.
        Returns False when the timeout passes.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [getattr(sub, "consumer", None) for sub in self.broker.subscribers]
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

    def on_stop(self, close: Callable[[], None]) -> None:
        """Have `stop` call `close` once the handlers are drained (a service's own resources)."""
        self._closers.append(close)

    async def stop(self) -> None:
        """Drain in-flight handlers, commit, and close (graceful shutdown)."""
        self._stopping = True
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        while self._closers:
            close = self._closers.pop()
            try:
                await asyncio.to_thread(close)
            except Exception:  # one resource failing to close must not keep the rest open
                log.exception("%s: closing %r failed", self.name, close)
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.tracing.shutdown()  # after the broker: its last publishes are spans too
        await self.ops.stop()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until SIGINT/SIGTERM (or `stop` is set), then shut down gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        await self.start()
        try:
            if stop is None:
                await self._stop.wait()
            else:
                await asyncio.wait([asyncio.create_task(stop.wait()),
                                    asyncio.create_task(self._stop.wait())],
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self.stop()
