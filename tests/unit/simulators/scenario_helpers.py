"""Helpers for the simulator tests: scenarios built from small dicts."""

from __future__ import annotations

from typing import Any

from simulators.library import parse_scenarios
from simulators.scenario import Scenario


def make_scenario(**overrides: Any) -> Scenario:
    """A straight two-lane road, ego at 10 m/s in lane 0; `overrides` replace top-level keys."""
    data: dict[str, Any] = {
        "name": "test",
        "duration_s": 10.0,
        "seed": 5,
        "road": {"lanes": 2, "segments": [{"kind": "straight", "length_m": 500}]},
        "ego": {"lane": 0, "speed_kph": 36.0},
        "actors": [],
    }
    data.update(overrides)
    return parse_scenarios(data, "test.yaml")[0]
