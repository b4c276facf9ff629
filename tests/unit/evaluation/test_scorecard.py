"""summary.json as typed models: the same JSON as before, old files still load, a published
schema that validates what the code writes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from evaluation.scorecard import (
    SUMMARY_SCHEMA_VERSION,
    PerceptionStats,
    RunFiles,
    RunSummary,
    ScenarioScore,
    SummaryError,
    Totals,
    driving_score,
    read_summary,
)

ROOT = Path(__file__).resolve().parents[3]

#: One vehicle's metrics as the simulator reports them (`VehicleRun.summary`).
VEHICLE: dict[str, Any] = {
    "vehicle_id": "ego", "frames": 140, "frames_skipped": 2, "control_timeouts": 1,
    "controls_applied": 139, "frame_hash": "ab12", "engaged_at_s": 0.35,
    "latency_ms": {"p50": 71.25, "p99": 92.5, "n": 139}, "control_modes": {"normal": 139},
    "collision_class": "pedestrian", "collision": True, "collision_t_s": 5.05,
    "collision_actor": "child", "impact_speed_mps": 3.1234, "min_distance_m": 0.0,
    "min_ttc_s": 0.4512, "progress": 0.8765, "distance_m": 61.2, "planned_distance_m": 70.0,
    "max_decel_mps2": 6.5, "max_jerk_mps3": 11.25, "max_lateral_deviation_m": 0.1234,
    "max_speed_mps": 11.1, "duration_s": 7.0}

#: The row the main job wrote for `VEHICLE` before the scorecard was typed.
ROW: dict[str, Any] = {
    "name": "cpnc_40kph", "vehicle_id": "ego", "wall_s": 12.5, "collision": True,
    "impact_speed_mps": 3.1234, "collision_t_s": 5.05, "min_ttc_s": 0.4512,
    "min_distance_m": 0.0, "progress": 0.8765, "max_decel_mps2": 6.5, "max_jerk_mps3": 11.25,
    "max_lateral_deviation_m": 0.1234, "latency_ms": {"p50": 71.25, "p99": 92.5, "n": 139},
    "control_modes": {"normal": 139}, "control_timeouts": 1, "frames": 140, "frames_skipped": 2,
    "engaged_at_s": 0.35, "score": 43.8}
#: Fields the row gained since (the closed loop verifies commands); absent in older files.
ADDED = {"commands_rejected": {}, "commands_expired": 0}

#: A whole summary.json as the main job wrote it before `schema_version`.
SUMMARY: dict[str, Any] = {
    "run_id": "20261205-014617-cb2fbb", "clock": "lockstep", "closed_loop": True,
    "camera_rate_hz": None, "scenarios": [ROW], "created_ns": 1_764_900_000_000_000_000,
    "totals": {"scenarios": 1, "collisions": 1, "collision_free_fraction": 0.0,
               "mean_score": 43.8, "mean_progress": 0.877},
    "perception": {"model_version": "det-1", "frames_dropped": 3,
                   "frames_dropped_by_reason": {"stale": 1, "superseded": 2},
                   "batch_size_mean": 1.0},
    "files": {"summary": "summary.json", "recording": "recording.mcap", "audit": "audit.db",
              "perception_log": "perception.log", "planning_log": "planning.log",
              "report": "report.html"}}


def test_the_driving_score_is_progress_times_the_collision_penalty() -> None:
    assert driving_score(0.5, False) == 50.0
    assert driving_score(1.0, True, "pedestrian") == 50.0
    assert driving_score(1.0, True, "truck") == 60.0
    assert driving_score(1.0, True, None) == 60.0  # unnamed: as a car
    assert driving_score(0.8765, True, "cyclist") == 43.8  # to 0.1


def test_a_row_is_what_the_main_job_wrote() -> None:
    row = ScenarioScore.of_vehicle("cpnc_40kph", VEHICLE, 12.5)
    assert row.model_dump() == {**ROW, **ADDED}
    early = {k: v for k, v in VEHICLE.items()
             if k not in ("frames_skipped", "engaged_at_s", "collision_t_s", "collision_class")}
    old = ScenarioScore.of_vehicle("x", early)
    assert (old.frames_skipped, old.engaged_at_s, old.collision_t_s, old.wall_s) == (0, None,
                                                                                     None, None)
    assert old.score == 52.6  # an unnamed collision is penalised as a car's


def test_totals_and_perception_stats_keep_their_rounding() -> None:
    rows = [ScenarioScore.model_validate({**ROW, "collision": c, "score": s, "progress": p})
            for c, s, p in ((False, 100.0, 1.0), (True, 33.3, 0.3333), (False, 66.7, 0.6667))]
    assert Totals.of(rows).model_dump() == {
        "scenarios": 3, "collisions": 1, "collision_free_fraction": 0.667, "mean_score": 66.7,
        "mean_progress": 0.667}
    assert Totals.of([]).model_dump() == {
        "scenarios": 0, "collisions": 0, "collision_free_fraction": None, "mean_score": None,
        "mean_progress": None}
    stats = PerceptionStats.of("det-1", {"superseded": 2, "stale": 1}, [1, 2, 2])
    assert stats.model_dump() == {"model_version": "det-1", "frames_dropped": 3,
                                  "frames_dropped_by_reason": {"stale": 1, "superseded": 2},
                                  "batch_size_mean": 1.67}
    assert list(stats.frames_dropped_by_reason) == ["stale", "superseded"]
    assert PerceptionStats.of("d", {}, []).batch_size_mean == 0.0


def test_the_json_written_is_the_old_one_plus_its_version_and_added_fields() -> None:
    summary = RunSummary.model_validate(SUMMARY)
    assert summary.schema_version == 1  # an unversioned file is version 1
    assert json.dumps(summary.as_json(), sort_keys=True) == json.dumps(
        {**SUMMARY, "scenarios": [{**ROW, **ADDED}], "schema_version": SUMMARY_SCHEMA_VERSION},
        sort_keys=True)
    no_report = copy.deepcopy(SUMMARY)
    del no_report["files"]["report"]
    assert "report" not in RunSummary.model_validate(no_report).as_json()["files"]
    assert RunFiles(report="report.html").model_dump()["report"] == "report.html"


def test_a_summary_of_the_first_runs_still_loads(tmp_path: Path) -> None:
    first = copy.deepcopy(SUMMARY)
    del first["camera_rate_hz"], first["perception"]["frames_dropped_by_reason"]
    del first["files"]["perception_log"], first["files"]["planning_log"], first["files"]["report"]
    for key in ("wall_s", "frames_skipped", "engaged_at_s"):
        del first["scenarios"][0][key]
    (tmp_path / "summary.json").write_text(json.dumps(first), encoding="utf-8")
    summary = read_summary(tmp_path / "summary.json")
    assert summary.scenarios[0].score == 43.8
    assert summary.scenarios[0].frames_skipped == 0
    assert summary.camera_rate_hz is None
    assert summary.files.perception_log is None


def test_an_unreadable_summary_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("{broken", encoding="utf-8")
    with pytest.raises(SummaryError, match=f"{path}: not JSON"):
        read_summary(path)
    path.write_text(json.dumps({**SUMMARY, "totals": None}), encoding="utf-8")
    with pytest.raises(SummaryError, match=f"{path}: not a run summary: totals"):
        read_summary(path)
    with pytest.raises(FileNotFoundError):
        read_summary(tmp_path / "none.json")


def test_the_published_schema_validates_what_the_code_writes() -> None:
    schema = json.loads((ROOT / "docs" / "schemas" / "run-summary.schema.json").read_text(
        encoding="utf-8"))
    assert schema["properties"]["schema_version"]["default"] == SUMMARY_SCHEMA_VERSION
    validator = jsonschema.Draft202012Validator(schema)
    written = RunSummary.model_validate(SUMMARY).as_json()
    validator.validate(written)
    validator.validate(json.loads(json.dumps(written)))
    broken = {**written, "scenarios": [{**ROW, "collision": "maybe"}]}
    assert not validator.is_valid(broken)
    assert not validator.is_valid({k: v for k, v in written.items() if k != "totals"})
