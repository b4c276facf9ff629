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
MEASURED_RANGE_ERROR = 0.032


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
