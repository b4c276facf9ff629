"""The report page: one self-contained HTML file (inline CSS and SVG, videos as data URIs).

Nothing on the page is fetched from anywhere: no fonts, scripts or style sheets from a CDN. The
MP4 files also stay beside the page; each video links to its file for download.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from common.in_path import PATH_HALF_WIDTH_M
from evaluation.scorecard import RunSummary, ScenarioScore
from services.report.plots import LATENCY_WINDOW_S, TTC_CLIP_S, Plot, inline_svg

CSS = """
:root { --fg:#1d2330; --muted:#5b6474; --line:#d9dde5; --bad:#c62828; --badbg:#fdecea;
        --ok:#2e7d32; --card:#ffffff; --bg:#f4f6f9; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#1d2330; color:#fff; padding:18px 28px; }
header h1 { margin:0 0 4px; font-size:20px; }
header .meta { color:#c5cbd6; font-size:13px; }
main { padding:20px 28px 40px; max-width:1400px; }
section.card { background:var(--card); border:1px solid var(--line); border-radius:8px;
               padding:16px 20px; margin-bottom:20px; }
h2 { margin:0 0 10px; font-size:18px; }
h2 .badge { font-size:12px; vertical-align:middle; margin-left:8px; }
table.scorecard { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
table.scorecard th, table.scorecard td { padding:6px 10px; border-bottom:1px solid var(--line);
                                         text-align:right; white-space:nowrap; }
table.scorecard th { background:#eef1f5; font-weight:600; font-size:12.5px; }
table.scorecard th:first-child, table.scorecard td:first-child { text-align:left; }
table.scorecard tr.collision td { background:var(--badbg); }
table.scorecard tfoot td { font-weight:600; border-top:2px solid var(--line); }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-weight:600;
         font-size:12px; }
.badge.bad { background:var(--bad); color:#fff; }
.badge.ok { background:#e3f1e4; color:var(--ok); }
.facts { color:var(--muted); margin:0 0 12px; }
.facts b { color:var(--fg); font-weight:600; }
.media { display:grid; grid-template-columns:minmax(0,1fr); gap:8px; margin-bottom:14px; }
video { width:100%; max-width:960px; border-radius:6px; background:#000; display:block; }
.plots { display:grid; grid-template-columns:repeat(2,minmax(0,1fr)); gap:10px 18px; }
.plots figure { margin:0; }
.plots figcaption { font-weight:600; font-size:13px; margin:0 0 2px; }
.plots svg { display:block; height:auto; }
.note { color:var(--muted); font-size:12.5px; }
@media (max-width: 900px) { .plots { grid-template-columns:minmax(0,1fr); } }
"""


@dataclass
class ScenarioSection:
    """What one scenario's section shows."""

    name: str
    anchor: str
    row: ScenarioScore
    plots: list[Plot]
    camera_id: str | None = None
    video_mp4: bytes | None = None
    video_file: str | None = None  # relative to the page
    poster_jpeg: bytes | None = None
    notes: list[str] = field(default_factory=list)


def anchor(name: str, taken: set[str]) -> str:
    """A unique, URL-safe id for a section named `name`."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "scenario"
    out, i = base, 2
    while out in taken:
        out, i = f"{base}-{i}", i + 1
    taken.add(out)
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    return "–" if value is None else format(value, spec) + unit


SCORECARD_COLUMNS = ("scenario", "collision", "impact [m/s]", "min TTC [s]", "min dist [m]",
                     "progress", "max decel [m/s²]", "max jerk [m/s³]", "lat dev [m]",
                     "e2e p50 / p99 [ms]", "frames", "score")


def scorecard_table(summary: RunSummary, anchors: Sequence[str]) -> str:
    """The scorecard as an HTML table; collision rows highlighted, names link to sections."""
    head = "".join(f"<th>{escape(c)}</th>" for c in SCORECARD_COLUMNS)
    body = []
    for row, ref in zip(summary.scenarios, anchors, strict=False):
        lat = row.latency_ms
        hit = row.collision
        cells = [
            f'<a href="#{escape(ref)}">{escape(row.name)}</a>',
            '<span class="badge bad">YES</span>' if hit else '<span class="badge ok">no</span>',
            _fmt(row.impact_speed_mps if hit else None, ".1f"),
            _fmt(row.min_ttc_s, ".2f"), _fmt(row.min_distance_m, ".1f"),
            _fmt(row.progress, ".0%"), _fmt(row.max_decel_mps2, ".1f"),
            _fmt(row.max_jerk_mps3, ".1f"), _fmt(row.max_lateral_deviation_m, ".2f"),
            f"{_fmt(lat.p50, '.0f')} / {_fmt(lat.p99, '.0f')}",
            _fmt(row.frames, "d"), _fmt(row.score, ".0f")]
        cls = ' class="collision"' if hit else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    t = summary.totals
    foot = (f'<tr><td colspan="{len(SCORECARD_COLUMNS)}">{_count(t.scenarios, "scenario")}, '
            f'{_count(t.collisions, "collision")}, collision-free '
            f'{_fmt(t.collision_free_fraction, ".0%")}, mean progress '
            f'{_fmt(t.mean_progress, ".0%")}, mean driving score '
            f'{_fmt(t.mean_score, ".1f")}</td></tr>')
    return (f'<table class="scorecard"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody><tfoot>{foot}</tfoot></table>")


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def section_html(sec: ScenarioSection) -> str:
    """One scenario: key figures, the annotated video, the plots."""
    row = sec.row
    hit = row.collision
    badge = ('<span class="badge bad">collision</span>' if hit
             else '<span class="badge ok">no collision</span>')
    facts = [f"score <b>{_fmt(row.score, '.0f')}</b>",
             f"progress <b>{_fmt(row.progress, '.0%')}</b>",
             f"min TTC <b>{_fmt(row.min_ttc_s, '.2f', ' s')}</b>",
             f"frames <b>{_fmt(row.frames, 'd')}</b>"]
    if hit:
        facts.insert(0, f"impact <b>{_fmt(row.impact_speed_mps, '.1f', ' m/s')}</b>"
                        + (f" at <b>{row.collision_t_s:.2f} s</b>"
                           if row.collision_t_s is not None else ""))
    parts = [f'<section class="card" id="{escape(sec.anchor)}">',
             f"<h2>{escape(sec.name)}{badge}</h2>", f'<p class="facts">{" · ".join(facts)}</p>']
    if sec.video_mp4:
        poster = (f' poster="{_data_uri("image/jpeg", sec.poster_jpeg)}"'
                  if sec.poster_jpeg else "")
        parts.append(
            f'<div class="media"><video controls preload="metadata" muted playsinline{poster}>'
            f'<source src="{_data_uri("video/mp4", sec.video_mp4)}" type="video/mp4"></video>'
            f'<span class="note">Camera <b>{escape(sec.camera_id or "?")}</b>: detections '
            "(class, track id, range, TTC), the planned path, control values and the latest "
            "warning. "
            + (f'<a href="{escape(sec.video_file)}" download>Download the MP4</a>.'
               if sec.video_file else "")
            + "</span></div>")
    parts.extend(f'<p class="note">{escape(n)}</p>' for n in sec.notes)
    figures = "".join(f"<figure><figcaption>{escape(p.title)}</figcaption>"
                      f"{inline_svg(p.svg, f'{sec.anchor}-{p.key}-')}</figure>"
                      for p in sec.plots)
    parts.append(f'<div class="plots">{figures}</div></section>')
    return "".join(parts)


def report_page(summary: RunSummary, sections: Sequence[ScenarioSection], *,
                path_half_width_m: float = PATH_HALF_WIDTH_M) -> str:
    """The whole page."""
    run_id = summary.run_id
    when = dt.datetime.fromtimestamp(summary.created_ns / 1e9, tz=dt.UTC).strftime(
        "%Y-%m-%d %H:%M UTC")
    meta = [f"created {when}", f"clock {summary.clock}",
            "closed loop" if summary.closed_loop else "open loop",
            f"detector {summary.perception.model_version}",
            f"frames dropped {summary.perception.frames_dropped}"]
    notes = ("Time axes are simulation time since each scenario's start. Latency: a frame "
             "published → its control published (Kafka timestamps); rolling p50 / p99 over the "
             f"last {LATENCY_WINDOW_S:g} s. TTC: the lowest time to collision over the perceived "
             "objects of each frame on a collision course (predicted within "
             f"{path_half_width_m:g} m of the ego's axis at their TTC), drawn up to "
             f"{TTC_CLIP_S:g} s. Steering: tire angle in degrees, positive to the left.")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>roadstream run {escape(run_id)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>roadstream run {escape(run_id)}</h1>"
        f"<div class=\"meta\">{escape(' · '.join(meta))}</div></header><main>"
        f"<section class=\"card\"><h2>Scorecard</h2>"
        f"{scorecard_table(summary, [s.anchor for s in sections])}"
        f"<p class=\"note\">{escape(notes)}</p></section>"
        + "".join(section_html(s) for s in sections)
        + "</main></body></html>\n")
