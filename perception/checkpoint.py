"""Detector checkpoints: our format, and foreign torchvision weights with a class map.

Our checkpoint is a ``torch.save``'d dict of plain types and tensors (loaded with
``weights_only=True``, so a file cannot run code)::

    format: "roadstream.detector"   format_version: 1
    spec: DetectorSpec.to_dict()    (arch, num_classes, image_size, post-processing)
    class_names: ["background", "car", ...]      model_version: str
    metadata: JSON-able dict (training run, data, metrics)    state_dict: {name: tensor}

Nothing here downloads: builders are called with ``weights=None, weights_backbone=None``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from common.classes import CLASS_IDS, CLASS_NAMES
from perception.architectures import ARCHS, DetectorSpec, build_from_spec
from perception.classes import ModelLoadError, load_class_map
from perception.detector import Detector
from perception.packages import is_package, load_package
from perception.runtimes import serving_model
from perception.tracking import TrackerConfig

CHECKPOINT_FORMAT = "roadstream.detector"
CHECKPOINT_VERSION = 1
COCO_NUM_CLASSES = 91  # torchvision's COCO heads: 90 ids with gaps + background
DEFAULT_SCORE_THRESH = 0.3  # detector floor for weights without a calibrated operating point


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint of our format (``state_dict`` not yet applied to a model)."""

    spec: DetectorSpec
    state_dict: dict[str, torch.Tensor]
    model_version: str
    class_names: tuple[str, ...] = CLASS_NAMES
    metadata: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: DetectorSpec,
    *,
    model_version: str,
    class_names: Sequence[str] = CLASS_NAMES,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and recipe to ``path`` atomically; returns the path.

    ``metadata`` must be JSON-serialisable (it is read back with ``weights_only=True``).
    """
    meta = dict(metadata or {})
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {exc}") from exc
    if len(class_names) != spec.num_classes:
        raise ValueError(f"{len(class_names)} class names for num_classes={spec.num_classes}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "spec": spec.to_dict(),
        "class_names": list(class_names),
        "model_version": model_version,
        "metadata": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, target)
    return target


def _read(path: Path) -> object:
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise ModelLoadError(
            f"model file {path} is not a readable torch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc


def _parse_ours(path: Path, data: Mapping[str, Any]) -> Checkpoint:
    version = data.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise ModelLoadError(f"model file {path}: unsupported format_version {version!r}")
    missing = [k for k in ("spec", "state_dict", "model_version") if k not in data]
    if missing:
        raise ModelLoadError(f"model file {path}: checkpoint lacks {', '.join(missing)}")
    try:
        spec = DetectorSpec.from_dict(dict(data["spec"]))
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"model file {path}: bad model spec ({exc})") from exc
    return Checkpoint(
        spec=spec,
        state_dict=dict(data["state_dict"]),
        model_version=str(data["model_version"]),
        class_names=tuple(data.get("class_names", CLASS_NAMES)),
        metadata=dict(data.get("metadata", {})),
    )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint of our format; ``ModelLoadError`` naming the file if it is not one."""
    p = Path(path)
    data = _read(p)
    if not isinstance(data, Mapping) or data.get("format") != CHECKPOINT_FORMAT:
        raise ModelLoadError(f"model file {p} is not a {CHECKPOINT_FORMAT} checkpoint")
    return _parse_ours(p, data)


def _apply_state_dict(path: Path, model: nn.Module, state: Mapping[str, Any], what: str) -> None:
    expected = model.state_dict()
    # BatchNorm fills a missing counter itself (FrozenBatchNorm weights have none).
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:3])})")
    if problems:
        raise ModelLoadError(f"state_dict in {path} does not fit {what}: " + "; ".join(problems))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"state_dict in {path} does not fit {what}: {exc}") from exc


def _map_from_names(path: Path, names: Sequence[str]) -> dict[int, int] | None:
    """Class map for a checkpoint whose class list differs from ours, by matching names."""
    if tuple(names) == CLASS_NAMES:
        return None
    mapping = {i: CLASS_IDS[n] for i, n in enumerate(names) if i > 0 and n in CLASS_IDS}
    if not mapping:
        raise ModelLoadError(f"model file {path}: none of its classes {list(names)} are ours")
    return mapping


def _foreign_state(path: Path, data: object) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        # torchvision's reference training scripts nest the weights under "model".
        for key in ("model", "state_dict"):
            nested = data.get(key)
            if isinstance(nested, Mapping):
                return nested
        if data and all(isinstance(k, str) for k in data):
            return data
    raise ModelLoadError(f"model file {path} does not hold a state_dict")


def _build_foreign(path: Path, builder: str, num_classes: int | None) -> nn.Module:
    if builder in ARCHS:
        n = num_classes if num_classes is not None else len(CLASS_NAMES)
        return build_from_spec(DetectorSpec(arch=builder, num_classes=n))
    known = torchvision.models.list_models(module=torchvision.models.detection)
    if builder not in known:
        raise ModelLoadError(
            f"unknown builder {builder!r} for model file {path}; known: "
            f"{', '.join(sorted([*ARCHS, *known]))}"
        )
    n = num_classes if num_classes is not None else COCO_NUM_CLASSES
    try:
        return torchvision.models.get_model(
            builder, weights=None, weights_backbone=None, num_classes=n
        ).eval()
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"builder {builder!r} for model file {path} failed: {exc}") from exc


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def load_detector(
    path: str | Path,
    *,
    builder: str | None = None,
    class_map: Mapping[Any, Any] | str | Path | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "auto",
    score_thresh: float | None = None,
    num_threads: int | None = None,
) -> Detector:
    """Load a detector from a local file or model package; never downloads.

    A folder is a model package (``perception.packages``): it runs in its runtime on the CPU
    (``device`` ``auto`` or ``cpu``) through the shared pre/post-processing, at its manifest's
    operating score; ``builder`` and ``class_map`` do not apply to it. An FCOS checkpoint runs
    through the same pre/post-processing with its core in torch (``perception.runtimes``), with
    the unsplit model's results bit for bit.
    Without ``builder``, ``path`` must be our checkpoint; its class names are matched to ours
    unless ``class_map`` is given. With ``builder`` (a torchvision detection builder name such
    as ``fasterrcnn_resnet50_fpn``, or one of ``ARCHS``) ``path`` is a plain state_dict (also
    accepted nested under ``model``/``state_dict``), ``num_classes`` defaults to 91 (COCO) for
    torchvision builders, and ``class_map`` (dict, YAML or JSON file: ``{their id: our class}``)
    turns their ids into ours. The model version of a foreign file is ``builder@sha256[:12]``.
    ``score_thresh`` ``None``: the floor the tracker needs at the checkpoint's calibrated
    operating score (``metadata["operating_point"]``), or ``DEFAULT_SCORE_THRESH`` without one.

    Raises ``ModelLoadError`` naming the file for a missing file, a file that is not a
    checkpoint, an unknown builder, a bad class map or a state_dict that does not fit.
    """
    p = Path(path)
    if is_package(p):
        return _package_detector(p, builder=builder, class_map=class_map, device=device,
                                 score_thresh=score_thresh, num_threads=num_threads)
    mapping = load_class_map(class_map) if class_map is not None else None
    data = _read(p)
    ours = isinstance(data, Mapping) and data.get("format") == CHECKPOINT_FORMAT
    if builder is None:
        if not ours:
            raise ModelLoadError(
                f"model file {p} is not a {CHECKPOINT_FORMAT} checkpoint; to load plain "
                "weights name their torchvision builder (builder=...)"
            )
        assert isinstance(data, Mapping)
        ckpt = _parse_ours(p, data)
        try:
            model = build_from_spec(ckpt.spec)
        except ValueError as exc:
            raise ModelLoadError(f"model file {p}: {exc}") from exc
        _apply_state_dict(p, model, ckpt.state_dict, f"arch {ckpt.spec.arch!r}")
        mapping = mapping if mapping is not None else _map_from_names(p, ckpt.class_names)
        version = ckpt.model_version
        point = ckpt.metadata.get("operating_point")
        operating = float(point["score"]) if isinstance(point, Mapping) and "score" in point else None
    else:
        state = _parse_ours(p, data).state_dict if ours else _foreign_state(p, data)  # type: ignore[arg-type]
        model = _build_foreign(p, builder, num_classes)
        _apply_state_dict(p, model, state, f"builder {builder!r}")
        version = f"{builder}@{_file_digest(p)}"
        operating = None
    return Detector(
        serving_model(model),
        device=device,
        score_thresh=_floor(score_thresh, operating),
        operating_score=operating,
        class_map=mapping,
        num_threads=num_threads,
        model_version=version,
    )


def _floor(score_thresh: float | None, operating: float | None) -> float:
    """The detector floor: as given, else what the tracker needs at the operating score."""
    if score_thresh is not None:
        return score_thresh
    if operating is None:
        return DEFAULT_SCORE_THRESH
    return TrackerConfig.at_operating_score(operating).low_thresh


def _package_detector(path: Path, *, builder: str | None, class_map: object, device: str | torch.device,
                      score_thresh: float | None, num_threads: int | None) -> Detector:
    """``load_detector`` for a model package folder."""
    if builder is not None or class_map is not None:
        raise ModelLoadError(f"model package {path} carries its own model and classes; "
                             "builder and class_map apply to plain weight files only")
    # "auto" is the CPU for a package: its GPU path (ONNX Runtime's CUDA/TensorRT providers)
    # needs onnxruntime-gpu, and is taken only when asked for by name.
    core_device = "cpu" if str(device) == "auto" else device
    model, manifest = load_package(path, num_threads=num_threads, device=core_device)
    operating = manifest.operating_score
    return Detector(model, device="cpu", score_thresh=_floor(score_thresh, operating),
                    operating_score=operating, class_map=_map_from_names(path, manifest.class_names),
                    num_threads=num_threads, model_version=manifest.model_version)
