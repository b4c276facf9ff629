"""Tracing: the provider with and without an OTLP endpoint, explicit parents, settings errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from faststream._internal.context import ContextRepo
from faststream.kafka.response import KafkaPublishCommand
from faststream.response.publish_type import PublishType
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.runtime.delivery import Record
from services.runtime.tracing import (
    ExplicitParentMiddleware,
    Tracing,
    build_tracer_provider,
    context_from,
    otlp_traces_url,
    traceparent_of,
)
from services.settings import Settings, SettingsError, load_settings

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


@dataclass
class ExportedSpan:
    """One span as an OTLP receiver got it (ids as lowercase hex)."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    links: list[str] = field(default_factory=list)  # trace ids of the links


class OtlpReceiver:
    """A tiny OTLP/HTTP collector on loopback: keeps every POST /v1/traces body."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.paths.append(self.path)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                receiver.bodies.append(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The collector's base URL (what ROADSTREAM_OTLP_ENDPOINT names)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[ExportedSpan]:
        """Every span received so far, decoded."""
        out: list[ExportedSpan] = []
        for body in self.bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for rs in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                for scope in rs.scope_spans:
                    out.extend(ExportedSpan(
                        service=attrs.get("service.name", ""), name=s.name, kind=s.kind,
                        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        links=[link.trace_id.hex() for link in s.links]) for s in scope.spans)
        return out

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def record(traceparent: str | None) -> Record:
    headers = ((("traceparent", traceparent.encode()),) if traceparent is not None else ())
    return Record(topic="camera.frames", partition=2, offset=41, key=b"ego/front", value=b"x",
                  headers=headers)


async def test_without_endpoint_context_propagates_and_nothing_is_exported() -> None:
    tracing = Tracing("perception", Settings())
    assert not tracing.exporting
    with tracing.tracer.start_as_current_span("child", context=context_from(TRACEPARENT)) as span:
        child = traceparent_of()
        recording = span.is_recording()
    assert recording  # a real span: ids and the sampled flag carry on downstream
    version, trace_id, span_id, flags = child.split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01")
    assert span_id not in (PARENT, "0" * 16)
    assert tracing.provider.resource.attributes["service.name"] == "perception"
    await tracing.shutdown()
    await tracing.shutdown()  # idempotent


async def test_with_endpoint_spans_are_exported_to_v1_traces(receiver: OtlpReceiver) -> None:
    settings = load_settings(otlp_endpoint=receiver.endpoint, otlp_headers="x-team=perc%20eption")
    tracing = Tracing("planning", settings)
    assert tracing.exporting
    with tracing.tracer.start_as_current_span("plan", context=context_from(TRACEPARENT)):
        pass
    await tracing.shutdown()  # flushes the batch
    assert receiver.paths == ["/v1/traces"]
    assert receiver.headers[0]["content-type"] == "application/x-protobuf"
    assert receiver.headers[0]["x-team"] == "perc eption"  # URL-decoded
    (span,) = receiver.spans()
    assert (span.service, span.name, span.trace_id, span.parent_span_id) == (
        "planning", "plan", TRACE, PARENT)


async def test_an_unreachable_collector_does_not_hold_up_the_stop() -> None:
    with OtlpReceiver() as receiver:
        address = receiver.endpoint
    # nothing listens there any more: the exporter retries until told to stop
    tracing = Tracing("planning", load_settings(otlp_endpoint=address))
    with tracing.tracer.start_as_current_span("plan"):
        pass
    assert await tracing.shutdown(timeout_s=0.5) is False
    assert receiver.bodies == []


def test_traces_url_from_a_base_url() -> None:
    assert otlp_traces_url("http://jaeger:4318") == "http://jaeger:4318/v1/traces"
    assert otlp_traces_url("http://jaeger:4318/") == "http://jaeger:4318/v1/traces"
    assert otlp_traces_url("https://c.example/otlp/v1/traces") == "https://c.example/otlp/v1/traces"
    assert otlp_traces_url("https://c.example/otlp") == "https://c.example/otlp/v1/traces"


def test_record_span_continues_the_records_trace_and_links_the_batch() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing("perception", Settings(), exporter=exporter)
    start_ns = time.time_ns() - 50_000_000
    with tracing.tracer.start_as_current_span("camera.frames process") as batch:
        with tracing.record_span(record(TRACEPARENT), start_ns=start_ns) as span:
            inside = traceparent_of()
        with tracing.record_span(record(None)) as orphan:
            no_header = traceparent_of()
    tracing.provider.force_flush()
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}
    assert inside.split("-")[1] == TRACE
    assert span.get_span_context().trace_id == int(TRACE, 16)
    finished = by_id[span.get_span_context().span_id]
    assert finished.parent is not None
    assert finished.parent.span_id == int(PARENT, 16)
    assert finished.kind == SpanKind.CONSUMER
    assert finished.start_time == start_ns
    assert [link.context.span_id for link in finished.links] == [batch.get_span_context().span_id]
    assert finished.attributes is not None
    assert finished.attributes["messaging.kafka.message.offset"] == 41
    # no traceparent: a trace of its own (one per frame), still linked to the batch
    batch_trace = f"{batch.get_span_context().trace_id:032x}"
    assert no_header.split("-")[1] not in (batch_trace, TRACE)
    assert [link.context.span_id for link in by_id[orphan.get_span_context().span_id].links] == [
        batch.get_span_context().span_id]


def command(headers: dict[str, str]) -> KafkaPublishCommand:
    return KafkaPublishCommand(b"{}", topic="vehicle.control", headers=headers,
                               _publish_type=PublishType.PUBLISH)


async def test_an_explicit_traceparent_header_is_the_publish_parent() -> None:
    tracing = Tracing("planning", Settings())
    middleware = ExplicitParentMiddleware(None, context=ContextRepo())
    seen: list[str] = []

    async def publish(cmd: Any) -> None:
        seen.append(traceparent_of())

    with tracing.tracer.start_as_current_span("timer") as timer:
        await middleware.publish_scope(publish, command({"traceparent": TRACEPARENT}))
        await middleware.publish_scope(publish, command({"traceparent": "garbage"}))
        await middleware.publish_scope(publish, command({}))
        after = traceparent_of()
    own = f"{timer.get_span_context().trace_id:032x}"
    assert seen[0] == TRACEPARENT  # the named parent is current while publishing
    assert seen[1].split("-")[1] == own  # invalid: the current context stays
    assert seen[2].split("-")[1] == own
    assert after.split("-")[1] == own  # and it is restored afterwards


def test_empty_endpoint_means_no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADSTREAM_OTLP_ENDPOINT", "")
    assert load_settings().otlp_endpoint is None
    monkeypatch.setenv("ROADSTREAM_OTLP_ENDPOINT", "https://otel.example:4318")
    assert load_settings().otlp_endpoint == "https://otel.example:4318"


@pytest.mark.parametrize("value", ["localhost:4318", "ftp://collector:4318", "http://",
                                   "http://collector:99999", "collector"])
def test_bad_endpoint_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                     value: str) -> None:
    monkeypatch.setenv("ROADSTREAM_OTLP_ENDPOINT", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"invalid setting ROADSTREAM_OTLP_ENDPOINT={value!r}: ")
    assert "http(s) URL" in text


def test_bad_headers_are_named_without_echoing_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADSTREAM_OTLP_HEADERS", "authorization=Bearer s3cret,oops")
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert text.startswith("invalid setting ROADSTREAM_OTLP_HEADERS: item 2 is not key=value")
    assert "s3cret" not in text


def test_provider_resource_names_the_service() -> None:
    provider = build_tracer_provider("gate", Settings(client_id="car7"))
    attrs = provider.resource.attributes
    assert attrs["service.name"] == "gate"
    assert attrs["service.namespace"] == "roadstream"
    assert str(attrs["service.instance.id"]).startswith("car7-gate@")
