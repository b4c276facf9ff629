"""Makes `runs/<id>/report.html` from a run directory: plots, videos, the page.

Outputs beside the page: `plots/<scenario>/<plot>.svg` and `videos/<scenario>.mp4`. Every file is
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.scorecard import RunSummary, read_summary
from services.monitor.settings import MonitorSettings
from services.recording.mcap_io import read_recording
from services.report.html import ScenarioSection, anchor, report_page
from services.report.plots import TtcThresholds, scenario_plots
from services.report.series import REPORT_TOPICS, split_scenarios
from services.report.video import VideoError, write_video

log = logging.getLogger(__name__)

#: (label, fraction done in [0, 1]); the same shape as the main job's progress callback.
Progress = Callable[[str, float], None]
REPORT_FILE = "report.html"


class ReportInputError(FileNotFoundError):
    """The run directory lacks what a report is made from; the message names the path."""


@dataclass
class ReportResult:
    """What a report run wrote, relative to the run directory."""

    path: Path
    plots: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _summary_path(run_dir: Path) -> Path:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ReportInputError(f"{path}: no such file (is {run_dir} a `roadstream run` "
                               "directory?)")
    return path


def load_summary(run_dir: Path) -> RunSummary:
    """summary.json of a run directory; ReportInputError names the path when it is missing,
    SummaryError when it is not a run summary."""
    return read_summary(_summary_path(run_dir))


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(run_dir: Path, *, summary: RunSummary | None = None, video: bool = True,
                 progress: Progress | None = None) -> ReportResult:
    """Write `run_dir/report.html` (and its plots and videos) from the run's recording.

    `summary` is the run's summary (read from summary.json when None). Raises ReportInputError
    when summary.json or recording.mcap is missing (both are looked for before either is read),
    SummaryError when summary.json is not a run summary, RecordingError when the recording is
    damaged. A scenario whose video cannot be made gets a note on the page instead of a video.
    """
    if summary is None:
        _summary_path(run_dir)  # a missing file is named before the other is looked for
    recording = run_dir / "recording.mcap"
    if not recording.is_file():
        raise ReportInputError(f"{recording}: no such file (the run was made with --no-record, "
                               "or the recording did not finish)")
    if summary is None:
        summary = load_summary(run_dir)
    records = read_recording(recording, REPORT_TOPICS)
    monitor = MonitorSettings()
    series = split_scenarios(summary, records, path_half_width_m=monitor.risk_path_half_width_m)
    ttc = TtcThresholds(monitor.ttc_warning_s, monitor.ttc_critical_s)
    result = ReportResult(run_dir / REPORT_FILE)
    taken: set[str] = set()
    sections = []
    for s in series:
        label = f"report {s.name}"
        if progress is not None:
            progress(label, 0.0)
        slug = anchor(s.name, taken)
        sec = ScenarioSection(name=s.name, anchor=slug, row=s.row, plots=scenario_plots(s, ttc),
                              camera_id=s.camera_id)
        for plot in sec.plots:
            rel = f"plots/{slug}/{plot.key}.svg"
            _write_text(run_dir / rel, plot.svg)
            result.plots.append(rel)
        if not s.run_id:
            sec.notes.append("No recorded messages for this scenario.")
        if video and s.frames:
            rel = f"videos/{slug}.mp4"

            def step(fraction: float, label: str = label) -> None:
                if progress is not None:
                    progress(label, 0.1 + 0.9 * fraction)

            try:
                made = write_video(s, run_dir / rel, step)
            except (VideoError, OSError, RuntimeError) as exc:
                log.warning("report: no video for %s: %s", s.name, exc)
                sec.notes.append(f"No video: {exc}")
            else:
                sec.video_mp4 = made.path.read_bytes()
                sec.video_file = rel
                sec.poster_jpeg = made.poster_jpeg
                result.videos.append(rel)
        elif video:
            sec.notes.append("No camera frames recorded: no video.")
        if progress is not None:
            progress(label, 1.0)
        sections.append(sec)
        result.notes.extend(f"{s.name}: {n}" for n in sec.notes)
    _write_text(result.path, report_page(summary, sections,
                                         path_half_width_m=monitor.risk_path_half_width_m))
    return result
