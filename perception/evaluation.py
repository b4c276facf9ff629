"""COCO-style detection metrics (pycocotools), overall, per class and per condition.

``evaluate_detections`` takes ground truth and predictions keyed by any hashable image key and
returns mAP@0.5, mAP@[0.5:0.95] (COCO's 101-point interpolated AP, up to 100 detections per
image, all areas), AP@0.5 per class, and the same figures for each condition (day, dusk, night,
rain, fog …) when an image → condition map is given. Classes with no ground truth in a split do
not count towards that split's mean, as in COCO.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from common.classes import CLASS_NAMES
from perception.detections import Detections

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class GroundTruth:
    """True objects of one image: ``boxes`` ``(N, 4)`` xyxy [px], ``class_ids`` ``(N,)``."""

    boxes: np.ndarray
    class_ids: np.ndarray

    @classmethod
    def from_arrays(cls, boxes: object, class_ids: object) -> GroundTruth:
        """Normalise dtypes and shapes; raises ``ValueError`` on length mismatch."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        c = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        if b.shape[0] != c.shape[0]:
            raise ValueError(f"{b.shape[0]} boxes but {c.shape[0]} class ids")
        return cls(b, c)


@dataclass(frozen=True)
class DetectionMetrics:
    """Detection quality of one split; ``nan`` where a split has no ground truth.

    ``per_class_ap50`` maps class name → AP@0.5 for classes with ground truth in the split.
    """

    map50: float
    map50_95: float
    per_class_ap50: dict[str, float]
    num_images: int
    num_ground_truth: int
    num_predictions: int
    per_condition: dict[str, DetectionMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``nan`` becomes ``None``)."""

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else round(float(v), 6)

        return {
            "map50": clean(self.map50),
            "map50_95": clean(self.map50_95),
            "per_class_ap50": {k: clean(v) for k, v in self.per_class_ap50.items()},
            "num_images": self.num_images,
            "num_ground_truth": self.num_ground_truth,
            "num_predictions": self.num_predictions,
            "per_condition": {k: v.to_dict() for k, v in self.per_condition.items()},
        }


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _build_coco(
    ground_truth: Mapping[K, GroundTruth],
    predictions: Mapping[K, Detections],
    keys: Sequence[K],
    categories: Sequence[int],
    class_names: Sequence[str],
) -> tuple[COCO, COCO]:
    images = [{"id": i + 1} for i in range(len(keys))]
    cats = [{"id": c, "name": class_names[c] if c < len(class_names) else str(c)} for c in categories]
    gt_anns: list[dict[str, Any]] = []
    dt_anns: list[dict[str, Any]] = []
    for i, key in enumerate(keys):
        gt = ground_truth[key]
        for box, cls in zip(gt.boxes, gt.class_ids, strict=True):
            xywh = _xywh(box)
            gt_anns.append(
                {"id": len(gt_anns) + 1, "image_id": i + 1, "category_id": int(cls),
                 "bbox": xywh, "area": xywh[2] * xywh[3], "iscrowd": 0}
            )
        pred = predictions.get(key)
        if pred is None:
            continue
        for box, cls, score in zip(pred.boxes, pred.class_ids, pred.scores, strict=True):
            xywh = _xywh(box)
            dt_anns.append(
                {"id": len(dt_anns) + 1, "image_id": i + 1, "category_id": int(cls),
                 "bbox": xywh, "area": xywh[2] * xywh[3], "iscrowd": 0, "score": float(score)}
            )
    # Built in memory rather than via loadRes, which fails on an empty prediction list.
    coco_gt, coco_dt = COCO(), COCO()
    coco_gt.dataset = {"images": images, "categories": cats, "annotations": gt_anns}
    coco_dt.dataset = {"images": images, "categories": cats, "annotations": dt_anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt.createIndex()
    return coco_gt, coco_dt


def _evaluate_split(
    coco_gt: COCO,
    coco_dt: COCO,
    image_ids: list[int],
    categories: Sequence[int],
    class_names: Sequence[str],
) -> tuple[float, float, dict[str, float]]:
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    evaluator.params.imgIds = image_ids
    evaluator.params.catIds = list(categories)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    # precision[T, R, K, A, M]: IoU thresholds, recall points, classes, areas (0 = all),
    # max detections (2 = 100). -1 marks classes without ground truth.
    precision = evaluator.eval["precision"][:, :, :, 0, 2]
    per_class: dict[str, float] = {}
    ap_all: list[float] = []
    ap50: list[float] = []
    for k, cat in enumerate(categories):
        p_all = precision[:, :, k]
        if (p_all > -1).sum() == 0:
            continue
        name = class_names[cat] if cat < len(class_names) else str(cat)
        per_class[name] = float(np.mean(p_all[0][p_all[0] > -1]))
        ap50.append(per_class[name])
        ap_all.append(float(np.mean(p_all[p_all > -1])))
    if not ap50:
        return math.nan, math.nan, per_class
    return float(np.mean(ap50)), float(np.mean(ap_all)), per_class


def evaluate_detections(
    ground_truth: Mapping[K, GroundTruth],
    predictions: Mapping[K, Detections],
    *,
    conditions: Mapping[K, str] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
) -> DetectionMetrics:
    """COCO mAP of ``predictions`` against ``ground_truth``.

    The images evaluated are the keys of ``ground_truth`` (an image with no objects is a key
    with empty arrays); predictions for other keys are ignored, a missing prediction is an empty
    one. ``conditions`` maps image key → condition name for the per-condition split. Class ids
    are ours (``class_names[id]``); every id present in the ground truth or the predictions
    is evaluated.
    """
    keys = list(ground_truth)
    cat_set: set[int] = set()
    for key in keys:
        cat_set.update(int(c) for c in ground_truth[key].class_ids)
        if key in predictions:
            cat_set.update(int(c) for c in predictions[key].class_ids)
    categories = sorted(cat_set)
    coco_gt, coco_dt = _build_coco(ground_truth, predictions, keys, categories, class_names)

    def split(subset: list[int]) -> DetectionMetrics:
        n_gt = sum(len(ground_truth[keys[i - 1]].class_ids) for i in subset)
        n_dt = sum(len(predictions[keys[i - 1]]) for i in subset if keys[i - 1] in predictions)
        if not categories or not subset:
            return DetectionMetrics(math.nan, math.nan, {}, len(subset), n_gt, n_dt)
        m50, m5095, per_class = _evaluate_split(coco_gt, coco_dt, subset, categories, class_names)
        return DetectionMetrics(m50, m5095, per_class, len(subset), n_gt, n_dt)

    overall = split(list(range(1, len(keys) + 1)))
    per_condition: dict[str, DetectionMetrics] = {}
    if conditions:
        names = sorted({conditions[k] for k in keys if k in conditions})
        for name in names:
            subset = [i + 1 for i, k in enumerate(keys) if conditions.get(k) == name]
            per_condition[name] = split(subset)
    return DetectionMetrics(
        overall.map50,
        overall.map50_95,
        overall.per_class_ap50,
        overall.num_images,
        overall.num_ground_truth,
        overall.num_predictions,
        per_condition,
    )
