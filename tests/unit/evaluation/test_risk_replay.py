"""Replaying a run's collision-risk events under both rules."""

from __future__ import annotations

import math

from evaluation.risk_replay import markdown, replay
from evaluation.safety import RiskRule
from services.messages import PerceptionObjects
from services.messages.examples import perception_objects
from tests.unit.evaluation.helpers import run_summary, score

RUN = "20261205-000000-abcdef"
SUMMARY = run_summary(RUN, [score("alpha"), score("beta")])


def frames(scenario: int, n: int) -> list[tuple[str, PerceptionObjects]]:
    """A car ahead in the lane closing (TTC 2.0 s down to 1.1 s) and a car parked 3 m to the
    side that the ego passes (TTC 0.6 s), in every frame; with the frames' Kafka key."""
    base = perception_objects()
    car = base.objects[0]
    out = []
    for k in range(n):
        assert car.position_m is not None
        assert car.velocity_mps is not None
        ahead = car.model_copy(update={"track_id": 1, "ttc_s": 2.0 - 0.1 * k})
        parked = car.model_copy(update={
            "track_id": 2, "ttc_s": 0.6, "position_m": car.position_m.model_copy(update={"y": 3.0})})
        po: PerceptionObjects = base.model_copy(update={
            "objects": [ahead, parked], "run_id": f"{RUN}-{scenario:02d}",
            "stamp_ns": base.stamp_ns + k * 50_000_000,
            "source": base.source.model_copy(update={"seq": k})})
        out.append(("ego/front", po))
    return out


def test_each_rule_counts_its_own_events_per_scenario() -> None:
    rows = replay(SUMMARY, frames(0, 10))
    assert rows[0] == {"name": "alpha",
                       "every_closing_track": {"warning": 1, "critical": 2},
                       "collision_course": {"warning": 1, "critical": 1}}
    assert rows[1]["collision_course"] == {"warning": 0, "critical": 0}  # nothing recorded
    table = markdown(rows)
    assert "| alpha | 1 / 2 | 1 / 1 |" in table
    assert table.endswith("| **all** | 1 / 2 | 1 / 1 |")


def test_the_rule_given_sets_the_thresholds() -> None:
    # below 1.0 s only the parked car is critical, and only when every closing track counts
    rows = replay(SUMMARY, frames(1, 10), RiskRule(warning_s=1.5, critical_s=1.0))
    assert rows[1]["every_closing_track"] == {"warning": 1, "critical": 1}
    assert rows[1]["collision_course"] == {"warning": 1, "critical": 0}
    wide = replay(SUMMARY, frames(1, 10), RiskRule(half_width_m=math.inf))
    assert wide[1]["collision_course"] == wide[1]["every_closing_track"]
