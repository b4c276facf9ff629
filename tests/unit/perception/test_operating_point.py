"""The operating point: F1-best score threshold, greedy matching, and what the tracker takes from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.architectures import DetectorSpec, build_from_spec
from perception.checkpoint import DEFAULT_SCORE_THRESH, load_detector, save_checkpoint
from perception.detections import Detections
from perception.operating_point import best_f1, match_scores
from perception.tracking import BIRTH_MARGIN, TrackerConfig


def test_best_f1_picks_the_threshold_with_the_highest_f1() -> None:
    # 4 objects. Sorted: 0.9 TP, 0.8 TP, 0.6 FP, 0.5 TP, 0.3 FP, 0.2 TP.
    scores = np.array([0.5, 0.9, 0.2, 0.6, 0.8, 0.3])
    hits = np.array([1, 1, 1, 0, 1, 0])
    point = best_f1(scores, hits, objects=4)
    # F1 at each cut: .4/.5, .667, .571, .75, .667, .8 → the last cut (0.2): P 4/6, R 1.
    assert point.score == pytest.approx(0.2)
    assert point.precision == pytest.approx(4 / 6)
    assert point.recall == pytest.approx(1.0)
    assert point.f1 == pytest.approx(0.8)


def test_best_f1_stops_before_a_tail_of_false_positives() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.35, 0.3])
    hits = np.array([1, 1, 1, 0, 0, 0])
    point = best_f1(scores, hits, objects=3)
    assert point.score == pytest.approx(0.7)
    assert point.f1 == pytest.approx(1.0)


def test_tied_scores_are_kept_or_dropped_together() -> None:
    # Cutting between the two 0.5s would give F1 1.0, but no threshold can do that.
    scores = np.array([0.9, 0.5, 0.5])
    hits = np.array([1, 1, 0])
    point = best_f1(scores, hits, objects=2)
    assert point.score == pytest.approx(0.5)
    assert point.precision == pytest.approx(2 / 3)


@pytest.mark.parametrize(("scores", "hits", "objects"), [
    ([], [], 3), ([0.5], [0], 3), ([0.5], [1], 0),
])
def test_nothing_to_calibrate_on_is_an_error(scores: list[float], hits: list[int], objects: int) -> None:
    with pytest.raises(ValueError, match="nothing to calibrate on"):
        best_f1(np.array(scores), np.array(hits), objects)


def test_match_scores_is_greedy_by_score_and_per_class() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    labels = np.array([1, 3])
    det = Detections.from_arrays(
        np.array([[0, 0, 10, 10],      # car on car: TP (the better score takes it)
                  [1, 0, 10, 10],      # a duplicate of it: FP
                  [20, 20, 30, 30],    # truck on a pedestrian: FP (wrong class)
                  [50, 50, 60, 60]],   # nothing there: FP
                 dtype=np.float32),
        np.array([1, 1, 2, 1]), np.array([0.9, 0.95, 0.8, 0.7], dtype=np.float32))
    tp = match_scores(gt, labels, det)
    assert tp.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_tracker_thresholds_follow_the_operating_score() -> None:
    cfg = TrackerConfig.at_operating_score(0.3)
    assert (cfg.high_thresh, cfg.new_track_thresh, cfg.low_thresh) == pytest.approx(
        (0.3 + BIRTH_MARGIN, 0.3 + BIRTH_MARGIN, 0.1))
    assert TrackerConfig.at_operating_score(0.99).new_track_thresh == 0.95
    assert TrackerConfig.at_operating_score(0.12).low_thresh == pytest.approx(0.06)
    assert TrackerConfig.at_operating_score(None) == TrackerConfig()


def _checkpoint(path: Path, metadata: dict[str, object]) -> Path:
    spec = DetectorSpec(arch="ssdlite", image_size=(64, 112))
    return save_checkpoint(path, build_from_spec(spec), spec, model_version="t", metadata=metadata)


def test_load_detector_runs_at_the_stored_operating_point(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "op.pt", {"operating_point": {"score": 0.28}})
    detector = load_detector(path, device="cpu")
    assert detector.operating_score == pytest.approx(0.28)
    assert detector.score_thresh == pytest.approx(0.1)  # the tracker's second stage needs these
    assert load_detector(path, device="cpu", score_thresh=0.5).score_thresh == 0.5


def test_uncalibrated_weights_use_the_default_floor(tmp_path: Path) -> None:
    detector = load_detector(_checkpoint(tmp_path / "plain.pt", {}), device="cpu")
    assert detector.operating_score is None
    assert detector.score_thresh == DEFAULT_SCORE_THRESH
