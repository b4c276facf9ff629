"""The ops endpoint over real HTTP on loopback: metrics with content negotiation, health."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry, Counter

from services.runtime import http
from services.runtime.http import OpsServer

Health = Callable[[], dict[str, object]]


def get(url: str, accept: str | None = None) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET (errors included)."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("roadstream_messages_handled_total", "Messages handled", ["service", "topic"],
            registry=registry).labels("echo", "vehicle.state").inc(3)
    return registry


async def serving(registry: CollectorRegistry, health: Health) -> AsyncIterator[str]:
    server = OpsServer(registry, health)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


@pytest.fixture
async def ok(registry: CollectorRegistry) -> AsyncIterator[str]:
    async for url in serving(registry, lambda: {"service": "echo", "status": "ok"}):
        yield url


async def test_metrics_are_prometheus_text_by_default(ok: str) -> None:
    status, ctype, body = await asyncio.to_thread(get, f"{ok}/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    assert b'roadstream_messages_handled_total{service="echo",topic="vehicle.state"} 3.0' in body
    assert not body.rstrip().endswith(b"# EOF")


async def test_a_scraper_asking_for_openmetrics_gets_openmetrics(ok: str) -> None:
    status, ctype, body = await asyncio.to_thread(
        get, f"{ok}/metrics", "application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert status == 200
    assert ctype.startswith("application/openmetrics-text")
    # OpenMetrics names the counter family without _total and ends with the EOF marker
    assert b"# TYPE roadstream_messages_handled counter" in body
    assert body.endswith(b"# EOF\n")


async def test_healthz_is_the_document_and_200_while_serving(ok: str) -> None:
    status, ctype, body = await asyncio.to_thread(get, f"{ok}/healthz")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == {"service": "echo", "status": "ok"}


async def test_an_unknown_path_is_404_and_names_the_paths(ok: str) -> None:
    status, _, body = await asyncio.to_thread(get, f"{ok}/")
    assert status == 404
    assert b"/metrics" in body
    assert b"/healthz" in body


async def test_healthz_is_503_while_starting(registry: CollectorRegistry) -> None:
    async for url in serving(registry, lambda: {"service": "echo", "status": "starting"}):
        status, _, body = await asyncio.to_thread(get, f"{url}/healthz")
        assert status == 503
        assert json.loads(body)["status"] == "starting"


async def test_a_loop_that_does_not_answer_is_unhealthy_but_metrics_still_serve(
        registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "HEALTH_TIMEOUT_S", 0.2)
    async for url in serving(registry, lambda: {"status": "ok"}):
        # The loop is blocked (a handler hogging it): both requests come from another thread
        # while this one waits synchronously, so the health call cannot run on the loop.
        def both(url: str = url) -> tuple[tuple[int, str, bytes], tuple[int, str, bytes]]:
            return get(f"{url}/healthz"), get(f"{url}/metrics")

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # result() waits synchronously: the loop is blocked until both answers are in
            (h_status, _, h_body), (m_status, _, m_body) = pool.submit(both).result(timeout=30)
    assert h_status == 503
    assert json.loads(h_body)["status"] == "unresponsive"
    assert m_status == 200
    assert b"roadstream_messages_handled_total" in m_body


async def test_a_failing_health_callback_is_503_not_a_dead_server(
        registry: CollectorRegistry) -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("consumer state unreadable")

    async for url in serving(registry, broken):
        status, _, body = await asyncio.to_thread(get, f"{url}/healthz")
        assert status == 503
        assert "consumer state unreadable" in json.loads(body)["error"]
        again, _, _ = await asyncio.to_thread(get, f"{url}/metrics")
        assert again == 200


async def test_stop_frees_the_port(registry: CollectorRegistry) -> None:
    server = OpsServer(registry, lambda: {"status": "ok"})
    await server.start()
    port = server.port
    await server.stop()
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/metrics", None, 2)
