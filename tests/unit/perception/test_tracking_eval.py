"""`roadstream eval --tracking`: tracking and ranging of the shipped weights on a held-out sequence.

The floors sit 0.1 below what the shipped weights measured on this sequence (MOTA and IDF1)
and 0.05 above the measured range error, so a regression in the detector, tracker or ranging
fails the test while platform noise does not.
"""

from __future__ import annotations

import pytest

from perception.checkpoint import load_detector
from perception.eval_run import DEFAULT_WEIGHTS
from perception.tracking_eval import evaluate_tracking_sequences

# measured with the shipped weights (fcos_dense_sim-step5200) on ccrm_50kph, 3 s
MEASURED_MOTA = 1.000
MEASURED_IDF1 = 1.000
MEASURED_RANGE_ERROR = 0.026  # ego-frame centre range (see perception.tracking_eval)


@pytest.fixture(scope="module")
def result() -> dict:  # type: ignore[type-arg]
    detector = load_detector(DEFAULT_WEIGHTS, device="cpu", score_thresh=0.4, num_threads=1)
    return evaluate_tracking_sequences(detector, sequences=("ccrm_50kph",), seconds=3.0)


def test_reports_mota_idf1_and_ranging_per_class(result: dict) -> None:  # type: ignore[type-arg]
    assert set(result) >= {"mota", "idf1", "tracking", "per_sequence", "ranging"}
    assert result["tracking"]["num_frames"] == 60
    assert result["tracking"]["num_objects"] > 0
    assert 0.0 <= result["idf1"] <= 1.0
    assert result["mota"] <= 1.0
    assert set(result["ranging"]["per_class"]) == {"car", "truck", "pedestrian", "cyclist"}


def test_shipped_weights_track_and_range_as_measured(result: dict) -> None:  # type: ignore[type-arg]
    assert result["mota"] >= MEASURED_MOTA - 0.1
    assert result["idf1"] >= MEASURED_IDF1 - 0.1
    assert result["ranging"]["matched_objects"] > 0
    assert result["ranging"]["median_relative_error"] <= MEASURED_RANGE_ERROR + 0.05


def test_hypotheses_on_ignored_objects_are_left_out_and_false_positives_stay() -> None:
    import numpy as np

    from perception.tracking_eval import _on_ignored

    truth = np.array([[100.0, 100.0, 140.0, 130.0]])
    ignored = np.array([[110.0, 100.0, 170.0, 130.0],  # partly hidden behind the true object
                        [300.0, 100.0, 320.0, 106.0]])  # tiny, far away
    hyp = np.array([[101.0, 100.0, 140.0, 131.0],   # on the true object (also inside ignored 0)
                    [130.0, 101.0, 168.0, 129.0],   # on the hidden one: not scored
                    [299.0, 99.0, 321.0, 107.0],    # on the tiny one: not scored
                    [400.0, 100.0, 440.0, 130.0]])  # on nothing: a false positive
    assert _on_ignored(hyp, truth, ignored).tolist() == [False, True, True, False]
    assert _on_ignored(hyp, truth, np.zeros((0, 4))).tolist() == [False] * 4
    assert _on_ignored(hyp, np.zeros((0, 4)), ignored).tolist() == [True, True, True, False]


def test_the_split_picks_the_seed_range_and_is_checked() -> None:
    detector = load_detector(DEFAULT_WEIGHTS, device="cpu", score_thresh=0.4, num_threads=1)
    val = evaluate_tracking_sequences(detector, sequences=("ccrm_50kph",), seconds=0.5, split="val")
    assert val["split"] == "val"
    assert val["tracking"]["num_frames"] == 10
    with pytest.raises(ValueError, match="split must be 'val' or 'test'"):
        evaluate_tracking_sequences(detector, sequences=("ccrm_50kph",), seconds=0.5,
                                    split="train")
