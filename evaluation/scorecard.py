"""The scorecard of a run: ``summary.json`` as typed models, and the driving score.

`RunSummary` is the contract of ``runs/<id>/summary.json``; its JSON Schema is
``docs/schemas/run-summary.schema.json`` (made by ``roadstream docs``). It grows by adding
fields with defaults, never by renaming or re-typing one; ``schema_version`` says which version
wrote a file. Files written before the field existed carry none and read as version 1, and the
fields added since the first runs (wall time, skipped frames, engagement, camera rate, drop
reasons, log files) default, so every summary.json ever written still loads. Unknown keys are
ignored: a newer file still reads with older code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Self

from pydantic import BaseModel, Field, ValidationError

from services.messages.base import describe

#: Version of the summary.json contract written by this code.
SUMMARY_SCHEMA_VERSION: Final = 1
#: CARLA-leaderboard-style penalty factors per collision, by what was hit.
COLLISION_PENALTY: Final = {"pedestrian": 0.5, "cyclist": 0.5, "car": 0.6, "truck": 0.6}


class SummaryError(ValueError):
    """A summary.json that cannot be read; the message names the file and what is wrong."""


def driving_score(progress: float, collision: bool, collision_class: str | None = None) -> float:
    """Route completion × the collision penalty, in [0, 100], to 0.1 (CARLA leaderboard style).

    ``progress`` is the route fraction driven, in [0, 1]; a collision with an unknown or
    unnamed class is penalised as one with a car.
    """
    penalty = 1.0
    if collision:
        penalty *= COLLISION_PENALTY.get(str(collision_class or "car"), 0.6)
    return round(100.0 * float(progress) * penalty, 1)


class LatencyStats(BaseModel):
    """End-to-end latency of a scenario: a frame's capture to its first control received [ms]."""

    p50: float | None = Field(description="Median [ms]; null when no control was received.")
    p99: float | None = Field(description="99th percentile [ms]; null when none was received.")
    n: int = Field(ge=0, description="Frames with a control received.")


class ScenarioScore(BaseModel):
    """One scenario's row of the scorecard (one simulated vehicle in it)."""

    name: str = Field(description="The scenario's name.")
    vehicle_id: str
    wall_s: float | None = Field(default=None, description="The scenario's wall time [s].")
    collision: bool
    impact_speed_mps: float = Field(description="Relative speed at the collision [m/s]; 0 without.")
    collision_t_s: float | None = Field(default=None,
                                        description="Scenario time of the collision [s].")
    min_ttc_s: float | None = Field(description="Lowest true time to collision [s]; null: never "
                                                "closing on anything.")
    min_distance_m: float | None = Field(description="Closest approach to another road user [m].")
    progress: float = Field(description="Route completion in [0, 1].")
    max_decel_mps2: float = Field(description="Largest deceleration [m/s²].")
    max_jerk_mps3: float = Field(description="Largest absolute longitudinal jerk [m/s³].")
    max_lateral_deviation_m: float = Field(description="Largest offset from the lane centre [m].")
    latency_ms: LatencyStats
    control_modes: dict[str, int] = Field(description="Controls applied, by gate mode.")
    control_timeouts: int = Field(description="Ticks without a fresh control.")
    frames: int = Field(description="Camera frames rendered.")
    frames_skipped: int = Field(default=0, description="Frames due while the simulator was "
                                                       "behind the wall clock (real time).")
    engaged_at_s: float | None = Field(default=None, description="Scenario time the stack's "
                                       "commands took over [s]; null: never (or lockstep).")
    commands_rejected: dict[str, int] = Field(
        default_factory=dict, description="Commands the simulated vehicle refused, by reason "
        "(docs/vehicle-client.md); each one is also a command_rejected safety event.")
    commands_expired: int = Field(default=0, description="Genuine commands that arrived after "
                                  "their validity (real time); the vehicle fell back instead.")
    score: float = Field(description="Driving score in [0, 100] (`driving_score`).")

    @classmethod
    def of_vehicle(cls, scenario: str, vehicle: Mapping[str, Any],
                   wall_s: float | None = None) -> Self:
        """The row of one vehicle's metrics as the simulator reports them (a mapping with at
        least the fields above, plus ``collision_class``); ``wall_s``: the scenario's wall time.
        """
        return cls(name=scenario, vehicle_id=vehicle["vehicle_id"], wall_s=wall_s,
                   collision=vehicle["collision"], impact_speed_mps=vehicle["impact_speed_mps"],
                   collision_t_s=vehicle.get("collision_t_s"), min_ttc_s=vehicle["min_ttc_s"],
                   min_distance_m=vehicle["min_distance_m"], progress=vehicle["progress"],
                   max_decel_mps2=vehicle["max_decel_mps2"],
                   max_jerk_mps3=vehicle["max_jerk_mps3"],
                   max_lateral_deviation_m=vehicle["max_lateral_deviation_m"],
                   latency_ms=vehicle["latency_ms"], control_modes=vehicle["control_modes"],
                   control_timeouts=vehicle["control_timeouts"], frames=vehicle["frames"],
                   frames_skipped=vehicle.get("frames_skipped", 0),
                   engaged_at_s=vehicle.get("engaged_at_s"),
                   commands_rejected=vehicle.get("commands_rejected", {}),
                   commands_expired=vehicle.get("commands_expired", 0),
                   score=driving_score(vehicle["progress"], vehicle["collision"],
                                       vehicle.get("collision_class")))


class Totals(BaseModel):
    """Aggregates over the scorecard's rows; the means are null for an empty run."""

    scenarios: int
    collisions: int
    collision_free_fraction: float | None = Field(description="Rows without a collision, to 0.001.")
    mean_score: float | None = Field(description="Mean driving score, to 0.1.")
    mean_progress: float | None = Field(description="Mean route completion, to 0.001.")

    @classmethod
    def of(cls, rows: Sequence[ScenarioScore]) -> Self:
        """The totals of these rows."""
        n = len(rows)
        return cls(scenarios=n, collisions=sum(bool(r.collision) for r in rows),
                   collision_free_fraction=round(sum(not r.collision for r in rows) / n, 3)
                   if n else None,
                   mean_score=round(sum(r.score for r in rows) / n, 1) if n else None,
                   mean_progress=round(sum(r.progress for r in rows) / n, 3) if n else None)


class PerceptionStats(BaseModel):
    """What the perception service counted over the run."""

    model_version: str = Field(description="The detector's model version.")
    frames_dropped: int = Field(description="Frames dropped on purpose, all reasons.")
    frames_dropped_by_reason: dict[str, int] = Field(
        default_factory=dict, description="Frames dropped, by reason (stale, superseded).")
    batch_size_mean: float = Field(default=0.0, description="Mean frames per model run, to 0.01.")

    @classmethod
    def of(cls, model_version: str, frames_dropped: Mapping[str, int],
           batch_sizes: Sequence[int]) -> Self:
        """The stats of a run from its drops by reason and the size of each model run."""
        return cls(model_version=model_version, frames_dropped=sum(frames_dropped.values()),
                   frames_dropped_by_reason=dict(sorted(frames_dropped.items())),
                   batch_size_mean=round(sum(batch_sizes) / max(1, len(batch_sizes)), 2))


class RunFiles(BaseModel):
    """The run directory's files, relative to it; null: not written."""

    summary: str = "summary.json"
    recording: str | None = Field(default=None, description="The MCAP recording of every topic.")
    audit: str = Field(default="audit.db", description="The audit trail (SQLite).")
    perception_log: str | None = None
    planning_log: str | None = None
    report: str | None = Field(default=None, exclude_if=lambda v: v is None,
                               description="The run report; absent when none was written.")


class RunSummary(BaseModel):
    """``runs/<id>/summary.json``: the scorecard of one `roadstream run` and what it wrote."""

    schema_version: int = Field(default=SUMMARY_SCHEMA_VERSION, ge=1,
                                description="Version of this contract; absent in files written "
                                            "before it was versioned, which are version 1.")
    run_id: str
    clock: str = Field(description="lockstep or realtime.")
    closed_loop: bool
    camera_rate_hz: float | None = Field(default=None, description="The cameras' rate cap [Hz]; "
                                                                   "null: the scenarios' own.")
    scenarios: list[ScenarioScore] = Field(description="One row per scenario, in run order; "
                                           "row i ran as scenario run id `<run_id>-<i:02d>`.")
    totals: Totals
    created_ns: int = Field(description="When the summary was made [ns since the Unix epoch].")
    perception: PerceptionStats
    files: RunFiles

    def as_json(self) -> dict[str, Any]:
        """The summary as JSON-ready values: the content of summary.json."""
        return self.model_dump(mode="python")


def read_summary(path: Path) -> RunSummary:
    """The summary in ``path``; SummaryError names the file and what is wrong with it
    (FileNotFoundError when there is none)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SummaryError(f"{path}: not JSON: {exc}") from None
    try:
        return RunSummary.model_validate(data)
    except ValidationError as exc:
        raise SummaryError(f"{path}: not a run summary: {describe(exc)}") from None
