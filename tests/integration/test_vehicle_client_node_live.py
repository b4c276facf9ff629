"""The Node.js vehicle client verifies the commands of a live `roadstream run`: every genuine
command of the run's gate, signed with the run's own key, is accepted by a client that shares
no code with roadstream."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from services.control.settings import ControlSettings
from services.mainjob import RunOptions, run_main_job
from services.settings import Settings
from tests.integration.test_tracing import own_bootstrap  # noqa: F401 - the module's own broker
from tests.node_client import CLIENT, ensure_kafkajs, node

pytestmark = pytest.mark.integration


async def test_node_client_accepts_every_command_of_a_live_run(
        own_bootstrap: str, unique: str, tmp_path: Path) -> None:  # noqa: F811
    ensure_kafkajs()
    control = ControlSettings.ephemeral()
    assert control.keys is not None
    summary = await run_main_job(Settings(), own_bootstrap, RunOptions(
        scenarios=("ccrs_30kph",), clock="lockstep", run_id=unique, out_dir=tmp_path,
        record=False, duration_s=2.0, control=control))
    (row,) = summary.scenarios
    commands = sum(row.control_modes.values())
    assert commands > 0
    assert row.commands_rejected == {}  # the simulated vehicle refused none either
    env = {**os.environ, "ROADSTREAM_CONTROL_KEYS": control.keys.get_secret_value()}
    # The run's broker keeps its commands: the client reads them from the start of the topic.
    proc = await asyncio.create_subprocess_exec(
        node(), str(CLIENT), "--brokers", own_bootstrap, "--vehicle", "ego",
        "--group", f"vehicle-{unique}", "--from-beginning", "--max-messages", str(commands),
        "--timeout-s", "90", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=150)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    verdicts = [line for line in lines if "result" in line]
    assert len(verdicts) == commands, err.decode()[-2000:]
    assert {v["result"] for v in verdicts} == {"accepted"}, verdicts[:5]
    assert lines[-1]["event"] == "done"
    assert lines[-1]["accepted"] == commands
    assert proc.returncode == 0, err.decode()[-2000:]
