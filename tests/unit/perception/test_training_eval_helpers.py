"""Evaluation helpers used by training and `roadstream eval`: ignore regions, metrics, reference."""

from __future__ import annotations

import numpy as np
import torch

from perception.data_memory import MemoryDataset
from perception.detections import Detections
from perception.eval_run import detection_metrics, drop_ignored, score_reference


def _data() -> MemoryDataset:
    boxes = [torch.tensor([[10.0, 10.0, 40.0, 50.0]]), torch.tensor([[50.0, 20.0, 90.0, 60.0]])]
    return MemoryDataset(
        images=torch.zeros((2, 3, 64, 112), dtype=torch.uint8),
        boxes=boxes,
        labels=[torch.tensor([1]), torch.tensor([3])],
        ignore=[np.array([[80.0, 0.0, 100.0, 30.0]]), np.zeros((0, 4))],
        source_size=[(112, 64), (112, 64)],
        conditions=["day", "fog"],
        file_names=["a.jpg", "b.jpg"],
    )


def test_drop_ignored_removes_detections_inside_ignore_regions() -> None:
    det = Detections.from_arrays([[82, 2, 98, 28], [10, 10, 40, 50]], [1, 1], [0.9, 0.8])
    kept = drop_ignored(det, np.array([[80.0, 0.0, 100.0, 30.0]]))
    assert len(kept) == 1
    assert kept.boxes[0].tolist() == [10, 10, 40, 50]
    assert len(drop_ignored(det, np.zeros((0, 4)))) == 2


def test_perfect_predictions_score_one_and_ignored_false_positive_is_free() -> None:
    data = _data()
    preds = [
        Detections.from_arrays([[10, 10, 40, 50], [82, 2, 98, 28]], [1, 2], [0.9, 0.95]),
        Detections.from_arrays([[50, 20, 90, 60]], [3], [0.8]),
    ]
    m = detection_metrics(data, preds)
    assert m["map50"] == 1.0
    assert m["per_class"] == {"car": 1.0, "pedestrian": 1.0}
    assert m["per_condition"]["day"] == 1.0
    assert m["per_condition"]["fog"] == 1.0
    assert m["per_condition"]["night"] is None
    missed = detection_metrics(data, [Detections.empty(), preds[1]])
    assert missed["per_condition"]["day"] == 0.0


def test_score_reference_counts_and_histogram() -> None:
    preds = [
        Detections.from_arrays([[0, 0, 1, 1]] * 3, [1, 1, 1], [0.95, 0.5, 0.1]),
        Detections.empty(),
    ]
    ref = score_reference(preds, thresh=0.3)
    assert ref["frames"] == 2
    assert ref["detections"] == 2
    assert sum(ref["score_hist"]) == 2
    assert ref["count_hist"] == [1, 0, 1]
    assert ref["count_mean"] == 1.0


def test_score_reference_bins_start_at_the_operating_score() -> None:
    preds = [Detections.from_arrays([[0, 0, 1, 1]] * 3, [1, 1, 1], [0.29, 0.26, 0.2])]
    ref = score_reference(preds, thresh=0.25)
    assert ref["score_bins"][0] == 0.25
    assert ref["score_bins"][-1] == 1.0
    assert sum(ref["score_hist"]) == ref["detections"] == 2  # none falls outside the bins
    assert score_reference(preds, thresh=0.27)["score_bins"][0] == 0.25
