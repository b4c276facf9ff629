"""Detection drift: rolling KS tests of scores and counts against a reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.messages import PerceptionObjects, Severity
from services.messages.examples import perception_objects
from services.monitor.drift import DriftCheck, DriftReference, load_reference
from services.monitor.findings import DETECTION_DRIFT, DETECTION_DRIFT_CLEARED, Finding
from tests.unit.monitor.helpers import ns, obs


def frames(rng: np.random.Generator, n: int, *, mean_count: float, a: float, b: float,
           model: str = "m1") -> list[PerceptionObjects]:
    base = perception_objects()
    car = base.objects[0]
    out = []
    for _ in range(n):
        scores = rng.beta(a, b, size=int(rng.poisson(mean_count)))
        objects = [car.model_copy(update={"track_id": j, "score": float(s)})
                   for j, s in enumerate(scores)]
        out.append(base.model_copy(update={"objects": objects, "model_version": model}))
    return out


def feed(check: DriftCheck, items: list[PerceptionObjects], start: int = 0) -> list[Finding]:
    found: list[Finding] = []
    for i, item in enumerate(items):
        found += check.observe(obs("perception.objects", "ego/front", 0.1 * (start + i), start + i),
                               item)
    return found


def test_self_built_reference_no_drift_on_the_same_distribution() -> None:
    rng = np.random.default_rng(1)
    check = DriftCheck(reference_frames=200, window_frames=200, every_frames=50, p_value=0.001)
    assert feed(check, frames(rng, 800, mean_count=3, a=8, b=2)) == []
    last = check.last_result("m1")
    assert last["drift"] is False
    assert last["window_frames"] == 200


def test_a_shift_in_scores_and_counts_is_one_drift_event_that_says_where_the_reference_came_from(
) -> None:
    rng = np.random.default_rng(2)
    check = DriftCheck(reference_frames=200, window_frames=200, every_frames=50, p_value=0.01)
    same = frames(rng, 400, mean_count=3, a=8, b=2)
    shifted = frames(rng, 400, mean_count=1, a=3, b=3)  # night: fewer, less confident
    assert feed(check, same) == []
    found = feed(check, shifted, start=400)
    assert [(f.type, f.severity) for f in found] == [(DETECTION_DRIFT, Severity.WARNING)]
    details = found[0].details
    assert "first 200 frames" in details["reference"]
    assert details["counts_p_value"] < 0.01
    assert details["scores_p_value"] < 0.01
    assert details["model_version"] == "m1"
    # the time range of the tested window: the 200 frames up to the one that raised it
    last = found[0].refs.offset
    assert last is not None
    assert details["window_end_ns"] == ns(0.1 * last)
    assert details["window_start_ns"] == ns(0.1 * (last - 199))
    # back to the reference distribution: one clearing event
    back = feed(check, frames(rng, 400, mean_count=3, a=8, b=2), start=800)
    assert [f.type for f in back] == [DETECTION_DRIFT_CLEARED]


def test_reference_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({
        "model_version": "m1", "description": "validation split",
        "scores": rng.beta(8, 2, size=600).tolist(),
        "counts": rng.poisson(3, size=200).tolist()}))
    ref = load_reference(path)
    assert ref.source == "file reference.json"
    check = DriftCheck(ref, window_frames=100, every_frames=25, p_value=0.01)
    found = feed(check, frames(rng, 100, mean_count=1, a=3, b=3))  # drift from the first test
    assert [f.type for f in found] == [DETECTION_DRIFT]
    assert found[0].details["reference"] == "file reference.json"
    assert found[0].details["reference_description"] == "validation split"
    # another model version is not judged against this model's reference: it builds its own
    other = DriftCheck(ref, reference_frames=50, window_frames=50, every_frames=25)
    assert feed(other, frames(rng, 60, mean_count=1, a=3, b=3, model="m2")) == []
    assert other.last_result("m2") == {}


def test_histogram_reference_from_the_detector_evaluation(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    scores = rng.beta(8, 2, size=3000)
    scores = scores[scores >= 0.3]
    counts = rng.poisson(3, size=500)
    edges = np.round(np.arange(0.3, 1.0001, 0.05), 2)
    path = tmp_path / "reference_scores.json"
    path.write_text(json.dumps({"map50": 0.8, "model_version": "m1", "score_reference": {
        "score_thresh": 0.3, "frames": 500, "score_bins": edges.tolist(),
        "score_hist": np.histogram(scores, bins=edges)[0].tolist(),
        "count_hist": np.bincount(counts).tolist()}}))
    ref = load_reference(path)
    assert ref.score_thresh == 0.3
    assert ref.model_version == "m1"
    assert sorted(ref.counts) == sorted(counts.tolist())  # exact for the counts
    assert len(ref.scores) == len(scores)
    assert abs(float(np.median(ref.scores)) - float(np.median(scores))) < 0.05  # within a bin
    assert "500 frames" in ref.description
    # the same world is not drift; live detections below the threshold are not compared
    check = DriftCheck(ref, window_frames=200, every_frames=50, p_value=0.001)
    live = frames(rng, 400, mean_count=3, a=8, b=2)
    noisy = [f.model_copy(update={"objects": [*f.objects, f.objects[0].model_copy(
        update={"track_id": 99, "score": 0.05})] if f.objects else []}) for f in live]
    assert feed(check, noisy) == []
    assert check.last_result("m1")["drift"] is False


def test_bad_reference_files_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"scores": [0.5], "counts": [1, 2]}')
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_reference(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_reference(path)
    path.write_text('{"score_bins": [0.3, 0.5], "score_hist": [1, 2], "count_hist": [1]}')
    with pytest.raises(ValueError, match="one more edge"):
        load_reference(path)
    path.write_text('{"map50": 0.5}')
    with pytest.raises(ValueError, match="neither samples"):
        load_reference(path)


def test_reference_model_is_a_plain_contract() -> None:
    ref = DriftReference(scores=[0.5] * 20, counts=[1] * 10)
    assert ref.model_version == ""
