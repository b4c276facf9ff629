"""Health and metrics over HTTP: `/metrics` (Prometheus) and `/healthz` (JSON), per service.

`/metrics` is prometheus_client's own WSGI app, so content negotiation is the library's: a
scraper that sends ``Accept: application/openmetrics-text`` gets OpenMetrics (exemplars,
``# EOF``), anything else the Prometheus text format, gzipped when asked for. `/healthz`
(readiness) is 200 while the service serves and is ready, and 503 otherwise: starting,
stopping, not ready (broker unreachable, a consumer stuck: the document's ``reasons``), or
its event loop not answering within `HEALTH_TIMEOUT_S`. `/livez` (liveness) is 200 whenever
the loop answers: a broker outage makes a service unready, not dead.

The server runs in a thread of its own, so a scrape never waits on the service's event loop.
The health document is still computed on that loop (it reads the Kafka consumers' state,
which only the loop may touch), and a loop that does not answer is itself the finding.

A client cannot hold the server: the request line and headers must arrive within
`REQUEST_DEADLINE_S` in all (408 and closed otherwise, however slowly they trickle) and fit
`MAX_REQUEST_BYTES` (431), and at most `MAX_CONNECTIONS` are served at once (the next ones
get 503 and are closed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import socket
import threading
import time
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
#: Longest a client may take to send its request line and headers, in all [s].
REQUEST_DEADLINE_S = 5.0
#: Largest request line plus headers [bytes].
MAX_REQUEST_BYTES = 16 << 10
#: Most connections served at once; the next ones are answered 503 and closed.
MAX_CONNECTIONS = 32
#: Timeout of each send and receive once the request is in [s] (a client that stops reading).
SOCKET_TIMEOUT_S = 10.0
#: After refusing an oversized request, how much of the rest is read and dropped so the
#: client gets the answer rather than a connection reset [bytes, s].
DRAIN_BYTES = 1 << 20
DRAIN_S = 1.0
#: Alive statuses for `/livez`: the loop answered (whatever it said).
_UNANSWERED = frozenset({"unresponsive", "error"})

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
        if path.startswith("/livez"):
            document = health()
            alive = document.get("status") not in _UNANSWERED
            status = "200 OK" if alive else "503 Service Unavailable"
            return _reply(start_response, status, "application/json", json.dumps(
                {"alive": alive, "status": document.get("status")}).encode())
        return _reply(start_response, "404 Not Found", "text/plain",
                      b"not found: try /metrics, /healthz or /livez\n")

    return app


def _reply(start_response: StartResponse, status: str, content_type: str,
           body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class RequestTooLargeError(Exception):
    """The request line and headers exceed `MAX_REQUEST_BYTES`."""


class RequestTimedOutError(Exception):
    """The request line and headers did not arrive within `REQUEST_DEADLINE_S`."""


class HeadReader:
    """A request's input stream that reads its head within a size limit and a total deadline.

    The standard library's timeout applies to each receive, so a client sending one byte just
    under it each time is never cut; here each receive gets only what is left of the deadline.
    After `head_done` the limits are off (the app may read a body) and the socket timeout is
    `SOCKET_TIMEOUT_S` per operation.
    """

    def __init__(self, sock: socket.socket, max_bytes: int, deadline_s: float) -> None:
        self._sock = sock
        self._max_bytes = max_bytes
        self._deadline = time.monotonic() + deadline_s
        self._buffer = bytearray()
        self._taken = 0
        self._limited = True

    def head_done(self) -> None:
        """The head is in: lift the limits."""
        self._limited = False
        self._sock.settimeout(SOCKET_TIMEOUT_S)

    def _fill(self) -> bool:
        """Receive more; False at the end of the stream."""
        if self._limited:
            if self._taken + len(self._buffer) > self._max_bytes:
                raise RequestTooLargeError(f"the request line and headers exceed "
                                      f"{self._max_bytes} bytes")
            left_s = self._deadline - time.monotonic()
            if left_s <= 0:
                raise RequestTimedOutError
            self._sock.settimeout(left_s)
        try:
            chunk = self._sock.recv(8192)
        except TimeoutError:
            if self._limited:
                raise RequestTimedOutError from None
            raise
        self._buffer += chunk
        return bool(chunk)

    def _take(self, n: int) -> bytes:
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        self._taken += n
        return out

    def readline(self, limit: int = -1) -> bytes:
        """One line (with its newline), at most `limit` bytes when given."""
        while True:
            end = self._buffer.find(b"\n") + 1 or None
            if limit >= 0 and len(self._buffer) >= limit and (end is None or end > limit):
                end = limit
            if end is not None:
                return self._take(end)
            if not self._fill():
                return self._take(len(self._buffer))

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all until the end of the stream when negative)."""
        while (size < 0 or len(self._buffer) < size) and self._fill():
            pass
        return self._take(len(self._buffer) if size < 0 else min(size, len(self._buffer)))

    def close(self) -> None:
        """Nothing to release: the handler closes the socket."""


class _OpsHandler(WSGIRequestHandler):
    """One request, read by a `HeadReader`; no access log line per scrape on stderr."""

    rfile: Any

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the buffered reader is not used: it could read past any limit
        self.rfile = HeadReader(self.connection, MAX_REQUEST_BYTES, REQUEST_DEADLINE_S)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.rfile.head_done()
        return parsed

    def handle(self) -> None:
        try:
            super().handle()
        except RequestTooLargeError as exc:
            self._refuse("431 Request Header Fields Too Large", f"{exc}\n", drain=True)
        except RequestTimedOutError:
            self._refuse("408 Request Timeout", f"the request line and headers did not "
                         f"arrive within {REQUEST_DEADLINE_S:g} s\n", drain=False)
        except OSError:
            pass  # the client went away or stopped reading: there is no one to answer

    def _refuse(self, status: str, text: str, *, drain: bool) -> None:
        body = text.encode()
        try:
            self.connection.settimeout(SOCKET_TIMEOUT_S)
            self.connection.sendall(
                f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
                f"\r\nConnection: close\r\n\r\n".encode() + body)
            self.connection.shutdown(socket.SHUT_WR)
            if drain:  # unread input would make the close a reset, losing the answer
                _drain(self.connection)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        return


def _drain(sock: socket.socket) -> None:
    """Read and drop what the client still sends, up to `DRAIN_BYTES` or `DRAIN_S`."""
    deadline = time.monotonic() + DRAIN_S
    dropped = 0
    while dropped < DRAIN_BYTES and (left_s := deadline - time.monotonic()) > 0:
        sock.settimeout(left_s)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, OSError):
            return
        if not chunk:
            return
        dropped += len(chunk)


_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n")


class _OpsWSGIServer(ThreadingWSGIServer):
    """A thread per connection, `MAX_CONNECTIONS` at most; errors logged, not printed."""

    # a burst of connections waits in the kernel's queue to be answered (served or turned
    # away), not dropped at its door
    request_queue_size = 2 * MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # answered on the accepting thread: one small send, never blocking for long
            try:
                request.settimeout(0.2)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("ops endpoint: request from %s failed", client_address, exc_info=True)


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
                                   server_class=_OpsWSGIServer, handler_class=_OpsHandler)
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
