"""The report's plots of one scenario, as standalone SVG documents.

Matplotlib's object API only (a `Figure` with no pyplot): no GUI backend, no global figure
registry, safe in a worker thread. Text stays text in the SVG (`svg.fonttype: none`) so that it
is selectable and small; the id salt is fixed per plot so that the same run gives the same
files.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from services.report.series import ScenarioSeries
from services.simulator.runner import percentile

FIGSIZE_IN = (6.4, 2.7)
TTC_CLIP_S = 10.0  # TTC above this is drawn at the top edge: nothing near is closing
LATENCY_WINDOW_S = 2.0  # rolling window of the latency percentiles [s of simulation time]
SEVERITY_COLOURS = {"info": "#4c78a8", "warning": "#f58518", "critical": "#d62728"}
SEVERITY_MARKERS = {"info": "o", "warning": "D", "critical": "X"}
ACTUAL, COMMANDED = "#1f77b4", "#ff7f0e"


@dataclass(frozen=True)
class Plot:
    """One rendered plot: a key for file names, a title, the SVG text."""

    key: str
    title: str
    svg: str


@dataclass(frozen=True)
class TtcThresholds:
    """The monitor's collision-risk thresholds, drawn on the TTC plot [s]."""

    warning_s: float = 3.0
    critical_s: float = 1.5


def scenario_plots(s: ScenarioSeries, ttc: TtcThresholds | None = None) -> list[Plot]:
    """Every plot of one scenario, in report order."""
    ttc = ttc or TtcThresholds()
    makers: list[tuple[str, str, Callable[[Axes], None]]] = [
        ("speed", "Speed", lambda ax: speed_axes(ax, s)),
        ("accel", "Acceleration", lambda ax: accel_axes(ax, s)),
        ("steering", "Steering", lambda ax: steering_axes(ax, s)),
        ("ttc", "Time to collision", lambda ax: ttc_axes(ax, s, ttc)),
        ("latency", "Frame → control latency", lambda ax: latency_axes(ax, s)),
        ("events", "Events", lambda ax: events_axes(ax, s)),
    ]
    # The events plot grows with its rows (one per event type) so that labels never overlap.
    rows = len({e.type for e in s.events}) + 1
    heights = {"events": max(FIGSIZE_IN[1], 0.9 + 0.32 * rows)}
    return [Plot(key, title, render_svg(draw, salt=f"{s.name}-{key}",
                                        height_in=heights.get(key, FIGSIZE_IN[1])))
            for key, title, draw in makers]


def render_svg(draw: Callable[[Axes], None], *, salt: str,
               height_in: float = FIGSIZE_IN[1]) -> str:
    """Draw on one fresh axes and return the figure as an SVG document (text as text)."""
    fig = Figure(figsize=(FIGSIZE_IN[0], height_in), layout="constrained")
    ax = fig.subplots()
    draw(ax)
    buf = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG document as an element to inline in HTML: no XML prolog, scales to its box, and
    every id (and every reference to one) starts with `prefix`, so that many plots on one page
    never share an id."""
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else svg
    # Keep the viewBox, drop the fixed size, so CSS sets the width and the height follows.
    body = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', body,
                  count=1)
    body = re.sub(r"\s*<metadata>.*?</metadata>", "", body, count=1, flags=re.DOTALL)
    body = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m[1]}"', body)
    body = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m[1]})", body)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m[1]}"', body)


def _collision(ax: Axes, s: ScenarioSeries) -> None:
    if s.collision_t_s is not None:
        ax.axvline(s.collision_t_s, color=SEVERITY_COLOURS["critical"], linestyle=":", lw=1.5,
                   label="collision")


def time_span_s(s: ScenarioSeries) -> float:
    """End of the scenario's time axis [s]: its last sample, event or collision."""
    ends = [float(a[-1]) for a in (s.state_t_s, s.command_t_s, s.ttc_t_s, s.latency_t_s)
            if len(a)]
    ends += [e.t_s for e in s.events[-1:]]
    if s.collision_t_s is not None:
        ends.append(s.collision_t_s)
    return max([*ends, 1.0])


def _finish(ax: Axes, s: ScenarioSeries, ylabel: str) -> None:
    # One time axis for every plot of a scenario, so that they line up when read together.
    end = time_span_s(s)
    ax.set_xlim(-0.01 * end, 1.02 * end)
    ax.set_xlabel("time [s]")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        # Above the axes in one row: a legend inside would hide data somewhere on some run.
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=4, fontsize="small",
                  frameon=False, borderaxespad=0.2, handlelength=1.8)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def speed_axes(ax: Axes, s: ScenarioSeries) -> None:
    """Measured speed and the commanded target speed [m/s]."""
    if not len(s.state_t_s) and not len(s.command_t_s):
        _empty(ax, "no vehicle state recorded")
    ax.plot(s.state_t_s, s.speed_mps, color=ACTUAL, label="actual")
    ax.step(s.command_t_s, s.target_speed_mps, where="post", color=COMMANDED, linestyle="--",
            label="commanded target")
    _collision(ax, s)
    _finish(ax, s, "speed [m/s]")


def accel_axes(ax: Axes, s: ScenarioSeries) -> None:
    """Measured and commanded longitudinal acceleration [m/s²]."""
    if not len(s.state_t_s) and not len(s.command_t_s):
        _empty(ax, "no vehicle state recorded")
    ax.plot(s.state_t_s, s.accel_mps2, color=ACTUAL, label="actual")
    ax.step(s.command_t_s, s.command_accel_mps2, where="post", color=COMMANDED, linestyle="--",
            label="commanded")
    ax.axhline(0.0, color="0.5", lw=0.8)
    _collision(ax, s)
    _finish(ax, s, "acceleration [m/s²]")


def steering_axes(ax: Axes, s: ScenarioSeries) -> None:
    """Measured and commanded steering tire angle, in degrees (positive steers left)."""
    if not len(s.state_t_s) and not len(s.command_t_s):
        _empty(ax, "no vehicle state recorded")
    ax.plot(s.state_t_s, np.degrees(s.steer_rad), color=ACTUAL, label="actual")
    ax.step(s.command_t_s, np.degrees(s.command_steer_rad), where="post", color=COMMANDED,
            linestyle="--", label="commanded")
    ax.axhline(0.0, color="0.5", lw=0.8)
    _collision(ax, s)
    _finish(ax, s, "steering tire angle [deg]")


def ttc_axes(ax: Axes, s: ScenarioSeries, thresholds: TtcThresholds) -> None:
    """Minimum perceived TTC per frame [s], clipped at TTC_CLIP_S, with the monitor thresholds."""
    finite = s.min_ttc_s[~np.isnan(s.min_ttc_s)] if len(s.min_ttc_s) else s.min_ttc_s
    if not len(finite):
        _empty(ax, "no closing object perceived (no TTC)")
    ax.plot(s.ttc_t_s, np.minimum(s.min_ttc_s, TTC_CLIP_S), color=ACTUAL, marker=".", ms=3,
            lw=1, label="min TTC over objects")
    ax.axhline(thresholds.warning_s, color=SEVERITY_COLOURS["warning"], linestyle="--", lw=1,
               label=f"warning < {thresholds.warning_s:g} s")
    ax.axhline(thresholds.critical_s, color=SEVERITY_COLOURS["critical"], linestyle="--", lw=1,
               label=f"critical < {thresholds.critical_s:g} s")
    ax.set_ylim(0.0, TTC_CLIP_S * 1.05)
    _collision(ax, s)
    _finish(ax, s, f"TTC [s] (clipped at {TTC_CLIP_S:g})")


def rolling_percentiles(t_s: np.ndarray, values: np.ndarray, window_s: float,
                        qs: tuple[float, ...] = (50.0, 99.0)) -> np.ndarray:
    """Percentiles over the trailing window (t − window_s, t] at every sample, shape (n, len(qs)).

    Same nearest-rank percentile as the scorecard's figures.
    """
    out = np.full((len(t_s), len(qs)), math.nan)
    start = 0
    for i, t in enumerate(t_s):
        while t_s[start] <= t - window_s:
            start += 1
        window = [float(v) for v in values[start:i + 1]]
        out[i] = [percentile(window, q) for q in qs]
    return out


def latency_axes(ax: Axes, s: ScenarioSeries) -> None:
    """Frame → control latency [ms]: each frame, and rolling p50 / p99 over LATENCY_WINDOW_S."""
    if not len(s.latency_t_s):
        _empty(ax, "no frame with a control recorded")
    else:
        order = np.argsort(s.latency_t_s, kind="stable")
        t, ms = s.latency_t_s[order], s.latency_ms[order]
        roll = rolling_percentiles(t, ms, LATENCY_WINDOW_S)
        ax.plot(t, ms, linestyle="none", marker=".", ms=3, color="0.6", label="per frame")
        ax.plot(t, roll[:, 0], color=ACTUAL, label=f"p50, last {LATENCY_WINDOW_S:g} s")
        ax.plot(t, roll[:, 1], color=SEVERITY_COLOURS["critical"],
                label=f"p99, last {LATENCY_WINDOW_S:g} s")
        ax.set_ylim(bottom=0.0)
    _collision(ax, s)
    _finish(ax, s, "latency [ms]")


def events_axes(ax: Axes, s: ScenarioSeries) -> None:
    """Safety events over time, one row per event type, coloured by severity; the collision."""
    types = sorted({e.type for e in s.events})
    rows = {name: i for i, name in enumerate(types)}
    if s.collision_t_s is not None or s.row.collision:
        rows["collision"] = len(rows)
    for severity in ("info", "warning", "critical"):
        marks = [e for e in s.events if e.severity == severity]
        if marks:
            ax.scatter([e.t_s for e in marks], [rows[e.type] for e in marks],
                       color=SEVERITY_COLOURS[severity], marker=SEVERITY_MARKERS[severity], s=28,
                       label=severity, zorder=3)
    if s.collision_t_s is not None:
        ax.scatter([s.collision_t_s], [rows["collision"]], color="black", marker="*", s=120,
                   label="collision", zorder=4)
    elif "collision" in rows:
        ax.text(0.99, rows["collision"], "collision (time not recorded) ",
                transform=ax.get_yaxis_transform(), ha="right", va="center", color="black")
    if not rows:
        _empty(ax, "no safety events")
        ax.set_yticks([])
    else:
        ax.set_yticks(range(len(rows)), list(rows))
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.tick_params(axis="y", labelsize="small")
    _finish(ax, s, "event type")
