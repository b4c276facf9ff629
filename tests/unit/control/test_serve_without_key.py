"""`roadstream serve planning` without a configured key stops at once with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys


def test_serve_planning_without_a_key_stops_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROADSTREAM_")}
    # A cluster that does not answer: the key must be checked before any broker is contacted.
    env["ROADSTREAM_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    done = subprocess.run([sys.executable, "-m", "services.cli.main", "serve", "planning"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no control signing key" in lines[0]
    assert "ROADSTREAM_CONTROL_KEYS" in lines[0]
