"""Rendered detection data: split rule, COCO validity, label rule, randomisation."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from perception.dataset import (
    CONDITIONS,
    MIN_VISIBLE,
    SPLITS,
    build_dataset,
    load_coco,
    parse_size,
    plan_scenes,
    randomise_scenario,
)
from simulators.library import load_scenario

SIZE = (160, 90)  # (w, h) [px]: small, so the test renders fast


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_coco")
    build_dataset(out, images={"train": 10, "val": 5, "test": 10}, size=SIZE, frames_per_scene=5)
    return out


def _scenes(doc: dict[str, Any]) -> set[tuple[int, str]]:
    return {(img["seed"], img["condition"]) for img in doc["images"]}


def test_planned_splits_share_no_seed_or_scene() -> None:
    plans = {s: plan_scenes(s, 600) for s in SPLITS}
    seeds = {s: {sc.seed for sc in p} for s, p in plans.items()}
    scenes = {s: {(sc.seed, sc.condition) for sc in p} for s, p in plans.items()}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not seeds[a] & seeds[b]
        assert not scenes[a] & scenes[b]
    for p in plans.values():
        assert sum(sc.frames for sc in p) == 600
        assert {sc.condition for sc in p} == set(CONDITIONS)


def test_plan_is_deterministic_and_rejects_unknown_split() -> None:
    assert plan_scenes("test", 50) == plan_scenes("test", 50)
    with pytest.raises(ValueError, match="unknown split"):
        plan_scenes("holdout", 10)


def test_coco_files_are_valid(tiny: Path) -> None:
    for split in SPLITS:
        doc = load_coco(tiny / f"{split}.json")
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(tiny / f"{split}.json"))
        assert len(coco.getImgIds()) == len(doc["images"])
        assert [c["id"] for c in doc["categories"]] == [1, 2, 3, 4]
        ids = {img["id"] for img in doc["images"]}
        for img in doc["images"]:
            assert img["condition"] in CONDITIONS
            assert (img["width"], img["height"]) == SIZE
            pixels = cv2.imread(str(tiny / img["file_name"]))
            assert pixels is not None
            assert pixels.shape == (SIZE[1], SIZE[0], 3)
        for ann in doc["annotations"]:
            assert ann["image_id"] in ids
            assert ann["category_id"] in (1, 2, 3, 4)
            x, y, w, h = ann["bbox"]
            assert w > 0
            assert h > 0
            assert x >= -1e-6
            assert y >= -1e-6
            assert x + w <= SIZE[0] + 1e-6
            assert y + h <= SIZE[1] + 1e-6
            assert ann["iscrowd"] in (0, 1)
            if ann["iscrowd"] == 0:
                assert ann["visible_fraction"] >= MIN_VISIBLE


def test_written_splits_share_no_scene(tiny: Path) -> None:
    docs = {s: json.loads((tiny / f"{s}.json").read_text()) for s in SPLITS}
    assert not _scenes(docs["train"]) & _scenes(docs["test"])
    assert not _scenes(docs["train"]) & _scenes(docs["val"])
    assert not _scenes(docs["val"]) & _scenes(docs["test"])
    test_scene_ids = {img["scene_id"] for img in docs["test"]["images"]}
    assert not test_scene_ids & {img["scene_id"] for img in docs["train"]["images"]}


def test_dataset_has_labelled_objects(tiny: Path) -> None:
    doc = load_coco(tiny / "train.json")
    assert sum(1 for a in doc["annotations"] if a["iscrowd"] == 0) > 0


def test_randomise_scenario_sets_condition_and_jitters_pose() -> None:
    base = load_scenario("cut_in")
    a = randomise_scenario(base, "fog", np.random.default_rng(1))
    b = randomise_scenario(base, "fog", np.random.default_rng(1))
    c = randomise_scenario(base, "night", np.random.default_rng(2))
    assert a == b
    assert a.environment.condition == "fog"
    assert c.environment.condition == "night"
    m0, m1 = base.cameras[0].mount, a.cameras[0].mount
    assert abs(m1.pitch_rad - m0.pitch_rad) <= 0.035 + 1e-9
    assert -0.2 - 1e-9 <= m1.z_m - m0.z_m <= 0.25 + 1e-9
    assert m1 != c.cameras[0].mount


def test_parse_size() -> None:
    assert parse_size("640x360") == (640, 360)
    for bad in ("640", "axb", "10x10"):
        with pytest.raises(ValueError):
            parse_size(bad)
