"""The main job's report step: listed in the summary when written, never fatal when not."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from evaluation.scorecard import RunFiles, read_summary
from services.mainjob import write_run_report
from tests.unit.evaluation.helpers import run_summary
from tests.unit.report.helpers import make_run_dir


async def test_a_failing_report_leaves_the_run_alone(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    summary = run_summary("x", [])
    with caplog.at_level(logging.WARNING, logger="services.mainjob"):
        await write_run_report(tmp_path, summary)  # no recording.mcap there
    assert "report" not in summary.as_json()["files"]
    lines = [r.getMessage() for r in caplog.records if r.name == "services.mainjob"]
    assert len(lines) == 1
    assert "run report not written" in lines[0]
    assert str(tmp_path / "recording.mcap") in lines[0]


async def test_a_written_report_is_listed_in_the_summary(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path)
    summary = read_summary(run_dir / "summary.json")
    summary.files = RunFiles(recording="recording.mcap")
    progress: list[tuple[str, float]] = []
    await write_run_report(run_dir, summary, lambda label, f: progress.append((label, f)))
    assert summary.as_json()["files"]["report"] == "report.html"
    assert (run_dir / "report.html").stat().st_size > 0
    assert progress[-1] == ("report beta", 1.0)
