"""The scenario library: every scenario validates, runs, renders and reports ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from services.planning.convert import ego_state
from services.simulator.convert import vehicle_state
from simulators.library import (
    DEFAULT_SCENARIO,
    LIBRARY_DIR,
    list_scenarios,
    load_scenario,
    scenario_names,
)
from simulators.world import World

NAMES = scenario_names()
NCAP = ("ccrs", "ccrm", "ccrb", "cpna", "cpfa", "cpnc", "cbla")
EVERYDAY = ("free_cruise", "curved_road", "stop_and_go", "cut_in", "overtake_slow_truck",
            "stopped_vehicle")


def test_library_has_the_files_and_scenarios_asked_for() -> None:
    assert len(list(LIBRARY_DIR.glob("*.yaml"))) >= 14
    for prefix in NCAP:  # each protocol at more than one test speed
        speeds = {load_scenario(n).ego.speed_kph for n in NAMES if n.startswith(prefix + "_")}
        assert len(speeds) >= 2, prefix
    for name in EVERYDAY:
        assert name in NAMES
    conditions = {load_scenario(n).environment.condition for n in NAMES}
    assert conditions == {"day", "dusk", "night", "rain", "fog"}
    assert DEFAULT_SCENARIO in NAMES


def test_ncap_tests_hold_the_test_speed_and_everyday_scenarios_drive_at_the_limit() -> None:
    for name in NAMES:
        sc = load_scenario(name)
        world = World.from_scenario(sc)
        state = vehicle_state(world.ego_state(), world.road, vehicle_id="ego", stamp_ns=0,
                              run_id="t")
        if name.startswith(tuple(p + "_" for p in NCAP)):
            # The test speed is the driver's cruise speed, on the wire and in the planner.
            assert state.set_speed_mps == pytest.approx(sc.ego.speed_mps), name
            assert ego_state(state).set_speed_mps == pytest.approx(sc.ego.speed_mps), name
        elif name in EVERYDAY:
            assert state.set_speed_mps is None, name


def test_list_scenarios_describes_each() -> None:
    infos = list_scenarios()
    assert [i.name for i in infos] == NAMES
    for info in infos:
        assert info.description
        assert info.duration_s > 0
        assert info.source.endswith(".yaml")
        assert info.speeds_kph["ego"] >= 0
    cpna = next(i for i in infos if i.name == "cpna_40kph")
    assert cpna.speeds_kph == {"ego": 40.0, "walker": 5.0, "parked": 0.0}
    assert "ncap" in cpna.tags


@pytest.mark.parametrize("name", NAMES)
def test_scenario_runs_renders_and_reports(name: str) -> None:
    sc = load_scenario(name)
    world = World.from_scenario(sc)
    for _ in range(5):
        world.step(0.05)
    assert world.t_s == pytest.approx(0.25)
    state = world.ego_state()
    assert state.speed_mps == pytest.approx(sc.ego.speed_mps, abs=0.2)
    for cam_spec in sc.cameras:
        cam = world.cameras[cam_spec.id].scaled(160, 90)
        img = world.render(cam)
        assert img.shape == (90, 160, 3)
        assert img.dtype == np.uint8
        gt = world.ground_truth(cam)
        for obj in gt.objects:
            x1, y1, x2, y2 = obj.box
            assert 0 <= x1 <= x2 <= 160
            assert 0 <= y1 <= y2 <= 90
            assert 0.0 <= obj.visible_fraction <= 1.0
            assert obj.object_class in ("car", "truck", "pedestrian", "cyclist")
