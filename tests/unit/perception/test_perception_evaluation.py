"""COCO mAP and tracking metrics on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.detections import Detections
from perception.evaluation import GroundTruth, evaluate_detections
from perception.tracking_metrics import TrackingFrame, evaluate_tracking

# COCO interpolates precision at 101 recall points 0, 0.01, …, 1.
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def ap_with_full_precision_up_to(recall: float) -> float:
    """AP when precision is 1 up to ``recall`` and no detection reaches further."""
    return float(np.mean(np.less_equal(RECALL_POINTS, recall + 1e-9)))


def gt(boxes: list[list[float]], classes: list[int]) -> GroundTruth:
    return GroundTruth.from_arrays(boxes, classes)


def det(boxes: list[list[float]], classes: list[int], scores: list[float]) -> Detections:
    return Detections.from_arrays(boxes, classes, scores)


A = [10.0, 10.0, 60.0, 50.0]
B = [100.0, 20.0, 140.0, 120.0]
C = [200.0, 200.0, 260.0, 240.0]


def test_perfect_predictions_score_one() -> None:
    truth = {"i1": gt([A, B], [1, 3]), "i2": gt([C], [2]), "i3": gt([A, C], [4, 1])}
    preds = {k: det(v.boxes.tolist(), v.class_ids.tolist(), [0.9] * len(v.class_ids))
             for k, v in truth.items()}
    m = evaluate_detections(truth, preds)
    assert m.map50 == pytest.approx(1.0)
    assert m.map50_95 == pytest.approx(1.0)
    assert m.per_class_ap50 == pytest.approx(
        {"car": 1.0, "truck": 1.0, "pedestrian": 1.0, "cyclist": 1.0}
    )
    assert (m.num_images, m.num_ground_truth, m.num_predictions) == (3, 5, 5)


def test_half_recall() -> None:
    truth = {"i1": gt([A, B], [1, 1])}
    preds = {"i1": det([A], [1], [0.9])}
    m = evaluate_detections(truth, preds)
    assert m.map50 == pytest.approx(ap_with_full_precision_up_to(0.5))  # 51/101
    assert m.map50 == pytest.approx(51 / 101)


def test_false_positive_ranked_first_halves_precision() -> None:
    truth = {"i1": gt([A], [1])}
    preds = {"i1": det([C, A], [1, 1], [0.9, 0.8])}
    assert evaluate_detections(truth, preds).map50 == pytest.approx(0.5)


def test_map50_95_counts_iou_thresholds() -> None:
    truth = {"i1": gt([[0, 0, 100, 100]], [1])}
    preds = {"i1": det([[0, 0, 100, 72]], [1], [0.9])}  # IoU 0.72: TP at 0.50 … 0.70
    m = evaluate_detections(truth, preds)
    assert m.map50 == pytest.approx(1.0)
    assert m.map50_95 == pytest.approx(5 / 10)


def test_wrong_class_is_a_miss_and_per_class_means() -> None:
    truth = {"i1": gt([A, B], [1, 3]), "i2": gt([C, A], [3, 1])}
    preds = {"i1": det([A, B], [1, 3], [0.9, 0.9]), "i2": det([C, A], [3, 2], [0.8, 0.7])}
    m = evaluate_detections(truth, preds)
    assert m.per_class_ap50["car"] == pytest.approx(51 / 101)
    assert m.per_class_ap50["pedestrian"] == pytest.approx(1.0)
    assert "truck" not in m.per_class_ap50  # no truck in the ground truth: not in the mean
    assert m.map50 == pytest.approx((51 / 101 + 1.0) / 2)


def test_per_condition_split() -> None:
    truth = {"d1": gt([A], [1]), "d2": gt([B], [1]), "n1": gt([C], [1]), "n2": gt([A], [1])}
    preds = {"d1": det([A], [1], [0.9]), "d2": det([B], [1], [0.8])}  # night: nothing found
    conditions = {"d1": "day", "d2": "day", "n1": "night", "n2": "night"}
    m = evaluate_detections(truth, preds, conditions=conditions)
    assert set(m.per_condition) == {"day", "night"}
    assert m.per_condition["day"].map50 == pytest.approx(1.0)
    assert m.per_condition["night"].map50 == pytest.approx(0.0)
    assert m.per_condition["night"].num_predictions == 0
    assert m.map50 == pytest.approx(51 / 101)
    assert m.to_dict()["per_condition"]["day"]["map50"] == pytest.approx(1.0)


def test_no_predictions_and_no_ground_truth() -> None:
    assert evaluate_detections({"i1": gt([A], [2])}, {}).map50 == 0.0
    empty = evaluate_detections({"i1": gt([], [])}, {})
    assert math.isnan(empty.map50)
    assert empty.to_dict()["map50"] is None


def test_tracking_metrics_hand_counted() -> None:
    g1, g2, far = [0, 0, 10, 10], [50, 50, 60, 60], [200, 200, 210, 210]
    frames = [
        TrackingFrame.from_lists([1, 2], [g1, g2], [10, 20], [g1, g2]),
        TrackingFrame.from_lists([1, 2], [g1, g2], [10, 20, 30], [g1, g2, far]),  # 1 FP
        TrackingFrame.from_lists([1, 2], [g1, g2], [10], [g1]),  # 1 miss
        TrackingFrame.from_lists([1, 2], [g1, g2], [20, 10], [g1, g2]),  # ids swapped: 2 IDSW
    ]
    m = evaluate_tracking(frames)
    # 7 correspondences, of which the 2 in the swapped frame count as switches, not matches.
    assert (m.num_frames, m.num_objects, m.num_matches) == (4, 8, 5)
    assert (m.num_misses, m.num_false_positives, m.num_switches) == (1, 1, 2)
    assert m.mota == pytest.approx(1 - (1 + 1 + 2) / 8)
    # Best identity assignment: 1↔10 (3 frames), 2↔20 (2 frames): IDTP 5 of 8 true, 8 predicted.
    assert m.idf1 == pytest.approx(2 * 5 / (8 + 8))
    assert m.motp == pytest.approx(0.0)


def test_tracking_iou_threshold_decides_matches() -> None:
    truth = [0, 0, 100, 100]
    hyp = [0, 0, 100, 60]  # IoU 0.6
    frame = TrackingFrame.from_lists([1], [truth], [7], [hyp])
    assert evaluate_tracking([frame], iou_threshold=0.5).num_matches == 1
    strict = evaluate_tracking([frame], iou_threshold=0.7)
    assert (strict.num_matches, strict.num_misses, strict.num_false_positives) == (0, 1, 1)
    assert evaluate_tracking([frame]).motp == pytest.approx(0.4)
