"""Scorecard rows and run summaries shaped like the main job's, and perceived objects."""

from __future__ import annotations

from collections.abc import Sequence

from evaluation.scorecard import PerceptionStats, RunFiles, RunSummary, ScenarioScore, Totals
from services.messages import DetectedObject
from services.messages.examples import perception_objects


def score(name: str, *, collision: bool = False, collision_t_s: float | None = None,
          frames: int = 0) -> ScenarioScore:
    """A scorecard row like the main job's."""
    return ScenarioScore.model_validate({
        "name": name, "vehicle_id": "ego", "collision": collision,
        "impact_speed_mps": 4.2 if collision else 0.0, "collision_t_s": collision_t_s,
        "min_ttc_s": 0.5, "min_distance_m": 0.0 if collision else 3.0, "progress": 0.5,
        "max_decel_mps2": 1.0, "max_jerk_mps3": 2.0, "max_lateral_deviation_m": 0.1,
        "latency_ms": {"p50": 70.0, "p99": 80.0, "n": frames},
        "control_modes": {"normal": frames}, "control_timeouts": 0, "frames": frames,
        "score": 30.0 if collision else 50.0})


def run_summary(run_id: str, rows: Sequence[ScenarioScore], *, created_ns: int = 0,
                clock: str = "lockstep") -> RunSummary:
    """A closed-loop run's summary of these rows (totals computed, no recording)."""
    return RunSummary(run_id=run_id, clock=clock, closed_loop=True, scenarios=list(rows),
                      totals=Totals.of(rows), created_ns=created_ns,
                      perception=PerceptionStats(model_version="test", frames_dropped=0),
                      files=RunFiles())


def moving(track_id: int, x: float, y: float, vx: float, vy: float,
           ttc: float | None) -> DetectedObject:
    """A perceived car at ``(x, y)`` [m] in the ego frame, moving at ``(vx, vy)`` [m/s] relative
    to the ego, with TTC ``ttc`` [s]."""
    car = perception_objects().objects[0]
    return car.model_copy(update={
        "track_id": track_id, "ttc_s": ttc,
        "position_m": car.position_m.model_copy(update={"x": x, "y": y}) if car.position_m else None,
        "velocity_mps": car.velocity_mps.model_copy(update={"x": vx, "y": vy})
        if car.velocity_mps else None})
