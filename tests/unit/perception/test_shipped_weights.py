"""The detector weights shipped in the repo: loadable offline, small, and as accurate as measured.

The fixture ``tests/fixtures/perception_heldout`` holds 40 frames of held-out scenes (test seed
range, two instants per scene, all five conditions), rendered by ``perception.dataset``.
``MEASURED_*`` are what ``evaluate_weights`` gave on that fixture when the weights were
shipped (see perception/weights/MODEL_CARD.md); the floors leave 0.05 for platform noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perception.checkpoint import load_checkpoint, load_detector
from perception.eval_run import DEFAULT_WEIGHTS, evaluate_weights
from perception.operating_point import calibrate_checkpoint

FIXTURE = Path(__file__).parents[2] / "fixtures" / "perception_heldout"
MAX_BYTES = 25 * 1024 * 1024
MEASURED_MAP50 = 0.953  # on FIXTURE, measured when the weights were shipped
FLOOR = MEASURED_MAP50 - 0.05


def test_weights_file_is_small_and_ours() -> None:
    assert DEFAULT_WEIGHTS.is_file(), f"{DEFAULT_WEIGHTS} is missing"
    assert DEFAULT_WEIGHTS.stat().st_size <= MAX_BYTES
    ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    assert ckpt.spec.arch == "fcos_dense"
    assert ckpt.class_names == ("background", "car", "truck", "pedestrian", "cyclist")
    assert "config" in ckpt.metadata


def test_weights_serve_through_load_detector() -> None:
    detector = load_detector(DEFAULT_WEIGHTS, device="cpu", score_thresh=0.3)
    frame = np.zeros((360, 640, 3), np.uint8)
    (dets,) = detector.detect([frame])
    assert dets.boxes.shape[1] == 4


@pytest.fixture(scope="module")
def fixture_metrics() -> dict[str, object]:
    return evaluate_weights(DEFAULT_WEIGHTS, FIXTURE, device="cpu")


def test_map50_on_heldout_fixture_meets_the_measured_floor(fixture_metrics: dict[str, object]) -> None:
    assert fixture_metrics["num_images"] == 40
    assert isinstance(fixture_metrics["map50"], float)
    assert fixture_metrics["map50"] >= FLOOR, json.dumps(fixture_metrics, indent=1)


def test_reference_distribution_ships_beside_the_weights() -> None:
    ref = json.loads(DEFAULT_WEIGHTS.with_name("reference_scores.json").read_text())
    assert ref["score_reference"]["frames"] > 0
    assert set(ref["per_condition"]) == {"day", "dusk", "night", "rain", "fog"}


def test_shipped_weights_carry_an_operating_point_from_validation() -> None:
    point = load_checkpoint(DEFAULT_WEIGHTS).metadata["operating_point"]
    assert point["split"] == "val.json"  # calibrated on validation, never on held-out frames
    assert 0.0 < point["score"] < 1.0
    assert load_detector(DEFAULT_WEIGHTS, device="cpu").operating_score == point["score"]


def test_calibration_on_held_out_frames_lands_near_the_stored_point() -> None:
    stored = load_checkpoint(DEFAULT_WEIGHTS).metadata["operating_point"]
    point = calibrate_checkpoint(DEFAULT_WEIGHTS, FIXTURE / "test.json", write=False)
    assert point.images == 40
    assert point.f1 >= stored["f1"] - 0.15
    assert abs(point.score - stored["score"]) <= 0.2
