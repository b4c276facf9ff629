"""COCO-style evaluation of a detector on the held-out split, and the score reference for drift.

``evaluate_weights`` loads a checkpoint or a model package (``perception.packages``), runs it
on a held-out split (a COCO directory written by ``perception.dataset``, or — with no
directory — ``DEFAULT_HELDOUT_IMAGES`` test frames rendered deterministically on the spot)
and returns ``map50``, ``map50_95``, ``per_class`` and ``per_condition`` (each mAP@0.5),
with pycocotools through ``perception.evaluation``.
Detections mostly (IoA ≥ 0.5) inside an ignore region (``iscrowd`` annotation: a barely
visible or tiny object) are discarded before scoring, as COCO does for crowd regions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.device import resolve_device
from perception.architectures import build_from_spec
from perception.checkpoint import DEFAULT_SCORE_THRESH, load_checkpoint
from perception.data_memory import MemoryDataset, load_split
from perception.dataset import CONDITIONS, NATIVE_SIZE, build_dataset
from perception.detections import Detections
from perception.evaluation import GroundTruth, evaluate_detections
from perception.packages import is_package, load_package
from perception.runtimes import serving_model
from perception.tracking import ioa_matrix

DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "fcos_dense_sim.pt"
#: The ONNX Runtime int8 package of DEFAULT_WEIGHTS (`roadstream export --int8`), shipped for
#: real time on a CPU (services.mainjob.default_perception_weights; MODEL_CARD.md).
DEFAULT_INT8_PACKAGE = DEFAULT_WEIGHTS.with_name("fcos_dense_sim_onnx_int8")
DEFAULT_HELDOUT_IMAGES = 300
IGNORE_IOA = 0.5
SCORE_BIN_WIDTH = 0.05


def score_bins(thresh: float) -> np.ndarray:
    """Histogram edges from the bin edge at or below ``thresh`` to 1.0, 0.05 wide."""
    start = np.floor(thresh / SCORE_BIN_WIDTH + 1e-9) * SCORE_BIN_WIDTH
    return np.round(np.arange(start, 1.0 + 1e-4, SCORE_BIN_WIDTH), 2)


def predict(
    model: nn.Module, data: MemoryDataset, *, device: torch.device, batch_size: int = 16
) -> list[Detections]:
    """Run ``model`` (eval mode) over ``data``; boxes come back in each source image's pixels."""
    model.eval()
    out: list[Detections] = []
    h, w = data.images.shape[2:]
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            idx = range(start, min(start + batch_size, len(data)))
            batch = [data.images[i].to(device).float().div_(255.0) for i in idx]
            results = model(batch)
            for i, res in zip(idx, results, strict=True):
                sw, sh = data.source_size[i]
                scale = np.array([sw / w, sh / h, sw / w, sh / h], dtype=np.float32)
                boxes = res["boxes"].float().cpu().numpy() * scale
                out.append(Detections.from_arrays(
                    boxes, res["labels"].cpu().numpy(), res["scores"].float().cpu().numpy()))
    return out


def drop_ignored(det: Detections, ignore: np.ndarray, ioa: float = IGNORE_IOA) -> Detections:
    """``det`` without the detections whose area lies ≥ ``ioa`` inside an ignore box."""
    if len(det) == 0 or ignore.size == 0:
        return det
    keep = ioa_matrix(det.boxes, ignore).max(axis=1) < ioa
    return Detections(det.boxes[keep], det.class_ids[keep], det.scores[keep])


def detection_metrics(data: MemoryDataset, preds: list[Detections]) -> dict[str, Any]:
    """The evaluation JSON: ``map50``, ``map50_95``, ``per_class``, ``per_condition`` (+ counts)."""
    gts = {i: GroundTruth.from_arrays(data.source_boxes(i), data.labels[i].cpu().numpy())
           for i in range(len(data))}
    kept = {i: drop_ignored(p, data.ignore[i]) for i, p in enumerate(preds)}
    conds = dict(enumerate(data.conditions))
    m = evaluate_detections(gts, kept, conditions=conds)

    def clean(v: float) -> float | None:
        return None if np.isnan(v) else round(float(v), 4)

    per_condition = {c: clean(m.per_condition[c].map50) if c in m.per_condition else None
                     for c in CONDITIONS}
    return {
        "map50": clean(m.map50),
        "map50_95": clean(m.map50_95),
        "per_class": {k: clean(v) for k, v in m.per_class_ap50.items()},
        "per_condition": per_condition,
        "per_condition_map50_95": {c: clean(m.per_condition[c].map50_95)
                                   for c in CONDITIONS if c in m.per_condition},
        "num_images": m.num_images,
        "num_ground_truth": m.num_ground_truth,
        "num_predictions": m.num_predictions,
    }


def score_reference(preds: list[Detections], thresh: float = DEFAULT_SCORE_THRESH) -> dict[str, Any]:
    """Distribution of detection scores ≥ ``thresh`` and of per-frame counts (drift reference).

    ``thresh`` should be the score the service runs at (the weights' operating score), so
    that the monitor compares like with like.
    """
    bins = score_bins(thresh)
    scores = np.concatenate([p.scores[p.scores >= thresh] for p in preds]) if preds else np.zeros(0)
    counts = np.array([int((p.scores >= thresh).sum()) for p in preds])
    hist, _ = np.histogram(scores, bins=bins)
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]
    max_count = int(counts.max()) if counts.size else 0
    return {
        "score_thresh": thresh,
        "frames": len(preds),
        "detections": int(scores.size),
        "score_bins": [float(v) for v in bins],
        "score_hist": [int(v) for v in hist],
        "score_mean": round(float(scores.mean()), 4) if scores.size else None,
        "score_quantiles": {str(q): round(float(np.quantile(scores, q)), 4) for q in qs}
        if scores.size else {},
        "count_mean": round(float(counts.mean()), 4) if counts.size else None,
        "count_hist": [int(v) for v in np.bincount(counts, minlength=max_count + 1)],
    }


def load_model(weights: str | Path, device: torch.device, *, num_threads: int | None = None,
               ) -> tuple[nn.Module, dict[str, Any]]:
    """A checkpoint or a model package as a raw model (its own low score floor, for mAP) + info.

    A checkpoint (a file) runs in torch on ``device``, an FCOS one through the runtimes' shared
    pre/post-processing (``perception.runtimes.serving_model``, the same results bit for bit);
    a package (a folder) runs its core in its own runtime on ``device`` (``num_threads``
    intra-op threads; CUDA: ONNX packages with onnxruntime-gpu) and takes and returns host
    tensors, so its inputs stay on the CPU (``info["input_device"]``). Raises
    ``ModelLoadError`` for a bad file or package, or a device its runtime cannot serve on.
    """
    if is_package(weights):
        package, manifest = load_package(weights, num_threads=num_threads, device=device)
        info = {"weights": str(weights), "model_version": manifest.model_version,
                "arch": manifest.spec.arch, "image_size": list(manifest.spec.image_size),
                "operating_point": manifest.data.get("operating_point"),
                "format": manifest.format, "precision": manifest.precision,
                "input_device": "cpu"}
        return package, info
    ckpt = load_checkpoint(weights)
    model = build_from_spec(ckpt.spec)
    model.load_state_dict(ckpt.state_dict)
    info = {"weights": str(weights), "model_version": ckpt.model_version,
            "arch": ckpt.spec.arch, "image_size": list(ckpt.spec.image_size),
            "operating_point": ckpt.metadata.get("operating_point"),
            "format": "torch", "precision": "fp32", "input_device": str(device)}
    return serving_model(model).to(device).eval(), info


def heldout_split(
    data_dir: str | Path | None,
    image_size: tuple[int, int],
    *,
    images: int = DEFAULT_HELDOUT_IMAGES,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> MemoryDataset:
    """``data_dir/test.json`` in memory, or ``images`` test frames rendered now (deterministic)."""
    if data_dir is not None:
        path = Path(data_dir)
        json_path = path if path.suffix == ".json" else path / "test.json"
        if not json_path.is_file():
            raise FileNotFoundError(f"no held-out split at {json_path}")
        return load_split(json_path, image_size)
    with tempfile.TemporaryDirectory(prefix="roadstream-heldout-") as tmp:
        build_dataset(tmp, images={"test": images}, size=NATIVE_SIZE, workers=workers,
                      progress=progress)
        return load_split(Path(tmp) / "test.json", image_size)


def evaluate_weights(
    weights: str | Path = DEFAULT_WEIGHTS,
    data_dir: str | Path | None = None,
    *,
    images: int = DEFAULT_HELDOUT_IMAGES,
    device: str = "cpu",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint or a model package on the held-out split (``evaluate_on``)."""
    dev = resolve_device(device)
    model, info = load_model(weights, dev)
    h, w = info["image_size"]
    data = heldout_split(data_dir, (int(h), int(w)),
                         images=images, workers=workers, progress=progress)
    label = str(data_dir) if data_dir is not None else f"rendered test split ({images})"
    return evaluate_on(model, info, data, data_label=label, device=torch.device(info["input_device"]))


def evaluate_on(model: nn.Module, info: dict[str, Any], data: MemoryDataset, *, data_label: str,
                device: torch.device) -> dict[str, Any]:
    """``detection_metrics`` of ``model`` on ``data`` + ``model`` (info), ``data`` and
    ``score_reference`` at the model's operating score."""
    preds = predict(model, data, device=device)
    result = detection_metrics(data, preds)
    result["model"] = info
    result["data"] = data_label
    point = info.get("operating_point")
    result["score_reference"] = score_reference(
        preds, float(point["score"]) if isinstance(point, dict) else DEFAULT_SCORE_THRESH)
    return result
