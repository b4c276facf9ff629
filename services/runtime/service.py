"""The service runtime: a FastStream Kafka broker with settings, metrics, health, DLQ and shutdown.

A service is a thin loop over pure code::

    runtime = ServiceRuntime("perception", settings, bootstrap)

    @runtime.consume(CAMERA_FRAMES)
    async def on_frame(record: Record) -> None:
        result = pure_function(record.value)         # may raise: the record is dead-lettered
        await runtime.publish(PERCEPTION_OBJECTS, result, key=record.key)

    await runtime.run()      # until SIGINT/SIGTERM, then drains and stops

Offsets are committed only after the handler returns, that is after its publishes were
acknowledged by the brokers (at-least-once); a failure to reach Kafka is not committed and
the message is delivered again.

The roles live in modules of their own: `subscription` (consuming, micro-batches, retries),
`deadletter` (and its aggregated events), `security` (SASL/TLS), `metrics`, `health` (broker
reachability, stuck consumers) and `http` (`/metrics`, `/healthz`), `logs` (rate-limited
logging), `lifecycle` (start, drain, stop) and `tracing`. This class puts them together.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry

from services.broker.producers import ProbingKafkaBroker
from services.messages import SAFETY_EVENTS, Payload, TopicSpec
from services.runtime.deadletter import DeadLetters
from services.runtime.delivery import Record
from services.runtime.event_signing import event_signer
from services.runtime.health import HealthWatch
from services.runtime.http import OpsServer
from services.runtime.lifecycle import Lifecycle, Part
from services.runtime.logs import kafka_client_loggers, rate_limit_loggers
from services.runtime.metrics import ServiceMetrics
from services.runtime.security import faststream_security
from services.runtime.subscription import BatchHandler, Handler, Subscriptions
from services.runtime.tracing import PROPAGATION_LOGGER, Tracing
from services.settings import Settings

log = logging.getLogger(__name__)

S = TypeVar("S")
START_POSITIONS = ("earliest", "latest")


#: How long a handler in flight may take to finish when the service stops [s] (FastStream's).
GRACEFUL_S = 10.0
#: How long one subscriber may take to stop: its handler's grace, then leaving its group [s].
SUBSCRIBER_STOP_S = GRACEFUL_S + 10.0


class ServiceRuntime:
    """A roadstream service: FastStream Kafka broker + ops endpoint + DLQ policy + lifecycle.

    `watcher`: off the control path (monitor, audit): fetches may wait longer. `start_from`:
    where a consumer group without committed offsets starts: ``earliest`` (a service that must
    not miss what was published before it joined) or ``latest`` (a fresh group of one run,
    e.g. the main job's, which must not work through older runs' history first). `broker`:
    an existing FastStream broker to serve on (tests); by default one of its own.
    """

    def __init__(self, name: str, settings: Settings, bootstrap: str, *,
                 registry: CollectorRegistry | None = None, run_id: str = "",
                 broker: KafkaBroker | None = None, start_from: str = "earliest",
                 watcher: bool = False) -> None:
        if start_from not in START_POSITIONS:
            raise ValueError(f"start_from must be 'earliest' or 'latest', not {start_from!r}")
        self.name = name
        self.settings = settings
        self.run_id = run_id
        self.watcher = watcher
        self.start_from = start_from
        self.registry = registry or CollectorRegistry()
        self.metrics = ServiceMetrics(self.registry, name)
        # Safety events are signed when an events key is configured (event_signing.py); the
        # epoch is this start.
        self.event_signer = event_signer(settings)
        if self.event_signer is None:
            log.warning("%s: no events key (ROADSTREAM_EVENTS_KEYS): safety events go out "
                        "unsigned, and an audit trail that verifies them will refuse them", name)
        # Every consume and publish is a span; published messages carry `traceparent`.
        self.tracing = Tracing(name, settings)
        # Idempotent where the cluster grants it (Apache Kafka), not on the embedded broker.
        self.broker = broker or ProbingKafkaBroker(
            settings, bootstrap, name,
            client_id=f"{settings.client_id}-{name}",
            acks="all",
            max_request_size=settings.max_message_bytes,
            security=faststream_security(settings),
            middlewares=[KafkaPrometheusMiddleware(registry=self.registry, app_name=name,
                                                   metrics_prefix="roadstream"),
                         *self.tracing.middlewares],
            graceful_timeout=GRACEFUL_S,
            logger=logging.getLogger(f"roadstream.{name}"),
        )
        # An outage makes the Kafka client log each reconnect attempt and FastStream each
        # retried record's traceback, and a hostile producer's oversized traceparent headers
        # make OpenTelemetry log each record: once per kind and interval is enough to tell.
        rate_limit_loggers([*kafka_client_loggers(), f"roadstream.{name}", PROPAGATION_LOGGER])
        self.dead_letters = DeadLetters(name, self._publish_raw, self.metrics.dead_letters,
                                        self.emit, run_id,
                                        max_message_bytes=settings.max_message_bytes,
                                        skipped=self.metrics.skipped,
                                        window_s=settings.dead_letter_window_s)
        self.subscriptions = Subscriptions(self.broker, settings, self.metrics,
                                           self.dead_letters, watcher=watcher,
                                           start_from=start_from)
        self.watch = HealthWatch(self.broker.ping, self.subscriptions.group_consumers,
                                 broker_timeout_s=settings.health_broker_timeout_s,
                                 stall_s=settings.health_stall_s)
        self.ops = OpsServer(self.registry, self.health, settings.metrics_host,
                             settings.metrics_port)
        # Up in this order, down in reverse: the tracer outlives the broker, whose last
        # publishes are spans too, and health answers until the very end.
        self.lifecycle = Lifecycle(name, [
            Part("ops endpoint", self.ops.start, self.ops.stop),
            Part("tracing", stop=self._shutdown_tracing),
            Part("broker", self.broker.start, self._stop_broker),
            Part("health watch", self.watch.start, self.watch.stop),
        ])

    async def _shutdown_tracing(self) -> None:
        await self.tracing.shutdown()

    async def _stop_broker(self) -> None:
        """Drain the handlers, emit the open dead-letter event windows, then disconnect.

        FastStream's stop drains and disconnects in one call; the events must go out between
        the two (handlers draining may still dead-letter), so the subscribers stop first.
        """
        async def stop(subscriber: Any) -> None:
            try:
                await asyncio.wait_for(subscriber.stop(), SUBSCRIBER_STOP_S)
            except TimeoutError:
                log.warning("%s: a subscriber took over %g s to stop; going on", self.name,
                            SUBSCRIBER_STOP_S)
            except Exception as exc:  # the others must still drain, and the broker stop
                log.warning("%s: stopping a subscriber failed: %s: %s", self.name,
                            type(exc).__name__, exc)

        # Together: each drains its own handler and leaves its group, and a watcher has one
        # per topic; one after the other, their waits on the broker add up.
        await asyncio.gather(*(stop(s) for s in self.broker.subscribers))
        try:
            await self.dead_letters.flush()
        except Exception as exc:
            log.warning("%s: %d dead-letter events lost at stop: %s: %s", self.name,
                        self.dead_letters.events.pending, type(exc).__name__, exc)
        await self.broker.stop()

    async def _publish_raw(self, value: bytes, topic: str, key: bytes | None,
                           headers: dict[str, str]) -> None:
        await self.broker.publish(value, topic=topic, key=key, headers=headers)

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

    def instance_group(self, spec: TopicSpec) -> str:
        """A consumer group of this service instance alone on ``spec``: ``topic_group`` and a
        random instance id. Every instance then reads every record (a command for each
        replica, an end of run each must hear), where one shared group would split them."""
        return f"{self.topic_group(spec)}.{uuid.uuid4().hex[:12]}"

    def health(self) -> dict[str, object]:
        """The `/healthz` document: ``status`` ``ok`` (HTTP 200) only while serving, ready.

        While serving, ``status`` is ``not_ready`` with ``reasons`` when the broker has not
        answered for `health_broker_timeout_s` or a partition is stuck (`health_stall_s`);
        ``broker`` and ``stalled`` give the figures.
        """
        last_ns = self.subscriptions.last_message_ns
        findings = self.watch.findings()
        reasons = findings.pop("reasons")
        status: str = self.lifecycle.phase
        document: dict[str, object] = {
            "service": self.name, "status": status,
            "last_message_age_s": (time.time_ns() - last_ns) / 1e9 if last_ns else None,
            "partitions": self.assigned_partitions(), **findings}
        if status == "ok" and reasons:
            document["status"] = "not_ready"
            document["reasons"] = reasons
        return document

    def assigned_partitions(self) -> dict[str, list[int]]:
        """The partitions this replica's consumers hold now, by topic (empty while joining).

        Operators see which replica serves which partitions; after a rebalance, the replicas'
        lists are disjoint and together cover the topic.
        """
        return self.subscriptions.assigned_partitions()

    def consume(self, spec: TopicSpec, *, group_id: str | None = None, at_least_once: bool = True,
                **subscriber_kwargs: Any) -> Callable[[Handler], Handler]:
        """Subscribe `handler(record)` to a topic with at-least-once commits and the DLQ guard.

        At least once, each record's offset is committed after its handler returned: a broker
        round trip per record, which bounds the rate one consumer can take. With
        ``at_least_once=False`` the client commits in the background every few seconds (a
        restart may skip what was in flight): for inputs only the newest of which matters,
        such as the simulator's controls. `subscriber_kwargs` override the consumer options.
        """

        def decorate(handler: Handler) -> Handler:
            self.subscriptions.add(spec, handler, group_id=group_id or self.topic_group(spec),
                                   at_least_once=at_least_once, **subscriber_kwargs)
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
        records itself (`dead_letter`); an error escaping it dead-letters the whole batch.

        `top_up_ms`: what the consumer hands out first was fetched when the previous batch was
        taken (a partition is fetched again only once its buffered records are consumed), so
        behind its input a handler would always see records one handling time old. With this
        set, the batch is topped up with one more fetch of up to `top_up_ms`, which holds the
        records that came meanwhile; a handler that serves only each stream's newest record
        (perception) then serves fresh ones.
        """

        def decorate(handler: BatchHandler) -> BatchHandler:
            self.subscriptions.add_batch(spec, handler, group_id=group_id or self.topic_group(spec),
                                         max_records=max_records, max_wait_ms=max_wait_ms,
                                         top_up_ms=top_up_ms, **subscriber_kwargs)
            return handler

        return decorate

    async def dead_letter(self, spec: TopicSpec, record: Record, error: BaseException) -> None:
        """Send the original bytes to `<topic>.dlq` with error headers, and count an event.

        Events are aggregated (`dead_letter_window_s`); a copy too large for Kafka is
        truncated, or the record skipped (`services.runtime.deadletter`).
        """
        await self.dead_letters.send(spec, record, error)

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
        """Publish a safety event, signed with the events key when one is configured.

        Its counter is per event source (``event.source``) within this start's epoch.
        """
        vehicle = getattr(event, "vehicle_id", "") or ""
        if self.event_signer is None:
            await self.publish(SAFETY_EVENTS, event, key=vehicle or None)
            return
        body = event.encode()
        source = str(getattr(event, "source", "") or self.name)
        signed = self.event_signer.sign_value(source, body)
        # the exact bytes that were signed, with the content type a payload gets
        await self.publish(SAFETY_EVENTS, body, key=vehicle or None,
                           headers={"content-type": "application/json", **signed.headers})

    def background(self, loop: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run `loop(stop_event)` while the service runs (e.g. a producer's main loop).

        When the loop returns, the service stops.
        """
        self.lifecycle.background(loop)

    def on_stop(self, close: Callable[[], None]) -> None:
        """Have `stop` call `close` once the handlers are drained (a service's own resources)."""
        self.lifecycle.on_stop(close)

    async def start(self) -> None:
        """Connect, start the ops endpoint, the subscribers and the background loops."""
        await self.lifecycle.start()
        log.info("%s: serving (metrics and health on %s:%d)", self.name,
                 self.settings.metrics_host, self.ops.port)

    async def wait_assigned(self, timeout_s: float = 30.0) -> bool:
        """Wait until every subscriber's consumer has joined its group and holds partitions.

        A consumer group takes seconds to form; callers that must not miss the first messages
        (tests, the main job) wait for it. The start positions are resolved too, so that with
        ``start_from="latest"`` a message published after this returns is not skipped.
        Returns False when the timeout passes.
        """
        return await self.subscriptions.wait_assigned(timeout_s)

    async def stop(self) -> None:
        """Drain in-flight handlers, commit, and close (graceful shutdown)."""
        await self.lifecycle.stop()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until SIGINT/SIGTERM (or `stop` is set), then shut down gracefully."""
        await self.lifecycle.run(stop)


@dataclass(frozen=True)
class BuiltService(Generic[S]):
    """What a service's builder returns: the runtime to start, and the service it serves.

    `service`: the service's own object (its state and counters, for tests and benchmarks).
    `ready()`: facts to report once it serves (device, model version...); `counts()`: its
    final counts, read after it stopped. Both JSON-ready; a service without any leaves them.
    """

    runtime: ServiceRuntime
    service: S
    ready: Callable[[], dict[str, Any]] = field(default=dict)
    counts: Callable[[], dict[str, Any]] = field(default=dict)
