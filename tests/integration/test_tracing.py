"""A traced closed-loop run: frame → objects → trajectory → control in one trace, exported."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.broker.clients import ensure_topics
from services.broker.embedded import EmbeddedBroker
from services.mainjob import RunOptions, run_main_job
from services.messages import ALL_TOPICS
from services.settings import Settings
from services.simulator.convert import traceparent as derived_traceparent
from tests.kafka_helpers import collect, header
from tests.unit.services.test_tracing import OtlpReceiver

pytestmark = pytest.mark.integration
CONSUMER, PRODUCER = 5, 4  # OTLP SpanKind values


@pytest.fixture(scope="module")
def own_bootstrap() -> Iterator[str]:
    """A broker of this module's own (as the session's `kafka_bootstrap`, but empty).

    The main job's new consumer groups read from the earliest offset: on the shared broker
    they would first work through every frame earlier tests left there.
    """
    broker = EmbeddedBroker()
    broker.start()
    try:
        settings = Settings()

        async def ready() -> None:
            await broker.wait_ready(settings)
            await ensure_topics(settings, broker.bootstrap, ALL_TOPICS)

        asyncio.run(ready())
        yield broker.bootstrap
    finally:
        broker.stop()


def trace_id(traceparent: str | None) -> str:
    return (traceparent or "---").split("-")[1]


async def test_control_continues_its_frames_trace_and_spans_are_exported(
        own_bootstrap: str, unique: str, tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        settings = Settings(otlp_endpoint=receiver.endpoint)
        summary = await run_main_job(settings, own_bootstrap, RunOptions(
            scenarios=("ccrs_30kph",), clock="lockstep", speed=1.0, run_id=unique,
            out_dir=tmp_path, record=False, duration_s=1.0))
        # the services are stopped: their providers were shut down, so every span was flushed
        spans = receiver.spans()
    run_id = f"{unique}-00"
    frames_sent = summary.scenarios[0].frames
    assert frames_sent > 0
    frames = await collect(own_bootstrap, "camera.frames",
                           lambda r: header(r, "run-id") == run_id, frames_sent)
    controls = await collect(own_bootstrap, "vehicle.control",
                             lambda r: json.loads(r.value)["run_id"] == run_id, frames_sent)
    assert controls
    trace_of_frame = {int(header(f, "seq") or -1): trace_id(header(f, "traceparent"))
                      for f in frames}
    assert len(set(trace_of_frame.values())) == len(frames)  # one trace per frame
    for f in frames:  # ...whose id is derived from the frame, so a lockstep rerun has the same
        derived = derived_traceparent(run_id, header(f, "vehicle-id") or "",
                                      header(f, "camera-id") or "", int(header(f, "seq") or -1))
        assert trace_id(header(f, "traceparent")) == trace_id(derived)

    for control in controls:
        seq = json.loads(control.value)["source"]["seq"]
        traceparent = header(control, "traceparent")
        trace = trace_id(traceparent)
        assert trace == trace_of_frame[seq], (seq, control.headers)
        in_trace = [s for s in spans if s.trace_id == trace]
        services = {s.service for s in in_trace}
        assert {"simulator", "perception", "planning"} <= services, (seq, services)
        perceived = [s for s in in_trace if s.service == "perception"
                     and s.name == "camera.frames process" and s.kind == CONSUMER]
        assert len(perceived) == 1, (seq, [(s.service, s.name) for s in in_trace])
        # ...linked to the batch FastStream processed it in (a trace of its own)
        assert perceived[0].links
        assert perceived[0].links[0] != trace
        published = [s for s in in_trace if s.service == "planning"
                     and s.name == "vehicle.control publish" and s.kind == PRODUCER]
        assert published, (seq, [(s.service, s.name) for s in in_trace])
        # the header names an exported planning span of that trace
        span_id = (traceparent or "").split("-")[2]
        assert any(s.span_id == span_id and s.service == "planning" for s in in_trace)
