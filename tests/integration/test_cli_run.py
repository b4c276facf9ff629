"""The README's main job and the scenario commands, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from services.recording.mcap_io import read_recording

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def roadstream(*args: str, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROADSTREAM_")}
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**clean, **(env or {})})


def test_run_drives_closed_loop_through_kafka_and_writes_the_run(tmp_path: Path) -> None:
    # --segment 1: each scenario on an embedded broker of its own, still one run.
    proc = roadstream("run", "--scenarios", "ccrs_30kph", "free_cruise", "--duration", "3",
                      "--segment", "1", "--json", env={"ROADSTREAM_RUNS_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["closed_loop"] is True
    rows = {r["name"]: r for r in summary["scenarios"]}
    assert set(rows) == {"ccrs_30kph", "free_cruise"}
    for row in rows.values():
        assert row["frames"] > 0
        assert row["control_timeouts"] == 0  # every frame got its control through Kafka
        assert row["latency_ms"]["n"] > 0
        for key in ("collision", "impact_speed_mps", "min_ttc_s", "progress", "score"):
            assert key in row
    run_dir = tmp_path / summary["run_id"]
    assert json.loads((run_dir / "summary.json").read_text())["run_id"] == summary["run_id"]
    # One recording joined from the segments' parts, holding both scenarios' controls.
    records = read_recording(run_dir / "recording.mcap", ["vehicle.control"])
    runs = Counter(json.loads(r.value)["run_id"] for r in records)
    assert set(runs) == {f"{summary['run_id']}-00", f"{summary['run_id']}-01"}
    assert sum(runs.values()) == sum(r["frames"] for r in rows.values())
    assert not list(run_dir.glob("recording.part-*"))
    assert (run_dir / "report.html").stat().st_size > 0
    # One audit trail: the second segment's service continued the first one's chain.
    verify = roadstream("audit", "verify", "--url", f"sqlite:///{run_dir / 'audit.db'}")
    assert verify.returncode == 0, verify.stdout + verify.stderr


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
