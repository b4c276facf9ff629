"""Every kind of bad scenario file fails with a `ScenarioError` naming file, path and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.library import ScenarioError, UnknownScenarioError, load_scenario

GOOD = """\
name: ok
duration_s: 5
ego: {lane: 0, speed_kph: 30}
actors:
  - {class: car, s_m: 40, lane: 0}
  - {class: pedestrian, s_m: 60, d_m: -5}
  - class: car
    s_m: 80
    lane: 1
    behaviours:
      - {type: brake, decel_mps2: 4, trigger: {distance_m: 30}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def expect_error(path: Path, where: str, reason: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert err.file == str(path)
    assert str(path) in str(err)
    assert err.path == where, str(err)
    assert reason.lower() in err.reason.lower(), str(err)
    return err


def test_the_good_file_loads(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.actors[2].behaviours[0].trigger.distance_m == 30
    assert sc.source == str(tmp_path / "scenario.yaml")


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("s_m: 80", "s_m: 80\n    colour_of_sky: blue"))
    expect_error(path, "actors[2].colour_of_sky", "unknown key")


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("distance_m: 30", "distance_m: far"))
    expect_error(path, "actors[2].behaviours[0].trigger.distance_m", "valid number")


def test_negative_speed(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("speed_kph: 30", "speed_kph: -30"))
    expect_error(path, "ego.speed_kph", "greater than or equal to 0")


def test_negative_trigger_distance(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("distance_m: 30", "distance_m: -5"))
    expect_error(path, "actors[2].behaviours[0].trigger.distance_m", "greater than 0")


def test_unknown_actor_class(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("{class: pedestrian", "{class: spaceship"))
    expect_error(path, "actors[1].class", "input should be")


def test_unknown_behaviour_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("type: brake", "type: teleport"))
    expect_error(path, "actors[2].behaviours[0]", "does not match any of the expected tags")


def test_missing_required_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("duration_s: 5\n", ""))
    expect_error(path, "duration_s", "field required")
    path = write(tmp_path, GOOD.replace("{type: brake, decel_mps2: 4, ", "{type: brake, "))
    expect_error(path, "actors[2].behaviours[0].decel_mps2", "field required")


def test_bad_yaml_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("{class: car, s_m: 40, lane: 0}", "{class: car, s_m: 40"))
    err = expect_error(path, "line 6, column 5", "YAML syntax error")
    assert "line" in str(err)


def test_lane_that_does_not_exist(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("lane: 1", "lane: 4"))
    expect_error(path, "actors[2].lane", "does not exist")


def test_bad_variant_path(tmp_path: Path) -> None:
    text = GOOD + "variants:\n  - name: v1\n    set:\n      actors[7].s_m: 3\n"
    expect_error(write(tmp_path, text), "variants[0].set.actors[7].s_m", "no element")


def test_error_inside_a_variant_names_the_variant(tmp_path: Path) -> None:
    text = GOOD + "variants:\n  - name: v1\n    set: {ego.speed_kph: fast}\n"
    expect_error(write(tmp_path, text), "variants[0].ego.speed_kph", "valid number")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "- just\n- a list\n"), "", "mapping")


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.yaml", "", "no such file")


def test_unknown_scenario_name() -> None:
    with pytest.raises(UnknownScenarioError) as info:
        load_scenario("ccrs_999kph")
    assert "unknown scenario 'ccrs_999kph'" in str(info.value)
    assert "ccrs_30kph" in str(info.value)  # the message lists what exists
    assert isinstance(info.value, ScenarioError)


def test_unknown_colour_and_body(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("{class: car, s_m: 40, lane: 0}",
                                        "{class: car, s_m: 40, lane: 0, appearance: {colour: plaid}}"))
    expect_error(path, "actors[0].appearance.colour", "unknown colour")
    path = write(tmp_path, GOOD.replace("{class: car, s_m: 40, lane: 0}",
                                        "{class: car, s_m: 40, lane: 0, appearance: {body: child}}"))
    expect_error(path, "actors[0].appearance.body", "is not one of")
