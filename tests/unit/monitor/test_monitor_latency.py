"""Latency: stage delays from stamps, budgets, and one event per window."""

from __future__ import annotations

import pytest

from services.messages import FrameRef
from services.messages.examples import perception_objects, planning_trajectory, vehicle_control
from services.monitor.findings import LATENCY_BUDGET_EXCEEDED
from services.monitor.latency import LatencyCheck, stage_latencies_s
from tests.unit.monitor.helpers import ns, obs

MS = 1_000_000


def test_stage_latencies_from_stamps() -> None:
    objects = perception_objects()  # stamp = capture + 38 ms
    assert stage_latencies_s(objects) == pytest.approx(
        {"perception": 0.038, "perception.decode": 0.0021, "perception.infer": 0.031,
         "perception.track": 0.0004})
    assert stage_latencies_s(planning_trajectory()) == pytest.approx({"planning": 0.045})
    assert stage_latencies_s(vehicle_control()) == pytest.approx({"control": 0.05})


def test_negative_delays_and_missing_sources_are_not_judged() -> None:
    control = vehicle_control()
    skewed = control.model_copy(update={"source": FrameRef(seq=1, stamp_ns=control.stamp_ns + MS)})
    assert stage_latencies_s(skewed) == {}
    assert stage_latencies_s(control.model_copy(update={"source": None})) == {}
    plan = planning_trajectory().model_copy(update={"perception_stamp_ns": None})
    assert stage_latencies_s(plan) == {}


def test_a_burst_over_budget_is_one_event_per_window() -> None:
    check = LatencyCheck({"perception": 100.0}, window_s=10.0)
    found = []
    for i in range(50):  # 5 s of frames at 10 Hz, all at 180 ms
        t = 0.1 * i
        found += check.observe(obs("perception.objects", "ego/front", t, i),
                               {"perception": 0.18 + 0.001 * i}, ns(t))
    assert [f.type for f in found] == [LATENCY_BUDGET_EXCEEDED]
    first = found[0]
    assert first.details["stage"] == "perception"
    assert first.details["latency_ms"] == pytest.approx(180.0)
    assert first.details["budget_ms"] == 100.0
    assert first.vehicle_id == "ego"
    # after the window, the next exceedance is an event that counts the suppressed ones
    later = check.observe(obs("perception.objects", "ego/front", 10.5, 99), {"perception": 0.3},
                          ns(10.5))
    assert len(later) == 1
    assert later[0].details["exceeded_since_last_event"] == 49
    assert later[0].details["worst_since_last_event_ms"] == pytest.approx(229.0)


def test_within_budget_and_unbudgeted_stages_are_silent() -> None:
    check = LatencyCheck({"control": 250.0})
    assert check.observe(obs("vehicle.control", "ego", 0.0), {"control": 0.25}, ns(0.0)) == []
    assert check.observe(obs("vehicle.control", "ego", 0.1), {"perception": 9.0}, ns(0.1)) == []


def test_vehicles_are_rate_limited_separately() -> None:
    check = LatencyCheck({"control": 250.0})
    a = check.observe(obs("vehicle.control", "a", 0.0), {"control": 0.3}, ns(0.0))
    b = check.observe(obs("vehicle.control", "b", 0.0), {"control": 0.3}, ns(0.0))
    assert [f.vehicle_id for f in a + b] == ["a", "b"]
