"""Class maps: files, dicts and the errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.classes import CLASS_IDS
from perception.classes import (
    COCO_TO_ROADSTREAM,
    ClassMapError,
    ModelLoadError,
    load_class_map,
)


def test_coco_map_sends_the_named_coco_ids_to_ours() -> None:
    assert COCO_TO_ROADSTREAM[3] == CLASS_IDS["car"]
    assert COCO_TO_ROADSTREAM[8] == CLASS_IDS["truck"]
    assert COCO_TO_ROADSTREAM[1] == CLASS_IDS["pedestrian"]
    assert COCO_TO_ROADSTREAM[2] == CLASS_IDS["cyclist"]
    assert load_class_map(COCO_TO_ROADSTREAM) == COCO_TO_ROADSTREAM


def test_yaml_file_with_names(tmp_path: Path) -> None:
    path = tmp_path / "coco.yaml"
    path.write_text("# COCO → ours\n3: car\n8: truck\n1: pedestrian\n2: cyclist\n")
    assert load_class_map(path) == {3: 1, 8: 2, 1: 3, 2: 4}


def test_json_file_with_string_keys_and_a_map_section(tmp_path: Path) -> None:
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"source": "coco", "map": {"3": 1, "8": "truck"}}))
    assert load_class_map(str(path)) == {3: 1, 8: 2}


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ClassMapError, match=r"nope\.yaml does not exist"):
        load_class_map(path)


def test_class_map_errors_are_model_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        load_class_map(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({3: 7}, "out of range"),
        ({3: 0}, "out of range"),
        ({3: "bus"}, "unknown class name"),
        ({0: 1}, "must be >= 1"),
        ({"three": 1}, "not an integer"),
        ({3: 1.5}, "not an id or a name"),
        ({3: True}, "not an id or a name"),
        ({}, "empty"),
        ({"map": [1, 2]}, "must be a mapping"),
    ],
)
def test_bad_ids_are_rejected(mapping: dict[object, object], message: str) -> None:
    with pytest.raises(ClassMapError, match=message):
        load_class_map(mapping)


def test_bad_id_in_a_file_names_the_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("3: car\n8: 9\n")
    with pytest.raises(ClassMapError, match=r"bad\.yaml: entry 8"):
        load_class_map(path)


def test_unparsable_and_non_mapping_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ClassMapError, match="could not be parsed"):
        load_class_map(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ClassMapError, match="does not hold a mapping"):
        load_class_map(listing)
