"""The ops endpoint over real HTTP on loopback: metrics with content negotiation, health,
and clients that try to hold it (slow, oversized, too many)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import time
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


# --- hostile clients: real sockets, the server must cut them and keep serving the others

def exchange(port: int, data: bytes, timeout_s: float = 20.0) -> bytes:
    """Send `data` on a fresh connection and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


async def test_a_not_ready_service_is_503_with_its_reasons_but_alive(
        registry: CollectorRegistry) -> None:
    document: dict[str, object] = {
        "service": "echo", "status": "not_ready",
        "reasons": ["broker unreachable: no answer for 12.0 s (limit 10 s)"]}
    async for url in serving(registry, lambda: document):
        status, _, body = await asyncio.to_thread(get, f"{url}/healthz")
        assert status == 503
        assert json.loads(body)["reasons"] == document["reasons"]
        status, _, body = await asyncio.to_thread(get, f"{url}/livez")
        assert status == 200
        assert json.loads(body) == {"alive": True, "status": "not_ready"}


async def test_a_client_trickling_its_headers_is_cut_at_the_total_deadline(
        registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "REQUEST_DEADLINE_S", 1.5)
    server = OpsServer(registry, lambda: {"status": "ok"})
    await server.start()

    def trickle() -> tuple[bytes, float]:
        # one header byte every 0.4 s: each wait is far below the deadline, only the
        # total is over it
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            start = time.monotonic()
            while time.monotonic() - start < 30:
                try:
                    sock.sendall(b"a")
                except OSError:  # the server closed on us
                    return read_all(sock), time.monotonic() - start
                sock.settimeout(0.4)
                try:
                    first = sock.recv(65536)
                except TimeoutError:
                    continue
                sock.settimeout(5)
                return first + read_all(sock), time.monotonic() - start
            return b"", time.monotonic() - start

    try:
        answer, held_s = await asyncio.to_thread(trickle)
        assert answer.startswith(b"HTTP/1.0 408 ")
        assert 1.4 <= held_s < 15  # cut at the deadline, not after the 30 s the client tried
        status, _, _ = await asyncio.to_thread(get, f"http://127.0.0.1:{server.port}/healthz")
        assert status == 200
    finally:
        await server.stop()


@pytest.mark.parametrize("request_bytes", [
    b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a 200 kB request line
    b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 900)
                                             for i in range(40)) + b"\r\n",  # 36 kB of headers
], ids=["request-line", "headers"])
async def test_an_oversized_request_gets_431_and_no_traceback(
        ok: str, request_bytes: bytes, capfd: pytest.CaptureFixture[str]) -> None:
    port = int(ok.rsplit(":", 1)[1])
    answer = await asyncio.to_thread(exchange, port, request_bytes)
    assert answer.startswith(b"HTTP/1.0 431 ")
    assert b"16384 bytes" in answer  # says what the limit is
    status, _, _ = await asyncio.to_thread(get, f"{ok}/healthz")
    assert status == 200  # the server still serves
    assert "Traceback" not in capfd.readouterr().err


async def test_connections_beyond_the_cap_are_turned_away_until_slots_free(ok: str) -> None:
    port = int(ok.rsplit(":", 1)[1])

    def crowd() -> tuple[bytes, int]:
        # MAX_CONNECTIONS idle clients hold every slot (each until the request deadline)
        held = [socket.create_connection(("127.0.0.1", port), timeout=10)
                for _ in range(http.MAX_CONNECTIONS)]
        try:
            answer = exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n", timeout_s=10)
        finally:
            for sock in held:
                sock.close()
        # the slots come back once those clients are gone
        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline and status != 200:
            status = get(f"{ok}/healthz")[0]
        return answer, status

    answer, status_after = await asyncio.to_thread(crowd)
    assert answer.startswith(b"HTTP/1.0 503 ")
    assert b"too many connections" in answer
    assert status_after == 200
