"""Running the Node.js vehicle client of examples/ from the tests.

Node and npm are required, as in CI: when either is missing the test fails and says what to
install, never skips. kafkajs is installed with `npm ci` from the committed lock file, once,
when node_modules lacks it (npm's cache serves it offline after the first install).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CLIENT_DIR = Path(__file__).resolve().parents[1] / "examples" / "vehicle-client-node"
CLIENT = CLIENT_DIR / "client.js"
VECTORS = Path(__file__).resolve().parents[1] / "docs" / "control-test-vectors.json"
NPM_TIMEOUT_S = 300


def node() -> str:
    """The node executable; fails the test with what to install when there is none."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: the vehicle client example needs Node.js >= 18 "
                    "(e.g. `apt-get install nodejs npm`)")
    return found


def ensure_kafkajs() -> None:
    """`npm ci` in the example's folder unless its node_modules already holds kafkajs."""
    if (CLIENT_DIR / "node_modules" / "kafkajs" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: installing the vehicle client's kafkajs needs it "
                    "(e.g. `apt-get install npm`)")
    done = subprocess.run([npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"],
                          cwd=CLIENT_DIR, capture_output=True, text=True,
                          timeout=NPM_TIMEOUT_S, check=False)
    if done.returncode != 0:
        pytest.fail(f"npm ci in {CLIENT_DIR.name} failed ({done.returncode}): "
                    f"{done.stderr.strip()[-2000:]}")
