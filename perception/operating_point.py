"""A detector's operating point: the score threshold the service and tracker run at.

A score is only meaningful relative to the model that produced it: a short training run gives
correct boxes with scores of 0.3, a long one gives 0.9. So the threshold is not a constant of
the service but a property of the weights, calibrated on the **validation** split (never the
held-out test split) as the score that maximises F1 at IoU ≥ 0.5, and stored in the
checkpoint's metadata (``metadata["operating_point"]``). Matching is greedy in score order per
image and class, as COCO matches; detections mostly inside an ignore region are left out, as
in ``perception.eval_run``.

The tracker takes its thresholds from it (``TrackerConfig.at_operating_score``): detections a
margin above the operating score start and extend tracks; lower ones, down to ByteTrack's 0.1 (or half the
operating score if that is lower), only extend existing tracks, so that is the detector's floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception.architectures import build_from_spec
from perception.checkpoint import load_checkpoint, save_checkpoint
from perception.data_memory import MemoryDataset, load_split
from perception.detections import Detections
from perception.eval_run import drop_ignored, predict
from perception.tracking import iou_matrix

MATCH_IOU = 0.5


@dataclass(frozen=True)
class OperatingPoint:
    """The F1-maximising score threshold and the precision/recall there."""

    score: float
    precision: float
    recall: float
    f1: float
    images: int
    objects: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def match_scores(gt_boxes: np.ndarray, gt_labels: np.ndarray, det: Detections) -> np.ndarray:
    """Per detection of one image: 1.0 if it is a true positive at IoU ≥ 0.5, else 0.0.

    Greedy in descending score: each ground-truth box is taken by the best-scoring detection
    of its class that overlaps it enough, so a higher threshold keeps the same matches.
    """
    tp = np.zeros(len(det), dtype=np.float64)
    if len(det) == 0 or gt_boxes.size == 0:
        return tp
    iou = iou_matrix(det.boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i in np.argsort(-det.scores, kind="stable"):
        ok = (gt_labels == det.class_ids[i]) & ~taken & (iou[i] >= MATCH_IOU)
        if ok.any():
            j = int(np.argmax(np.where(ok, iou[i], -1.0)))
            taken[j] = True
            tp[i] = 1.0
    return tp


def best_f1(scores: np.ndarray, hits: np.ndarray, objects: int, *, images: int = 0) -> OperatingPoint:
    """The F1-maximising threshold over detections with ``scores`` and TP flags ``hits``.

    ``objects``: ground-truth objects in all (the recall denominator). A threshold only falls
    between distinct scores, so ties are kept or dropped together. ``ValueError`` when there is
    nothing to calibrate on (no detection, no object, or no true positive).
    """
    s = np.asarray(scores, dtype=np.float64)
    tp = np.asarray(hits, dtype=np.float64)
    if s.size == 0 or objects <= 0 or not tp.any():
        raise ValueError(f"nothing to calibrate on ({s.size} detections, {int(tp.sum())} true "
                         f"positives, {objects} objects)")
    order = np.argsort(-s, kind="stable")
    s, tp = s[order], tp[order]
    ctp = np.cumsum(tp)
    precision = ctp / np.arange(1, s.size + 1)
    recall = ctp / objects
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    last = np.r_[s[1:] != s[:-1], True]  # the last detection of each run of equal scores
    best = int(np.flatnonzero(last)[np.argmax(f1[last])])
    return OperatingPoint(score=float(s[best]), precision=float(precision[best]),
                          recall=float(recall[best]), f1=float(f1[best]),
                          images=images, objects=objects)


def operating_point(data: MemoryDataset, preds: list[Detections]) -> OperatingPoint:
    """The F1-maximising score threshold of ``preds`` on ``data`` (ignore regions left out)."""
    scores: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    objects = 0
    for i, pred in enumerate(preds):
        kept = drop_ignored(pred, data.ignore[i])
        labels = data.labels[i].cpu().numpy()
        objects += int(labels.size)
        scores.append(kept.scores)
        hits.append(match_scores(data.source_boxes(i), labels, kept))
    return best_f1(np.concatenate(scores) if scores else np.zeros(0),
                   np.concatenate(hits) if hits else np.zeros(0), objects, images=len(preds))


def calibrate_checkpoint(weights: str | Path, val_json: str | Path, *,
                         device: str = "cpu", write: bool = True) -> OperatingPoint:
    """Calibrate ``weights`` on a validation split (``val.json``) and store the point in it."""
    ckpt = load_checkpoint(weights)
    model = build_from_spec(ckpt.spec)
    model.load_state_dict(ckpt.state_dict)
    dev = torch.device(device)
    model = model.to(dev).eval()
    data = load_split(Path(val_json), ckpt.spec.image_size)
    point = operating_point(data, predict(model, data, device=dev))
    if write:
        meta = dict(ckpt.metadata)
        meta["operating_point"] = {**point.to_dict(), "split": Path(val_json).name}
        save_checkpoint(weights, model.cpu(), ckpt.spec, model_version=ckpt.model_version,
                        class_names=ckpt.class_names, metadata=meta)
    return point
