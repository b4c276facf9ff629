"""Tracing: one OpenTelemetry tracer provider per service, W3C trace context in Kafka headers.

`ServiceRuntime` puts FastStream's `KafkaTelemetryMiddleware` on its broker, so every consume
and publish is a span and every published message carries a `traceparent` header: a publish
inside a handler continues the consumed message's trace without any code in the handler.
Where that automatic parent is not the right one, the service names the parent:

- a publish outside the handler that caused it (a timer, a producer loop, another record's
  handler): put that parent's `traceparent` in the publish's headers (`traceparent_of` the
  handler's context, kept); `ExplicitParentMiddleware` makes it the publish span's parent
  (FastStream alone would overwrite it with the current context's);
- a batch subscriber: FastStream gives the whole batch one new trace (linked to each
  message); `Tracing.record_span` continues one record's own trace for that record's work.

Export is optional: with `otlp_endpoint` set, spans are batched to `<endpoint>/v1/traces`
(OTLP/HTTP, protobuf) by a background thread; without it spans are still made (ids, sampled
flag) but handed to no processor, so context propagates at the cost of building the span
objects only. `Tracing.shutdown` flushes the exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from importlib import metadata
from typing import Any

from faststream import BaseMiddleware
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.response import KafkaPublishCommand
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_NAMESPACE,
    SERVICE_VERSION,
    Resource,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.runtime.delivery import Record
from services.settings import Settings

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
#: OpenTelemetry's propagator refuses (and logs) longer ones; W3C version 00 is 55 characters.
MAX_TRACEPARENT_CHARS = 512
#: The logger of that refusal: FastStream's consumer-side extraction still reaches it.
PROPAGATION_LOGGER = "opentelemetry.trace.propagation.tracecontext"
TRACES_PATH = "/v1/traces"
INSTRUMENTATION = "roadstream"
FLUSH_WAIT_S = 3.0  # longest a stopping service waits for its last spans to be exported [s]
# W3C Trace Context on purpose, not the global propagator: what crosses Kafka must not depend
# on OTEL_PROPAGATORS of whichever process reads it (FastStream uses this propagator too).
_PROPAGATOR = TraceContextTextMapPropagator()


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector base URL (kept when it already ends in /v1/traces)."""
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def _version() -> str:
    try:
        return metadata.version("roadstream")
    except metadata.PackageNotFoundError:  # a source checkout that was never installed
        return "0+unknown"


def build_tracer_provider(service: str, settings: Settings, *,
                          exporter: SpanExporter | None = None) -> TracerProvider:
    """A tracer provider whose resource names `service`; exporting when configured.

    `exporter` overrides the OTLP exporter the settings would build (tests). The sampler is
    the SDK default (parent-based, always on): a sampled `traceparent` keeps being sampled,
    so one exporting service never breaks another's traces. Nothing is set globally: every
    service of a `roadstream run` process has its own provider and resource.
    """
    resource = Resource.create({
        SERVICE_NAME: service,
        SERVICE_NAMESPACE: "roadstream",
        SERVICE_VERSION: _version(),
        SERVICE_INSTANCE_ID: f"{settings.client_id}-{service}@{socket.gethostname()}:{os.getpid()}",
    })
    # shutdown_on_exit=False: ServiceRuntime.stop shuts it down; an atexit hook per provider
    # would also keep every provider a test process ever built alive.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if exporter is None and settings.otlp_endpoint is not None:
        # Imported here: a service that exports nothing never loads requests and protobuf.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        log.info("%s: exporting spans to %s", service, otlp_traces_url(settings.otlp_endpoint))
        exporter = OTLPSpanExporter(endpoint=otlp_traces_url(settings.otlp_endpoint),
                                    headers=settings.otlp_header_map or None)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def context_from(traceparent: str | None) -> Context:
    """The context whose (remote) parent is the span a `traceparent` names; empty if invalid.

    One longer than OpenTelemetry's limit is invalid without a word: the propagator would log
    a warning for each, and a producer can send such a header on every frame.
    """
    if not traceparent or len(traceparent) > MAX_TRACEPARENT_CHARS:
        return Context()
    return _PROPAGATOR.extract({TRACEPARENT: traceparent})


def traceparent_of(context: Context | None = None) -> str:
    """The `traceparent` of a context's span (default: the current one); "" when it has none."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return carrier.get(TRACEPARENT, "")


class ExplicitParentMiddleware(BaseMiddleware[KafkaPublishCommand, Any]):
    """A `traceparent` the publisher put in the headers is the parent of the publish.

    Goes before (outside) FastStream's telemetry middleware, which parents a publish on the
    current context and overwrites the header. With no (valid) header, nothing changes.
    """

    async def publish_scope(self, call_next: Callable[[KafkaPublishCommand], Awaitable[Any]],
                            cmd: KafkaPublishCommand) -> Any:
        """Publish with the header's span as the current context."""
        parent = context_from((cmd.headers or {}).get(TRACEPARENT))
        if not parent:  # none, or not a valid W3C traceparent: the current context stays
            return await call_next(cmd)
        token = otel_context.attach(parent)
        try:
            return await call_next(cmd)
        finally:
            otel_context.detach(token)


class Tracing:
    """A service's tracer provider, its broker middlewares and per-record spans."""

    def __init__(self, service: str, settings: Settings, *,
                 exporter: SpanExporter | None = None) -> None:
        self.service = service
        self.exporting = exporter is not None or settings.otlp_endpoint is not None
        self.provider = build_tracer_provider(service, settings, exporter=exporter)
        self.tracer = self.provider.get_tracer(INSTRUMENTATION, _version())
        #: For the broker, in this order: explicit parents first, then FastStream's spans.
        self.middlewares = (ExplicitParentMiddleware,
                            KafkaTelemetryMiddleware(tracer_provider=self.provider))
        self._closed = False

    @contextlib.contextmanager
    def record_span(self, record: Record, *, start_ns: int | None = None) -> Iterator[Span]:
        """A `<topic> process` span in the record's own trace, current for the block.

        Its parent is the record's `traceparent`; a record without one (or with an invalid
        one) starts a trace of its own, as FastStream does for a single message. It links to
        the current span, the batch's. `start_ns` [ns, epoch] backdates the start, e.g. to
        the batch's arrival, so the span covers the record's whole stay.
        """
        parent = context_from(record.header(TRACEPARENT))
        current = trace.get_current_span().get_span_context()
        links = [Link(current)] if current.is_valid else None
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka", "messaging.operation": "process",
            "messaging.destination.name": record.topic,
            "messaging.kafka.destination.partition": record.partition,
            "messaging.kafka.message.offset": record.offset}
        with self.tracer.start_as_current_span(
                f"{record.topic} process", context=parent, kind=SpanKind.CONSUMER,
                links=links, attributes=attributes, start_time=start_ns) as span:
            yield span

    async def shutdown(self, timeout_s: float = FLUSH_WAIT_S) -> bool:
        """Flush spans not yet exported and stop the exporter; False if that outlasted `timeout_s`.

        Idempotent. An unreachable collector makes the exporter retry for seconds: the flush
        runs on a daemon thread and the service stops waiting after `timeout_s` [s] (those
        spans are lost) instead of holding up its shutdown or the process's exit.
        """
        if self._closed:
            return True
        self._closed = True
        if not self.exporting:
            self.provider.shutdown()  # no processor: nothing to wait for
            return True
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def flush() -> None:
            try:
                self.provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone by now
                    loop.call_soon_threadsafe(finished)

        threading.Thread(target=flush, name=f"{self.service}-span-flush", daemon=True).start()
        try:
            await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            log.warning("%s: spans not flushed within %.0f s (collector unreachable?); "
                        "dropping them", self.service, timeout_s)
            return False
        return True
