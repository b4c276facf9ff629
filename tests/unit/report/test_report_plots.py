"""The report's plots: SVG documents with labelled axes, safe to inline together."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from services.report.plots import (
    LATENCY_WINDOW_S,
    inline_svg,
    rolling_percentiles,
    scenario_plots,
)
from services.report.series import ScenarioSeries, split_scenarios
from tests.unit.evaluation.helpers import score
from tests.unit.report.helpers import synthetic_run

SVG_NS = "{http://www.w3.org/2000/svg}"
EXPECTED_LABELS = {
    "speed": ("time [s]", "speed [m/s]", "actual", "commanded target"),
    "accel": ("time [s]", "acceleration [m/s²]", "commanded"),
    "steering": ("time [s]", "steering tire angle [deg]"),
    "ttc": ("time [s]", "TTC [s] (clipped at 10)", "critical < 1.5 s", "warning < 3 s"),
    "latency": ("time [s]", "latency [ms]", f"p99, last {LATENCY_WINDOW_S:g} s"),
    "events": ("time [s]", "event type", "collision_risk", "frequency_low", "collision"),
}


@pytest.fixture(scope="module")
def alpha() -> ScenarioSeries:
    summary, records = synthetic_run()
    return split_scenarios(summary, records)[0]


def texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()).strip() for t in root.iter(f"{SVG_NS}text")]


def test_every_plot_is_svg_with_its_axis_labels(alpha: ScenarioSeries) -> None:
    plots = scenario_plots(alpha)
    assert [p.key for p in plots] == list(EXPECTED_LABELS)
    for plot in plots:
        words = texts(plot.svg)
        for label in EXPECTED_LABELS[plot.key]:
            assert label in words, f"{plot.key}: {label!r} not in {words}"


def test_plots_draw_the_data(alpha: ScenarioSeries) -> None:
    speed = next(p for p in scenario_plots(alpha) if p.key == "speed")
    root = ET.fromstring(speed.svg)
    # one <path> per line: 20 state samples → a path with 20 vertices (M + 19 L)
    lines = [g for g in root.iter(f"{SVG_NS}g") if g.get("id", "").startswith("line2d")]
    vertex_counts = [len(re.findall(r"[ML]", p.get("d", "")))
                     for g in lines for p in g.iter(f"{SVG_NS}path")]
    assert 20 in vertex_counts


def test_inlined_plots_share_no_ids_and_resolve_their_references(alpha: ScenarioSeries) -> None:
    plots = scenario_plots(alpha)
    owner: dict[str, str] = {}
    for plot in plots:
        inline = inline_svg(plot.svg, f"alpha-{plot.key}-")
        ids = re.findall(r'\bid="([^"]+)"', inline)
        assert len(ids) == len(set(ids))
        clash = set(ids) & set(owner)
        assert not clash, f"{plot.key} reuses ids of {[owner[i] for i in clash]}"
        owner.update(dict.fromkeys(ids, plot.key))
        refs = re.findall(r'href="#([^"]+)"', inline) + re.findall(r"url\(#([^)]+)\)", inline)
        assert refs, "matplotlib SVGs reference their markers and clip paths"
        assert set(refs) <= set(ids)


def test_empty_series_say_so_instead_of_an_empty_frame() -> None:
    empty = ScenarioSeries(name="void", run_id="", vehicle_id="ego", row=score("void"))
    by_key = {p.key: texts(p.svg) for p in scenario_plots(empty)}
    assert "no closing object perceived (no TTC)" in by_key["ttc"]
    assert "no frame with a control recorded" in by_key["latency"]
    assert "no safety events" in by_key["events"]
    assert "no vehicle state recorded" in by_key["speed"]


def test_inline_svg_drops_the_prolog_and_the_fixed_size(alpha: ScenarioSeries) -> None:
    svg = scenario_plots(alpha)[0].svg
    assert svg.startswith("<?xml")
    inline = inline_svg(svg, "p-")
    assert inline.startswith("<svg")
    assert "<metadata" not in inline
    head = inline[:inline.index(">")]
    assert 'width="100%"' in head
    assert "height=" not in head
    assert "viewBox=" in head
    ET.fromstring(inline)  # still well-formed


def test_rolling_percentiles_use_the_trailing_window() -> None:
    t = np.arange(10) * 0.5
    values = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 1000], dtype=float)
    roll = rolling_percentiles(t, values, window_s=1.0)  # (t − 1, t]: this sample and the last
    assert roll[0].tolist() == [10, 10]
    assert roll[3].tolist() == [30, 40]  # nearest rank of [30, 40]
    assert roll[9, 1] == 1000  # p99 picks the spike
    assert roll[8, 1] == 90
