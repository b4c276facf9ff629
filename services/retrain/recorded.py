"""Detection data from a recording: the frames of a time range, labelled by their ground truth.

Frames (`camera.frames`, capture stamp in [start_ns, end_ns]) are paired with the
`sim.ground_truth` message of the same (run id, vehicle, camera, seq). The ground truth's boxes
are already in the frame's pixels (the simulator projects and clips them), so no projection is
redone here: each object is labelled by the dataset builder's rule
(`perception.dataset.label_object`: under 30 % visible or too small → an ignore region), its
range being the horizontal distance of its centre in the ego frame. Frames without ground truth
(a real camera, a replay without the simulator) cannot be labelled and are counted, not used.

A frame keeps its original encoded bytes (no re-encoding). Its condition and scenario come from
the scenario that ran it: each scenario of a run has its own run id, named with its scenario in
the simulator's `run_finished` event; the condition is that library scenario's (``unknown`` for a
scenario file outside the library).

Held-out drifted frames (the "evaluate on the drifted frames" step) are chosen by scene, never by
random frame, since neighbouring frames of one drive are near copies: a scene is one run id
(one scenario run); the latest scenes are held out until they hold ``holdout_fraction`` of the
frames, leaving at least one scene to train on. With a single scene the split is by time: its
last ``holdout_fraction`` of frames is held out.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.classes import CLASS_IDS
from perception.dataset import coco_annotation, coco_document, label_object
from services.messages import (
    CAMERA_FRAMES,
    SAFETY_EVENTS,
    SIM_GROUND_TRUTH,
    FrameMeta,
    GroundTruth,
    SafetyEvent,
)
from services.recording.envelope import KafkaRecord
from services.recording.mcap_io import read_recording
from services.runtime.events import RUN_FINISHED
from simulators.library import load_scenario

TRAIN_JSON = "drift_train.json"
HELDOUT_JSON = "drift_heldout.json"
FRAMES_DIR = "frames"


@dataclass(frozen=True)
class _Frame:
    meta: FrameMeta
    data: bytes
    truth: GroundTruth


def _headers(record: KafkaRecord) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in record.headers if v is not None]


def _scenarios(records: list[KafkaRecord]) -> dict[str, str]:
    """run id → scenario name, from the simulator's `run_finished` events."""
    out: dict[str, str] = {}
    for r in records:
        if r.topic != SAFETY_EVENTS.name:
            continue
        event = SafetyEvent.model_validate_json(r.value)
        if event.type == RUN_FINISHED and isinstance(event.details.get("scenario"), str):
            out[event.run_id] = str(event.details["scenario"])
    return out


def _condition(scenario: str) -> str:
    try:
        return str(load_scenario(scenario).environment.condition)
    except Exception:  # an unknown name or a file: the condition is not known
        return "unknown"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def recorded_frames(records: list[KafkaRecord], start_ns: int, end_ns: int, *,
                    frame_stride: int = 1) -> tuple[list[_Frame], int]:
    """Labelled frames captured in [start_ns, end_ns] (every ``frame_stride``-th per camera and
    scene), in capture order, and the number of frames in range without ground truth."""
    truth: dict[tuple[str, str, str, int], GroundTruth] = {}
    for r in records:
        if r.topic == SIM_GROUND_TRUTH.name:
            gt = GroundTruth.model_validate_json(r.value)
            truth[(gt.run_id, gt.vehicle_id, gt.camera_id, gt.seq)] = gt
    frames: list[_Frame] = []
    unlabelled = 0
    for r in records:
        if r.topic != CAMERA_FRAMES.name:
            continue
        meta = FrameMeta.from_headers(_headers(r))
        if not start_ns <= meta.capture_ns <= end_ns:
            continue
        labels = truth.get((meta.run_id, meta.vehicle_id, meta.camera_id, meta.seq))
        if labels is None:
            unlabelled += 1
            continue
        frames.append(_Frame(meta, r.value, labels))
    frames.sort(key=lambda f: (f.meta.capture_ns, f.meta.vehicle_id, f.meta.camera_id))
    kept: list[_Frame] = []
    seen: dict[tuple[str, str, str], int] = defaultdict(int)
    for f in frames:
        key = (f.meta.run_id, f.meta.vehicle_id, f.meta.camera_id)
        if seen[key] % frame_stride == 0:
            kept.append(f)
        seen[key] += 1
    return kept, unlabelled


def split_by_scene(frames: list[_Frame], holdout_fraction: float) -> tuple[list[_Frame], list[_Frame]]:
    """(train, held out) by the module's rule; frames are in capture order."""
    if not frames or holdout_fraction <= 0:
        return list(frames), []
    scenes: dict[str, list[_Frame]] = {}
    for f in frames:
        scenes.setdefault(f.meta.run_id, []).append(f)
    want = math.ceil(holdout_fraction * len(frames))
    if len(scenes) == 1:
        cut = max(1, len(frames) - want)
        return frames[:cut], frames[cut:]
    order = sorted(scenes, key=lambda s: scenes[s][0].meta.capture_ns)
    held: list[str] = []
    while order[len(held) + 1:] and sum(len(scenes[s]) for s in held) < want:
        held.append(order[-1 - len(held)])
    return ([f for f in frames if f.meta.run_id not in held],
            [f for f in frames if f.meta.run_id in held])


def _write_split(out: Path, name: str, frames: list[_Frame], scenarios: dict[str, str],
                 info: dict[str, Any]) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    first_ns: dict[str, int] = {}
    for f in frames:
        m = f.meta
        first_ns.setdefault(m.run_id, m.capture_ns)
        ext = "png" if m.content_type == "image/png" else "jpg"
        file_name = f"{FRAMES_DIR}/{_safe(m.run_id)}_{_safe(m.vehicle_id)}_{_safe(m.camera_id)}_" \
                    f"{m.seq:06d}.{ext}"
        (out / file_name).write_bytes(f.data)
        scenario = scenarios.get(m.run_id, "unknown")
        image_id = len(images) + 1
        images.append({
            "id": image_id, "file_name": file_name, "width": m.width, "height": m.height,
            "condition": _condition(scenario) if scenario != "unknown" else "unknown",
            "scenario": scenario, "scene_id": m.run_id,
            "t_s": round((m.capture_ns - first_ns[m.run_id]) / 1e9, 3),
            "capture_ns": m.capture_ns, "vehicle_id": m.vehicle_id, "camera_id": m.camera_id,
            "seq": m.seq})
        for obj in f.truth.objects:
            label = label_object(obj.box, CLASS_IDS[str(obj.object_class)], obj.visible_fraction,
                                 math.hypot(obj.position_m.x, obj.position_m.y), m.width, m.height)
            annotations.append(coco_annotation(len(annotations) + 1, image_id, label))
    path = out / name
    path.write_text(json.dumps(coco_document(info, images, annotations)), encoding="utf-8")
    crowd = sum(a["iscrowd"] for a in annotations)
    conditions = sorted({str(i["condition"]) for i in images})
    return {"json": str(path), "images": len(images), "scenes": sorted(first_ns),
            "scenarios": sorted({str(i["scenario"]) for i in images}), "conditions": conditions,
            "annotations": len(annotations) - crowd, "ignored": crowd}


def build_recorded_dataset(recording: Path, start_ns: int, end_ns: int, out: Path, *,
                           holdout_fraction: float = 0.25, frame_stride: int = 1,
                           ) -> dict[str, Any]:
    """Write ``out/drift_train.json`` and ``out/drift_heldout.json`` (COCO, images under
    ``out/frames/``) from the recording's frames in [start_ns, end_ns]; returns a summary.

    ValueError when the range holds no labelled frame. RecordingError for a bad file.
    """
    if end_ns < start_ns:
        raise ValueError(f"time range [{start_ns}, {end_ns}] ns ends before it starts")
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be at least 1, not {frame_stride}")
    records = read_recording(recording, topics=[CAMERA_FRAMES.name, SIM_GROUND_TRUTH.name,
                                                SAFETY_EVENTS.name])
    frames, unlabelled = recorded_frames(records, start_ns, end_ns, frame_stride=frame_stride)
    if not frames:
        raise ValueError(f"{recording}: no camera frame with ground truth in [{start_ns}, "
                         f"{end_ns}] ns ({unlabelled} frames without ground truth)")
    train, held = split_by_scene(frames, holdout_fraction)
    (out / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    scenarios = _scenarios(records)
    info = {"description": "roadstream frames recorded in a drift episode",
            "recording": str(recording), "start_ns": start_ns, "end_ns": end_ns,
            "frame_stride": frame_stride,
            "split_rule": f"latest scenes held out (fraction {holdout_fraction})"}
    return {"recording": str(recording), "start_ns": start_ns, "end_ns": end_ns,
            "frames_in_range": len(frames), "unlabelled_frames": unlabelled,
            "train": _write_split(out, TRAIN_JSON, train, scenarios, {**info, "split": "train"}),
            "heldout": _write_split(out, HELDOUT_JSON, held, scenarios,
                                    {**info, "split": "heldout"})}
