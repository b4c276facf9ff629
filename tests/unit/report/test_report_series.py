"""A run's records split into per-scenario time series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.report.series import (
    ScenarioSeries,
    record_run_id,
    scenario_run_ids,
    split_scenarios,
)
from tests.unit.evaluation.helpers import score
from tests.unit.report.helpers import RUN_ID, synthetic_run


@pytest.fixture(scope="module")
def scenarios() -> list[ScenarioSeries]:
    summary, records = synthetic_run()
    return split_scenarios(summary, records)


def test_scenario_run_ids_are_found_in_scenario_order() -> None:
    _, records = synthetic_run()
    assert scenario_run_ids(RUN_ID, records) == [f"{RUN_ID}-00", f"{RUN_ID}-01"]
    frame = next(r for r in records if r.topic == "camera.frames")
    assert record_run_id(frame) == f"{RUN_ID}-00"  # from the run-id header


def test_rows_get_their_own_scenario_data(scenarios: list[ScenarioSeries]) -> None:
    alpha, beta = scenarios
    assert (alpha.name, alpha.run_id) == ("alpha", f"{RUN_ID}-00")
    assert (beta.name, beta.run_id) == ("beta", f"{RUN_ID}-01")
    assert len(alpha.state_t_s) == 20
    assert len(beta.state_t_s) == 6


def test_time_is_simulation_time_from_the_stamps(scenarios: list[ScenarioSeries]) -> None:
    alpha = scenarios[0]
    np.testing.assert_allclose(alpha.state_t_s, np.arange(20) * 0.05)
    np.testing.assert_allclose(alpha.speed_mps, 10.0 + 0.1 * np.arange(20))
    np.testing.assert_allclose(alpha.steer_rad, 0.01 * np.arange(20))


def test_commands_are_deduplicated_and_placed_at_their_source_frame(scenarios: list[ScenarioSeries]) -> None:
    alpha = scenarios[0]
    assert len(alpha.command_t_s) == 20  # the duplicate delivery counts once
    np.testing.assert_allclose(alpha.command_t_s, np.arange(20) * 0.05)
    assert set(alpha.target_speed_mps) == {12.0}
    assert alpha.command_accel_mps2[0] == 1.0
    assert alpha.command_accel_mps2[-1] == -1.0


def test_latency_is_frame_to_control_on_the_kafka_clock(scenarios: list[ScenarioSeries]) -> None:
    alpha = scenarios[0]
    np.testing.assert_allclose(alpha.latency_ms, 60.0 + np.arange(20))
    np.testing.assert_allclose(alpha.latency_t_s, np.arange(20) * 0.05)


def test_min_ttc_per_frame_ignores_objects_without_ttc_or_off_the_path(
        scenarios: list[ScenarioSeries]) -> None:
    alpha = scenarios[0]
    assert len(alpha.min_ttc_s) == 20
    for k, value in enumerate(alpha.min_ttc_s):
        if k % 2:
            assert math.isnan(value)
        else:
            assert value == pytest.approx(5.0 - 0.1 * k)


def test_events_are_placed_on_the_scenario_time_axis(scenarios: list[ScenarioSeries]) -> None:
    alpha, beta = scenarios
    by_type = {e.type: e for e in alpha.events}
    assert set(by_type) == {"collision_risk", "frequency_low"}
    assert by_type["collision_risk"].t_s == pytest.approx(0.5)  # its frame seq 10
    assert by_type["collision_risk"].severity == "critical"
    assert "TTC 1.20 s" in by_type["collision_risk"].text
    # no run id: wall clock 450 ms after the first frame, between frames 4 and 5
    assert by_type["frequency_low"].t_s == pytest.approx(0.225)
    assert [(e.type, round(e.t_s, 3)) for e in beta.events] == [("topic_alive", 0.1)]


def test_collision_time_comes_from_the_scorecard(scenarios: list[ScenarioSeries]) -> None:
    alpha, beta = scenarios
    assert alpha.collision_t_s == pytest.approx(0.8)
    assert beta.collision_t_s is None


def test_video_uses_the_camera_with_most_frames(scenarios: list[ScenarioSeries]) -> None:
    alpha = scenarios[0]
    assert alpha.camera_id == "front"
    assert [f.seq for f in alpha.frames] == list(range(20))
    assert set(alpha.objects) == set(range(20))
    assert alpha.objects[4].objects[0].track_id == 3


def test_a_row_without_records_gets_empty_series() -> None:
    summary, records = synthetic_run()
    summary.scenarios.append(score("gamma"))
    gamma = split_scenarios(summary, records)[2]
    assert gamma.run_id == ""
    assert len(gamma.state_t_s) == 0
    assert not gamma.frames
    assert not gamma.events
