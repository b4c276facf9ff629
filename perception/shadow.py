"""Shadow comparison: how far a candidate model agrees with production on the same frames.

A candidate in shadow sees the frames production serves; for each frame the comparator matches
the candidate's detections to production's, each model's at its own calibrated operating score
(``at_operating_score``) and before tracking: the models are compared, not the trackers' state
(the shadow's trackers start when it starts and see only the frames it ran on, which would
count as disagreement of two identical models). Matching is one to one, greedily by the
candidate's score: a
candidate box matches a production box of the same class at IoU ≥ 0.5
(``perception.operating_point.match_scores``, the rule the operating point is calibrated
with; production's boxes take the place of ground truth). Production is the reference, not the
truth: these figures say how much the candidate would change what planning sees, not which of
the two is right (offline mAP says that).

Over a window of frames it reports:

- ``matched``: matched box pairs; ``production_boxes`` and ``shadow_boxes``: boxes of each;
- ``recall``: matched / production boxes (overall and per class): production's boxes the
  candidate also found;
- ``precision``: matched / shadow boxes: the candidate's boxes production also had;
- ``agreement``: 2·matched / (production + shadow boxes), the F1 of the two above: 1.0 when
  the two models give the same boxes, lower for each box only one of them gives. ``None`` when
  neither gave a box (nothing to agree on is not agreement);
- latency: mean and 95th percentile of each model's inference time per frame [ms].

Pure: no Kafka, no clock; the caller decides what a window is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.classes import CLASS_NAMES
from perception.detections import Detections
from perception.operating_point import MATCH_IOU, match_scores
from perception.tracking import TrackerConfig


@dataclass(frozen=True)
class FrameMatch:
    """One frame compared: boxes per class of each model and matched pairs per class."""

    production: dict[str, int]
    shadow: dict[str, int]
    matched: dict[str, int]

    @property
    def matched_total(self) -> int:
        """Matched pairs over every class."""
        return sum(self.matched.values())


def _class_name(class_id: int) -> str:
    return CLASS_NAMES[class_id] if 0 <= class_id < len(CLASS_NAMES) else str(class_id)


def _per_class(class_ids: np.ndarray, weights: np.ndarray | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i, cid in enumerate(class_ids.tolist()):
        if weights is None or weights[i]:
            name = _class_name(int(cid))
            counts[name] = counts.get(name, 0) + 1
    return counts


def match_frame(production: Detections, shadow: Detections) -> FrameMatch:
    """Match ``shadow``'s boxes to ``production``'s on one frame (see the module).

    Both are one image's detections in the same pixel frame (xyxy [px]); each production box
    is matched at most once, by the highest-scoring shadow box of its class at IoU ≥ 0.5.
    """
    hits = match_scores(production.boxes, production.class_ids, shadow)
    return FrameMatch(production=_per_class(production.class_ids),
                      shadow=_per_class(shadow.class_ids),
                      matched=_per_class(shadow.class_ids, hits))


def at_operating_score(detections: Detections, operating_score: float | None) -> Detections:
    """The detections a model stands by: those scoring at least its calibrated operating score
    (``perception.operating_point``; the tracker's default birth threshold when it has none)."""
    floor = TrackerConfig().high_thresh if operating_score is None else operating_score
    keep = detections.scores >= floor
    return Detections(detections.boxes[keep], detections.class_ids[keep], detections.scores[keep])


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _latency(values_ms: Sequence[float]) -> dict[str, float | None]:
    if not values_ms:
        return {"mean_ms": None, "p95_ms": None}
    arr = np.asarray(values_ms, dtype=np.float64)
    return {"mean_ms": round(float(arr.mean()), 3),
            "p95_ms": round(float(np.percentile(arr, 95)), 3)}


@dataclass
class ShadowComparator:
    """Accumulates frame comparisons over a window; ``summary()`` then ``reset()`` per report."""

    frames: int = 0
    frames_skipped: int = 0
    production_boxes: dict[str, int] = field(default_factory=dict)
    shadow_boxes: dict[str, int] = field(default_factory=dict)
    matched: dict[str, int] = field(default_factory=dict)
    production_ms: list[float] = field(default_factory=list)
    shadow_ms: list[float] = field(default_factory=list)

    def add(self, production: Detections, shadow: Detections, *, production_ms: float,
            shadow_ms: float) -> FrameMatch:
        """Compare one frame and add it to the window; the two inference times [ms] per frame."""
        frame = match_frame(production, shadow)
        for total, counts in ((self.production_boxes, frame.production),
                              (self.shadow_boxes, frame.shadow), (self.matched, frame.matched)):
            for name, n in counts.items():
                total[name] = total.get(name, 0) + n
        self.frames += 1
        self.production_ms.append(float(production_ms))
        self.shadow_ms.append(float(shadow_ms))
        return frame

    def skip(self, frames: int) -> None:
        """Count frames production served but the shadow did not run on (it was behind)."""
        if frames < 0:
            raise ValueError(f"skipped frames must be >= 0, got {frames}")
        self.frames_skipped += frames

    def summary(self) -> dict[str, Any]:
        """The window's figures (see the module), JSON-ready; ratios ``None`` on no boxes."""
        prod, shad, matched = (sum(d.values()) for d in
                               (self.production_boxes, self.shadow_boxes, self.matched))
        classes = sorted(set(self.production_boxes) | set(self.shadow_boxes),
                         key=lambda n: (CLASS_NAMES.index(n) if n in CLASS_NAMES else 99, n))
        per_class = {
            name: {"production_boxes": self.production_boxes.get(name, 0),
                   "shadow_boxes": self.shadow_boxes.get(name, 0),
                   "matched": self.matched.get(name, 0),
                   "recall": _ratio(self.matched.get(name, 0), self.production_boxes.get(name, 0))}
            for name in classes}
        return {"frames": self.frames, "frames_skipped": self.frames_skipped,
                "iou_threshold": MATCH_IOU, "production_boxes": prod, "shadow_boxes": shad,
                "matched": matched, "recall": _ratio(matched, prod),
                "precision": _ratio(matched, shad), "agreement": _ratio(2 * matched, prod + shad),
                "per_class": per_class,
                "latency": {"production": _latency(self.production_ms),
                            "shadow": _latency(self.shadow_ms)}}

    def reset(self) -> None:
        """Start a new window."""
        self.frames = self.frames_skipped = 0
        for d in (self.production_boxes, self.shadow_boxes, self.matched):
            d.clear()
        self.production_ms.clear()
        self.shadow_ms.clear()


def combine_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several windows' summaries (``ShadowComparator.summary``) as one, over all their frames.

    Counts add up and the ratios are computed again from the sums (not averaged); latency is
    each window's mean weighted by its frames (the 95th percentiles cannot be combined and are
    left out). ``ValueError`` when ``reports`` is empty.
    """
    if not reports:
        raise ValueError("no shadow reports to combine")
    total = ShadowComparator()
    for report in reports:
        total.frames += int(report["frames"])
        total.frames_skipped += int(report["frames_skipped"])
        for name, row in report["per_class"].items():
            for bucket, key in ((total.production_boxes, "production_boxes"),
                                (total.shadow_boxes, "shadow_boxes"), (total.matched, "matched")):
                bucket[name] = bucket.get(name, 0) + int(row[key])
    out = total.summary()

    def weighted(model: str) -> float | None:
        pairs = [(r["latency"][model]["mean_ms"], r["frames"]) for r in reports
                 if r["latency"][model]["mean_ms"] is not None and r["frames"]]
        n = sum(f for _, f in pairs)
        return round(sum(m * f for m, f in pairs) / n, 3) if n else None

    out["latency"] = {m: {"mean_ms": weighted(m)} for m in ("production", "shadow")}
    out["reports"] = len(reports)
    return out
