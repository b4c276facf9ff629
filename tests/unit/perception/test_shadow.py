"""The shadow comparator on hand-made detections whose matches are known."""

from __future__ import annotations

import pytest

from perception.detections import Detections
from perception.shadow import ShadowComparator, match_frame

CAR, TRUCK, PED = 1, 2, 3


def dets(*rows: tuple[float, float, float, float, int, float]) -> Detections:
    """Detections from ``(x1, y1, x2, y2, class id, score)`` rows."""
    return Detections.from_arrays([r[:4] for r in rows], [r[4] for r in rows],
                                  [r[5] for r in rows])


def test_identical_frames_agree_fully() -> None:
    frame = dets((0, 0, 10, 10, CAR, 0.9), (20, 20, 40, 50, PED, 0.8))
    match = match_frame(frame, frame)
    assert match.matched == {"car": 1, "pedestrian": 1}
    comparator = ShadowComparator()
    comparator.add(frame, frame, production_ms=10, shadow_ms=12)
    s = comparator.summary()
    assert (s["matched"], s["recall"], s["precision"], s["agreement"]) == (2, 1.0, 1.0, 1.0)


def test_class_iou_and_one_to_one_rules() -> None:
    production = dets((0, 0, 10, 10, CAR, 0.9),      # found by the shadow (IoU 0.81)
                      (100, 0, 110, 10, CAR, 0.9),   # shadow box too far off (IoU 1/3)
                      (200, 0, 210, 10, TRUCK, 0.9),  # shadow calls it a car
                      (300, 0, 310, 10, PED, 0.9))    # missed
    shadow = dets((0, 0, 9, 9, CAR, 0.7),
                  (0, 0, 10, 10, CAR, 0.6),           # a second box on the same car: unmatched
                  (105, 0, 115, 10, CAR, 0.8),
                  (200, 0, 210, 10, CAR, 0.9),
                  (500, 0, 510, 10, PED, 0.5))        # production has nothing there
    match = match_frame(production, shadow)
    assert match.production == {"car": 2, "truck": 1, "pedestrian": 1}
    assert match.shadow == {"car": 4, "pedestrian": 1}
    assert match.matched == {"car": 1}
    comparator = ShadowComparator()
    comparator.add(production, shadow, production_ms=20, shadow_ms=30)
    s = comparator.summary()
    assert (s["production_boxes"], s["shadow_boxes"], s["matched"]) == (4, 5, 1)
    assert s["recall"] == 0.25
    assert s["precision"] == 0.2
    assert s["agreement"] == round(2 / 9, 4)
    assert s["per_class"] == {
        "car": {"production_boxes": 2, "shadow_boxes": 4, "matched": 1, "recall": 0.5},
        "truck": {"production_boxes": 1, "shadow_boxes": 0, "matched": 0, "recall": 0.0},
        "pedestrian": {"production_boxes": 1, "shadow_boxes": 1, "matched": 0, "recall": 0.0}}


def test_window_sums_frames_latency_and_skips_then_resets() -> None:
    car = dets((0, 0, 10, 10, CAR, 0.9))
    comparator = ShadowComparator()
    comparator.add(car, car, production_ms=10, shadow_ms=40)
    comparator.add(car, Detections.empty(), production_ms=30, shadow_ms=20)
    comparator.skip(3)
    s = comparator.summary()
    assert (s["frames"], s["frames_skipped"]) == (2, 3)
    assert (s["production_boxes"], s["shadow_boxes"], s["matched"]) == (2, 1, 1)
    assert (s["recall"], s["precision"], s["agreement"]) == (0.5, 1.0, round(2 / 3, 4))
    assert s["latency"]["production"]["mean_ms"] == 20.0
    assert s["latency"]["shadow"]["mean_ms"] == 30.0
    assert s["latency"]["shadow"]["p95_ms"] == pytest.approx(39.0)
    comparator.reset()
    s = comparator.summary()
    assert (s["frames"], s["frames_skipped"], s["matched"]) == (0, 0, 0)
    assert s["latency"]["production"]["mean_ms"] is None


def test_no_boxes_is_no_figure_not_agreement() -> None:
    comparator = ShadowComparator()
    comparator.add(Detections.empty(), Detections.empty(), production_ms=5, shadow_ms=5)
    s = comparator.summary()
    assert (s["frames"], s["recall"], s["precision"], s["agreement"]) == (1, None, None, None)
    with pytest.raises(ValueError, match="skipped frames must be >= 0"):
        comparator.skip(-1)
