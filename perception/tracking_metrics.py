"""Multi-object tracking metrics (CLEAR-MOT and identity scores) via ``motmetrics``.

Matching is by box IoU ≥ ``iou_threshold`` (class-agnostic, as in MOTChallenge); MOTA counts
misses, false positives and identity switches against the number of true objects; IDF1 is the
F1 score of the best global one-to-one assignment of true to hypothesised identities.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import motmetrics as mm
import numpy as np

from perception.tracking import iou_matrix

_METRICS = (
    "num_frames",
    "num_objects",
    "num_matches",
    "num_misses",
    "num_false_positives",
    "num_switches",
    "mota",
    "motp",
    "idf1",
    "idp",
    "idr",
    "precision",
    "recall",
    "mostly_tracked",
    "mostly_lost",
)


@dataclass(frozen=True)
class TrackingFrame:
    """One frame: true ids and boxes, hypothesis (tracker) ids and boxes, xyxy [px]."""

    gt_ids: np.ndarray
    gt_boxes: np.ndarray
    hyp_ids: np.ndarray
    hyp_boxes: np.ndarray

    @classmethod
    def from_lists(
        cls, gt_ids: object, gt_boxes: object, hyp_ids: object, hyp_boxes: object
    ) -> TrackingFrame:
        """Normalise shapes: ids ``(N,)`` int64, boxes ``(N, 4)`` float64."""
        return cls(
            np.asarray(gt_ids, dtype=np.int64).reshape(-1),
            np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray(hyp_ids, dtype=np.int64).reshape(-1),
            np.asarray(hyp_boxes, dtype=np.float64).reshape(-1, 4),
        )


@dataclass(frozen=True)
class TrackingMetrics:
    """CLEAR-MOT and identity metrics, as motmetrics defines them.

    ``num_matches`` excludes correspondences counted as ``num_switches``; ``motp`` is the mean
    1 − IoU of all correspondences (lower is better); ``mostly_tracked``/``mostly_lost`` count
    true objects tracked ≥ 80 % / ≤ 20 % of their life.
    """

    num_frames: int
    num_objects: int
    num_matches: int
    num_misses: int
    num_false_positives: int
    num_switches: int
    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    precision: float
    recall: float
    mostly_tracked: int
    mostly_lost: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


def iou_distance(gt_boxes: np.ndarray, hyp_boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``(N, M)`` matrix of 1 − IoU for xyxy boxes, NaN (cannot match) where IoU < threshold."""
    iou = iou_matrix(gt_boxes, hyp_boxes)
    return np.where(iou >= iou_threshold, 1.0 - iou, np.nan)


def evaluate_tracking(
    frames: Iterable[TrackingFrame], *, iou_threshold: float = 0.5
) -> TrackingMetrics:
    """MOTA, MOTP, IDF1 and counts over a sequence of frames (in time order)."""
    acc = mm.MOTAccumulator(auto_id=True)
    for frame in frames:
        # Our own IoU: motmetrics 1.4.0's iou_matrix calls np.asfarray, gone in numpy 2.
        dist = iou_distance(frame.gt_boxes, frame.hyp_boxes, iou_threshold)
        acc.update(frame.gt_ids.tolist(), frame.hyp_ids.tolist(), dist)
    summary = mm.metrics.create().compute(acc, metrics=list(_METRICS), name="all")
    row = summary.loc["all"]
    values: dict[str, Any] = {}
    for name in _METRICS:
        v = row[name]
        values[name] = int(v) if name.startswith(("num_", "mostly_")) else float(v)
    return TrackingMetrics(**values)
