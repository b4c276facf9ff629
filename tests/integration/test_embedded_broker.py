"""The embedded broker's life cycle, and a clear error for a cluster that does not answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.broker.clients import BrokerUnavailableError
from services.broker.embedded import free_port, kafka
from services.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True,
                         check=False)
    return [int(x) for x in out.stdout.split()]


async def test_unreachable_cluster_fails_fast_with_a_clear_error() -> None:
    settings = Settings(bootstrap_servers=f"127.0.0.1:{free_port()}", connect_timeout_s=2)
    start = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as err:
        async with kafka(settings):
            pass
    elapsed = time.monotonic() - start
    assert elapsed < 10  # bounded retry, not a hang
    assert "did not answer within 2 s" in str(err.value)
    assert "ROADSTREAM_BOOTSTRAP_SERVERS" in str(err.value)


def _start_broker_cli() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "services.cli.main", "broker", "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("}"):
            break
    return proc, json.loads("".join(lines))["bootstrap_servers"]


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "parent-killed"])
def test_broker_command_prints_address_and_broker_dies_with_it(how: signal.Signals) -> None:
    proc, bootstrap = _start_broker_cli()
    try:
        host, port = bootstrap.split(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        children = _children(proc.pid)
        assert children, "the broker process should be a child of the command"
        proc.send_signal(how)
        proc.wait(timeout=15)
        deadline = time.monotonic() + 10
        while any(_pid_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_pid_alive(c) for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()
