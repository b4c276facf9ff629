"""Health that tells the truth, against real brokers: `/healthz` goes not-ready while the
broker is down and while a consumer is stuck behind its input, and ready again after."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from services.broker.clients import ensure_topics
from services.broker.embedded import EmbeddedBroker
from services.messages import ALL_TOPICS, VEHICLE_STATE
from services.messages.examples import vehicle_state
from services.runtime.delivery import Record
from services.runtime.service import ServiceRuntime
from services.settings import Settings
from tests.echo_service import build_echo
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    """Status and document of /healthz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def wait_health(port: int, want: int, timeout_s: float) -> dict[str, Any]:
    """Poll /healthz until it answers `want`; the last document (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout_s
    status, document = 0, dict[str, Any]()
    while time.monotonic() < deadline:
        status, document = await asyncio.to_thread(healthz, port)
        if status == want:
            return document
        await asyncio.sleep(0.2)
    raise AssertionError(f"/healthz stayed {status} (wanted {want}): {document}")


async def test_healthz_is_not_ready_while_the_broker_is_down_and_ready_after(
        unique: str) -> None:
    broker = EmbeddedBroker()
    broker.start()
    settings = Settings(group_prefix=f"o{unique}", health_broker_timeout_s=1.5,
                        health_stall_s=600)
    try:
        await broker.wait_ready(settings)
        await ensure_topics(settings, broker.bootstrap, ALL_TOPICS)
        runtime = build_echo(settings, broker.bootstrap)
        await runtime.start()
        try:
            assert await runtime.wait_assigned(60)
            port = runtime.ops.port
            assert (await wait_health(port, 200, 10))["broker"]["reachable"] is True
            broker.stop()
            down = await wait_health(port, 503, 30)
            assert down["status"] == "not_ready"
            assert down["broker"]["reachable"] is False
            assert down["reasons"][0].startswith("broker unreachable: no answer for")
            # the same address again (a restarted broker)
            broker = EmbeddedBroker(port=broker.port)
            broker.start()
            await broker.wait_ready(settings)
            up = await wait_health(port, 200, 60)
            assert up["status"] == "ok"
            assert "reasons" not in up
        finally:
            await asyncio.wait_for(runtime.stop(), 60)
    finally:
        broker.stop()


async def test_healthz_is_not_ready_while_a_consumer_is_stuck_behind_its_input(
        kafka_bootstrap: str, unique: str) -> None:
    key = f"stuck-{unique}".encode()
    settings = Settings(group_prefix=f"s{unique}", health_stall_s=1.5)
    runtime = ServiceRuntime("stuck", settings, kafka_bootstrap, start_from="latest")
    release = asyncio.Event()
    handled: list[int] = []

    @runtime.consume(VEHICLE_STATE)
    async def on_state(record: Record) -> None:
        if record.key == key:
            if record.header("hang"):
                await release.wait()  # a handler that hangs (a model that never returns, say)
            handled.append(record.offset)

    await runtime.start()
    try:
        assert await runtime.wait_assigned(60)
        port = runtime.ops.port
        await produce(kafka_bootstrap, "vehicle.state", [(key, vehicle_state().encode(), [])])
        for _ in range(300):  # one record handled and committed: the group has an offset
            if handled:
                break
            await asyncio.sleep(0.1)
        await wait_health(port, 200, 10)
        await produce(kafka_bootstrap, "vehicle.state",
                      [(key, vehicle_state().encode(), [("hang", b"1")]) for _ in range(3)])
        stuck = await wait_health(port, 503, 30)
        assert stuck["status"] == "not_ready"
        [stall] = stuck["stalled"]
        assert (stall["topic"], stall["group"]) == ("vehicle.state", runtime.topic_group(
            VEHICLE_STATE))
        # committed stays after the first record while the three behind it wait
        assert stall["committed"] == handled[0] + 1
        # Three records wait; the embedded broker's end offset (ListOffsets) undercounts records
        # produced in one batch (docs/kafka.md), so the lag it gives is 1 to 3 here, never 0.
        assert 1 <= stall["lag"] <= 3
        assert stall["stalled_s"] >= 1.5
        assert any(r.startswith("consumer stuck: vehicle.state[") for r in stuck["reasons"])
        release.set()  # it moves again: committed, caught up
        await wait_health(port, 200, 30)
        assert len(handled) == 4
    finally:
        release.set()
        await runtime.stop()
