"""The README's main job and the scenario commands, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def roadstream(*args: str, cwd: Path = ROOT, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_run_streams_the_scenario_through_kafka_and_writes_a_summary(tmp_path: Path) -> None:
    env_runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "services.cli.main", "run", "--duration", "1.5",
                           "--speed", "5", "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, check=False,
                          env={**_env(), "ROADSTREAM_RUNS_DIR": str(env_runs)})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    [scenario] = summary["scenarios"]
    kafka = scenario["kafka"]
    assert kafka["frames_sent"] > 0
    assert kafka["received"] == kafka["decoded"] == kafka["frames_sent"]
    assert summary["not_yet"]  # says plainly what is not there yet
    written = json.loads((env_runs / summary["run_id"] / "summary.json").read_text())
    assert written["run_id"] == summary["run_id"]


def test_scenarios_list_and_show() -> None:
    listed = roadstream("scenarios", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    names = [s["name"] for s in json.loads(listed.stdout)["scenarios"]]
    assert len(names) >= 14
    shown = roadstream("scenarios", "show", names[0], "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["name"] == names[0]


def test_unknown_scenario_is_a_clear_error() -> None:
    proc = roadstream("sim", "no_such_scenario")
    assert proc.returncode == 2
    assert "no_such_scenario" in proc.stderr
    assert "Traceback" not in proc.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ROADSTREAM_")}
