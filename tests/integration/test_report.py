"""A short real `roadstream run` writes its report: page, plots and an H.264 video per scenario."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

from tests.integration.test_cli_run import roadstream
from tests.unit.report.helpers import asset_problems, browser_playable_h264

# A loaded machine can take minutes for the run itself: generous limits, no timing asserts.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
SCENARIO = "ccrs_20kph"
PLOTS = ("speed", "accel", "steering", "ttc", "latency", "events")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    runs = tmp_path_factory.mktemp("runs")
    proc = roadstream("run", "--scenarios", SCENARIO, "--duration", "3", "--json",
                      env={"ROADSTREAM_RUNS_DIR": str(runs)}, timeout=1100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    return runs / summary["run_id"], summary


def test_run_writes_a_report_that_loads_with_no_missing_assets(
        run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, summary = run
    assert summary["files"]["report"] == "report.html"
    page = run_dir / "report.html"
    assert page.stat().st_size > 0
    problems, parsed = asset_problems(page)
    assert problems == []
    assert parsed.tags.count("svg") == len(PLOTS)
    assert parsed.tags.count("video") == 1
    html = page.read_text(encoding="utf-8")
    assert f'id="{SCENARIO}"' in html
    assert "Scorecard" in html


def test_run_report_plots_exist_and_hold_data(run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = run
    for name in PLOTS:
        svg = (run_dir / "plots" / SCENARIO / f"{name}.svg").read_text(encoding="utf-8")
        assert "time [s]" in svg, name
        assert "<path" in svg, name
    speed = (run_dir / "plots" / SCENARIO / "speed.svg").read_text(encoding="utf-8")
    assert "no vehicle state recorded" not in speed
    latency = (run_dir / "plots" / SCENARIO / "latency.svg").read_text(encoding="utf-8")
    assert "no frame with a control recorded" not in latency


def test_run_report_video_is_browser_playable_h264(run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, summary = run
    video = run_dir / "videos" / f"{SCENARIO}.mp4"
    assert browser_playable_h264(video.read_bytes()) == []
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    recorded = summary["scenarios"][0]["frames"]
    assert 30 < frames <= recorded  # 3 s at 20 Hz, one camera


def test_report_command_remakes_the_page(run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run_dir, _ = run
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("summary.json", "recording.mcap"):
        shutil.copy(run_dir / name, copy / name)
    proc = roadstream("report", str(copy), "--no-video", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["videos"] == []
    assert out["plots"] == len(PLOTS)
    problems, parsed = asset_problems(copy / "report.html")
    assert problems == []
    assert "video" not in parsed.tags


def test_report_command_names_a_missing_recording(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"run_id": "x", "scenarios": []}', encoding="utf-8")
    proc: subprocess.CompletedProcess[str] = roadstream("report", str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(tmp_path / "recording.mcap") in lines[0]
    assert "Traceback" not in proc.stderr
