"""Health and metrics over HTTP: `/metrics` (Prometheus) and `/healthz` (JSON), per service.

`/metrics` is prometheus_client's own WSGI app, so content negotiation is the library's: a
scraper that sends ``Accept: application/openmetrics-text`` gets OpenMetrics (exemplars,
``# EOF``), anything else the Prometheus text format, gzipped when asked for. `/healthz` is
200 while the service serves and 503 otherwise (starting, stopping, or its event loop not
answering within `HEALTH_TIMEOUT_S`).

The server runs in a thread of its own, so a scrape never waits on the service's event loop.
The health document is still computed on that loop (it reads the Kafka consumers' state,
which only the loop may touch), and a loop that does not answer is itself the finding.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

log = logging.getLogger(__name__)

#: How long `/healthz` waits for the service's event loop before answering 503 [s].
HEALTH_TIMEOUT_S = 5.0
#: How often the server thread looks for a stop request [s] (bounds the time `stop` takes).
POLL_INTERVAL_S = 0.1

Health = Callable[[], dict[str, object]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def ops_app(registry: CollectorRegistry, health: Health) -> WSGIApp:
    """The WSGI app: `/metrics` from `registry`, `/healthz` from `health()`, else 404.

    `health()` returns the document; its ``status`` is ``"ok"`` when the service serves.
    """
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "/")
        if path.startswith("/metrics"):
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        if path.startswith("/healthz"):
            document = health()
            status = "200 OK" if document.get("status") == "ok" else "503 Service Unavailable"
            return _reply(start_response, status, "application/json", json.dumps(document).encode())
        return _reply(start_response, "404 Not Found", "text/plain",
                      b"not found: try /metrics or /healthz\n")

    return app


def _reply(start_response: StartResponse, status: str, content_type: str,
           body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class OpsServer:
    """Serves `ops_app` on ``host:port`` (port 0: a free one) from a thread of its own.

    `health` is called on the event loop that ran `start`.
    """

    def __init__(self, registry: CollectorRegistry, health: Health,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self._registry = registry
        self._health = health
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        return self._port if self._server is None else int(self._server.server_port)

    async def start(self) -> None:
        """Bind and serve in the background."""
        self._loop = asyncio.get_running_loop()
        self._server = make_server(self._host, self._port, ops_app(self._registry, self._health_now),
                                   server_class=ThreadingWSGIServer, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": POLL_INTERVAL_S},
                                        name=f"ops-{self.port}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop serving and close the listening socket."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)  # waits for serve_forever to return
        server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, HEALTH_TIMEOUT_S)

    def _health_now(self) -> dict[str, object]:
        """The health document, computed on the service's loop (called from the server thread)."""
        loop = self._loop
        result: concurrent.futures.Future[dict[str, object]] = concurrent.futures.Future()

        def call() -> None:
            try:
                result.set_result(self._health())
            except Exception as exc:  # reported as unhealthy, never a dead server thread
                result.set_exception(exc)

        try:
            if loop is None or loop.is_closed():
                raise RuntimeError("the service's event loop is gone")
            loop.call_soon_threadsafe(call)
            return result.result(timeout=HEALTH_TIMEOUT_S)
        except TimeoutError:
            return {"status": "unresponsive",
                    "error": f"the event loop did not answer within {HEALTH_TIMEOUT_S:g} s"}
        except Exception as exc:
            log.warning("health check failed: %s: %s", type(exc).__name__, exc)
            return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
