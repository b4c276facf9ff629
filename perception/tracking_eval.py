"""Tracking and ranging evaluation on held-out simulator sequences.

Each sequence is a library scenario driven open loop with a seed of the dataset's test seed
range (held out: no sequence was seen in training) or, for tuning the tracker, of its
validation range (``split="val"``), rendered at its camera rate.
Per frame the detector and `CameraPerception` (tracker + ranging) run as the service runs them;
ground truth comes from the simulator. Objects under 30 % visible or 8 px tall are not asked
of the tracker; hypotheses on them (and on nothing else) are left out of the score, as the MOT
benchmarks do with distractors and the detection evaluation with ignore regions. Reported:
CLEAR-MOT (MOTA) and IDF1 over all sequences, and the median relative range error of matched
objects within 60 m, overall and per class.

Range is compared like for like: the horizontal distance from the ego origin (rear axle) to
the object's centre, estimated (``position_m``: the ground contact point pushed half the class
depth along the line of sight) against the simulator's (``position_m`` of the ground truth).
The ground truth's own ``range_m`` is a different quantity (camera to the 3D box centre,
including height) and is not used: against it a truck 8 m long, seen from behind, showed a
bias of about −7 % even with its true box.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from common.calibration import Calibration
from common.classes import CLASS_NAMES
from perception.dataset import SPLIT_SEED_BASE
from perception.detector import Detector
from perception.eval_run import IGNORE_IOA  # the detection evaluation's ignore rule, reused
from perception.pipeline import CameraPerception
from perception.tracking import TrackerConfig, ioa_matrix, iou_matrix
from perception.tracking_metrics import TrackingFrame, evaluate_tracking
from simulators.ground_truth import GroundTruthObject
from simulators.library import load_scenario
from simulators.world import World

#: Held-out sequences: varied classes, motion and conditions.
DEFAULT_SEQUENCES: tuple[str, ...] = ("ccrm_50kph", "cut_in", "stop_and_go", "cpna_40kph",
                                      "cbla_30kph", "night_city", "fog_highway", "dusk_commute")
MIN_VISIBLE = 0.3  # ground truth less visible than this is not required of the tracker
MIN_HEIGHT_PX = 8.0
RANGE_LIMIT_M = 60.0
MATCH_IOU = 0.5


def _sequence(detector: Detector, name: str, seed: int, seconds: float,
              errors: dict[str, list[float]]) -> list[TrackingFrame]:
    scenario = load_scenario(name)
    world = World.from_scenario(scenario, seed=seed)
    cam = world.cameras[scenario.cameras[0].id]
    perception = CameraPerception(Calibration.model_validate(cam.calibration()),
                                  tracker_config=TrackerConfig.at_operating_score(
                                      detector.operating_score))
    dt = 1.0 / cam.rate_hz
    frames = []
    for i in range(round(seconds * cam.rate_hz)):
        if world.done:
            break
        stamp_ns = round(i * dt * 1e9)
        image = world.render(cam.camera_id)
        truth: list[GroundTruthObject] = []
        ignored_list: list[GroundTruthObject] = []
        for o in world.ground_truth(cam.camera_id).objects:
            asked = o.visible_fraction >= MIN_VISIBLE and o.box[3] - o.box[1] >= MIN_HEIGHT_PX
            (truth if asked else ignored_list).append(o)
        ignored = np.array([o.box for o in ignored_list], dtype=np.float64).reshape(-1, 4)
        objects = perception.update(detector.detect([image])[0], stamp_ns)
        gt_boxes = np.array([o.box for o in truth], dtype=np.float64).reshape(-1, 4)
        hyp_boxes = np.array([o.box for o in objects], dtype=np.float64).reshape(-1, 4)
        on_ignored = _on_ignored(hyp_boxes, gt_boxes, ignored)
        objects = [o for o, off in zip(objects, on_ignored, strict=True) if not off]
        hyp_boxes = hyp_boxes[~on_ignored]
        frames.append(TrackingFrame.from_lists([o.track_id for o in truth], gt_boxes,
                                               [o.track_id for o in objects], hyp_boxes))
        if len(truth) and len(objects):
            iou = iou_matrix(gt_boxes, hyp_boxes)
            for g, gt in enumerate(truth):
                h = int(iou[g].argmax())
                est = objects[h].position_m
                true_m = float(np.hypot(gt.position_m[0], gt.position_m[1]))
                if iou[g, h] >= MATCH_IOU and est is not None and true_m <= RANGE_LIMIT_M:
                    errors.setdefault(gt.object_class, []).append(
                        abs(float(np.hypot(est[0], est[1])) - true_m) / max(true_m, 1e-6))
        world.step(dt)
    return frames


def _on_ignored(hyp: np.ndarray, truth: np.ndarray, ignored: np.ndarray) -> np.ndarray:
    """Hypotheses on an object the tracker is not asked for (mostly hidden or tiny): area
    ≥ ``IGNORE_IOA`` inside its box and no truth box at IoU ≥ ``MATCH_IOU``. They count neither
    as hits nor as false positives, as the MOT benchmarks treat distractors and as the
    detection evaluation treats ignore regions."""
    off = np.zeros(len(hyp), dtype=bool)
    if len(hyp) == 0 or len(ignored) == 0:
        return off
    inside = ioa_matrix(hyp, ignored).max(axis=1) >= IGNORE_IOA
    matched = iou_matrix(truth, hyp).max(axis=0) >= MATCH_IOU if len(truth) else off
    return inside & ~matched


def evaluate_tracking_sequences(detector: Detector, *,
                                sequences: Sequence[str] = DEFAULT_SEQUENCES,
                                seconds: float = 8.0,
                                split: str = "test",
                                progress: Callable[[int, int], None] | None = None,
                                ) -> dict[str, Any]:
    """MOTA, IDF1 and ranging error of `detector` + tracker on sequences of a seed split.

    ``split``: ``"test"`` (held out, the figures to report) or ``"val"`` (for tuning).
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', not {split!r}")
    frames: list[TrackingFrame] = []
    errors: dict[str, list[float]] = {}
    per_sequence = {}
    for k, name in enumerate(sequences):
        seq_frames = _sequence(detector, name, SPLIT_SEED_BASE[split] + 7919 * (k + 1), seconds,
                               errors)
        per_sequence[name] = evaluate_tracking(seq_frames).to_dict()
        # offset ids so tracks of different sequences never match each other
        frames += [TrackingFrame(f.gt_ids + 100_000 * k, f.gt_boxes, f.hyp_ids + 100_000 * k,
                                 f.hyp_boxes) for f in seq_frames]
        if progress is not None:
            progress(k + 1, len(sequences))
    overall = evaluate_tracking(frames).to_dict()
    all_errors = [e for v in errors.values() for e in v]
    ranging = {
        "median_relative_error": float(np.median(all_errors)) if all_errors else None,
        "matched_objects": len(all_errors),
        "per_class": {name: (float(np.median(errors[name])) if errors.get(name) else None)
                      for name in CLASS_NAMES[1:]},
        "range_limit_m": RANGE_LIMIT_M,
    }
    return {"mota": overall["mota"], "idf1": overall["idf1"], "tracking": overall,
            "per_sequence": per_sequence, "ranging": ranging, "sequences": list(sequences),
            "split": split, "seconds": seconds, "model_version": detector.model_version}
