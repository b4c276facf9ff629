"""Detection drift: rolling two-sample Kolmogorov–Smirnov tests against a reference.

Two features per frame of `perception.objects`: the detection scores and the number of
detections. The reference is a JSON file (the model card records which), either samples::

    {"model_version": "ssdlite-sim-1", "scores": [0.91, 0.78, ...], "counts": [3, 2, ...],
     "score_thresh": 0.3, "description": "validation split, day+dusk"}

or the histogram the detector evaluation writes (`score_reference`: `score_bins` edges,
`score_hist`, `count_hist`, `score_thresh`, at the top level or under `score_reference`); a
histogram is expanded to evenly spread samples within each bin, which is exact for the counts
and within a bin width for the scores. Only live detections scoring at least the reference's
`score_thresh` are compared. Without a file, the first `reference_frames` frames of each model
version become its reference, and every drift finding says so. Every `every_frames` frames the
last `window_frames` frames are tested with `scipy.stats.ks_2samp`; drift when either p-value is
below `p_value`. The onset is one `detection_drift` warning, the recovery one
`detection_drift_cleared` info. Both carry `window_start_ns` and `window_end_ns`, the capture
stamps [ns] of the oldest and newest frame of the tested window: the time range a retraining
request (`services.retrain`) takes the drifted frames from.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import ks_2samp

from services.messages import PerceptionObjects, Severity
from services.monitor.findings import DETECTION_DRIFT, DETECTION_DRIFT_CLEARED, Finding, Observation

MIN_SCORES = 20  # fewer scores than this in a sample: the score test is not run


class DriftReference(BaseModel):
    """A reference distribution of detection scores and per-frame detection counts."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    scores: list[float] = Field(min_length=MIN_SCORES)
    counts: list[int] = Field(min_length=10)
    score_thresh: float = Field(default=0.0, ge=0, le=1,
                                description="Detections below this score are not compared.")
    model_version: str = ""
    description: str = ""
    source: str = Field(default="", description="Where it came from (set on load).")


def load_reference(path: Path) -> DriftReference:
    """Read a reference JSON file (samples or histogram); ValueError naming the file and problem."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object")
        ref = DriftReference.model_validate(raw if "scores" in raw else _from_histogram(raw))
    except (OSError, ValueError) as exc:  # JSONDecodeError and ValidationError are ValueErrors
        raise ValueError(f"drift reference {str(path)!r}: {exc}") from exc
    return ref.model_copy(update={"source": f"file {path.name}"})


def _from_histogram(raw: dict[str, Any]) -> dict[str, Any]:
    hist = raw.get("score_reference", raw)
    if not isinstance(hist, dict) or not {"score_bins", "score_hist", "count_hist"} <= set(hist):
        raise ValueError("neither samples (scores, counts) nor a histogram (score_bins, "
                         "score_hist, count_hist)")
    edges = [float(e) for e in hist["score_bins"]]
    heights = [int(n) for n in hist["score_hist"]]
    if len(edges) != len(heights) + 1:
        raise ValueError("score_bins must have one more edge than score_hist has bins")
    scores = [lo + (k + 0.5) * (hi - lo) / n
              for lo, hi, n in zip(edges[:-1], edges[1:], heights, strict=True) for k in range(n)]
    counts = [c for c, n in enumerate(int(n) for n in hist["count_hist"]) for _ in range(n)]
    frames = hist.get("frames", len(counts))
    return {"scores": scores, "counts": counts,
            "score_thresh": float(hist.get("score_thresh", edges[0] if edges else 0.0)),
            "model_version": str(raw.get("model_version", "") or ""),
            "description": str(raw.get("description", "") or f"score histogram of {frames} frames")}


@dataclass
class _Stream:
    """Per model version: the reference (given or being built) and the rolling window."""

    reference: DriftReference | None
    building_scores: list[float] = field(default_factory=list)
    building_counts: list[int] = field(default_factory=list)
    window: deque[list[float]] = field(default_factory=deque)
    stamps_ns: deque[int] = field(default_factory=deque)  # capture stamp of each window frame
    since_test: int = 0
    drifting: bool = False
    last: dict[str, Any] = field(default_factory=dict)


class DriftCheck:
    """KS tests of scores and counts per model version, against a file or the first frames."""

    def __init__(self, reference: DriftReference | None = None, *, reference_frames: int = 200,
                 window_frames: int = 200, every_frames: int = 50, p_value: float = 0.01,
                 max_scores: int = 5000) -> None:
        self._file = reference
        self._reference_frames = reference_frames
        self._window = window_frames
        self._every = every_frames
        self._alpha = p_value
        self._max_scores = max_scores
        self._streams: dict[str, _Stream] = {}

    def observe(self, obs: Observation, objects: PerceptionObjects) -> list[Finding]:
        """Add a frame; a finding when the drift verdict of its model version changes."""
        version = objects.model_version
        stream = self._streams.get(version)
        if stream is None:
            given = self._file if self._file is not None and self._file.model_version in ("", version) \
                else None
            stream = self._streams[version] = _Stream(given, window=deque(maxlen=self._window),
                                                      stamps_ns=deque(maxlen=self._window))
        thresh = stream.reference.score_thresh if stream.reference is not None else 0.0
        scores = [o.score for o in objects.objects if o.score >= thresh]
        if stream.reference is None:
            self._build(stream, scores, version)
            return []
        stream.window.append(scores)
        stream.stamps_ns.append(obs.stamp_ns)
        stream.since_test += 1
        if len(stream.window) < self._window or stream.since_test < self._every:
            return []
        stream.since_test = 0
        result = self._test(stream.reference, stream.window)
        stream.last = result
        drifting = bool(result["drift"])
        if drifting == stream.drifting:
            return []
        stream.drifting = drifting
        details = {**result, "model_version": version, "reference": stream.reference.source,
                   "reference_description": stream.reference.description,
                   "window_start_ns": min(stream.stamps_ns), "window_end_ns": max(stream.stamps_ns)}
        if drifting:
            return [Finding(DETECTION_DRIFT, Severity.WARNING, objects.vehicle_id, details=details,
                            refs=obs.refs(frame_seq=objects.source.seq), run_id=objects.run_id)]
        return [Finding(DETECTION_DRIFT_CLEARED, Severity.INFO, objects.vehicle_id, details=details,
                        refs=obs.refs(frame_seq=objects.source.seq), run_id=objects.run_id)]

    def last_result(self, model_version: str) -> dict[str, Any]:
        """The last test of a model version (empty before the first)."""
        stream = self._streams.get(model_version)
        return dict(stream.last) if stream is not None else {}

    def _build(self, stream: _Stream, scores: list[float], version: str) -> None:
        stream.building_counts.append(len(scores))
        stream.building_scores.extend(scores)
        if len(stream.building_counts) < self._reference_frames:
            return
        stream.reference = DriftReference.model_construct(
            scores=stream.building_scores[-self._max_scores:], counts=stream.building_counts,
            model_version=version, description="",
            source=f"first {self._reference_frames} frames seen by the monitor "
                   "(no reference file configured)")
        stream.building_scores, stream.building_counts = [], []

    def _test(self, reference: DriftReference, window: deque[list[float]]) -> dict[str, Any]:
        counts = [len(s) for s in window]
        scores = [x for s in window for x in s][-self._max_scores:]
        count_test = ks_2samp(reference.counts, counts)
        result: dict[str, Any] = {
            "p_value_threshold": self._alpha, "window_frames": len(counts),
            "reference_frames": len(reference.counts),
            "counts_ks_statistic": round(float(count_test.statistic), 4),
            "counts_p_value": float(count_test.pvalue),
            "mean_count": round(sum(counts) / len(counts), 3),
            "reference_mean_count": round(sum(reference.counts) / len(reference.counts), 3)}
        drift = float(count_test.pvalue) < self._alpha
        if len(scores) >= MIN_SCORES and len(reference.scores) >= MIN_SCORES:
            score_test = ks_2samp(reference.scores, scores)
            result.update({"scores_ks_statistic": round(float(score_test.statistic), 4),
                           "scores_p_value": float(score_test.pvalue),
                           "window_scores": len(scores), "reference_scores": len(reference.scores)})
            drift = drift or float(score_test.pvalue) < self._alpha
        result["drift"] = drift
        return result
