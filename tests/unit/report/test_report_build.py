"""The whole report from a recorded run directory, without Kafka: page, plots, videos."""

from __future__ import annotations

import re
from pathlib import Path

import imageio_ffmpeg
import pytest

from services.report import ReportInputError, ReportResult, write_report
from tests.unit.report.helpers import asset_problems, browser_playable_h264, make_run_dir


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    run_dir = make_run_dir(tmp_path_factory.mktemp("run"))
    calls: list[tuple[str, float]] = []
    result = write_report(run_dir, progress=lambda label, f: calls.append((label, f)))
    assert ("report alpha", 1.0) in calls
    assert ("report beta", 1.0) in calls
    return result


def test_report_page_loads_with_no_missing_assets(report: ReportResult) -> None:
    assert report.path.name == "report.html"
    assert report.path.stat().st_size > 0
    problems, parsed = asset_problems(report.path)
    assert problems == []
    assert parsed.tags.count("video") == 2
    assert parsed.tags.count("svg") == 12
    html = report.path.read_text(encoding="utf-8")
    # Only XML namespace names (never fetched) may look like URLs.
    assert {a for a in re.findall(r'([\w:-]+)="https?://', html) if not a.startswith("xmlns")} \
        == set()


def test_ids_on_the_page_are_unique(report: ReportResult) -> None:
    ids = re.findall(r'\bid="([^"]+)"', report.path.read_text(encoding="utf-8"))
    assert len(ids) == len(set(ids)) > 0


def test_scorecard_comes_first_and_highlights_the_collision(report: ReportResult) -> None:
    html = report.path.read_text(encoding="utf-8")
    assert html.index("Scorecard") < html.index('id="alpha"') < html.index('id="beta"')
    table = html[html.index('<table class="scorecard"'):html.index("</table>")]
    rows = table.split("<tr")
    alpha = next(r for r in rows if ">alpha<" in r)
    beta = next(r for r in rows if ">beta<" in r)
    assert 'class="collision"' in alpha
    assert 'class="collision"' not in beta
    assert "impact <b>4.2 m/s</b> at <b>0.80 s</b>" in html


def test_plots_are_written_beside_the_page(report: ReportResult) -> None:
    run_dir = report.path.parent
    assert len(report.plots) == 12
    for rel in report.plots:
        text = (run_dir / rel).read_text(encoding="utf-8")
        assert text.startswith("<?xml")
        assert "<svg" in text
        assert "time [s]" in text


def test_videos_are_browser_playable_h264_with_every_frame(report: ReportResult) -> None:
    run_dir = report.path.parent
    assert report.videos == ["videos/alpha.mp4", "videos/beta.mp4"]
    for rel, frames in zip(report.videos, (20, 6), strict=True):
        data = (run_dir / rel).read_bytes()
        assert browser_playable_h264(data) == []
        counted, _ = imageio_ffmpeg.count_frames_and_secs(str(run_dir / rel))
        assert counted == frames
    assert not list((run_dir / "videos").glob("*.partial.mp4"))


def test_no_video_makes_a_page_of_plots(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path)
    result = write_report(run_dir, video=False)
    problems, parsed = asset_problems(result.path)
    assert problems == []
    assert "video" not in parsed.tags
    assert parsed.tags.count("svg") == 12
    assert result.videos == []
    assert not (run_dir / "videos").exists()


def test_missing_inputs_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match=str(tmp_path / "summary.json")):
        write_report(tmp_path)
    (tmp_path / "summary.json").write_text('{"run_id": "x", "scenarios": []}', encoding="utf-8")
    with pytest.raises(ReportInputError, match=str(tmp_path / "recording.mcap")):
        write_report(tmp_path)
