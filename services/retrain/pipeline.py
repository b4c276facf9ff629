"""Retrain from a request: recorded data, fine-tuning, evaluation, a registered candidate.

``retrain(request, options)``:

1. builds COCO data from the request's frames (``services.retrain.recorded``) and mixes it with
   the original training data (``base_data``: a ``roadstream dataset`` folder): ``train.json``
   = the base training images + the drifted training frames, repeated ``drift_repeat`` times
   (so that a few hundred drifted frames are not drowned by thousands of old ones);
   ``val.json`` = the base validation split (the trainer's model selection and operating
   score, never the held-out frames);
2. fine-tunes the production weights with ``perception.training.train`` (``init_weights``: the
   base recipe of ``base_config`` with a low learning rate and a short schedule; progress,
   ``last.pt`` every ``checkpoint_every`` steps and ``resume`` as ``roadstream train``);
3. evaluates the production weights and the candidate (the trainer's best validation
   checkpoint) on the held-out split (overall, per class, per condition) and on the held-out
   drifted frames;
4. writes ``report.json`` and a model card beside the candidate and registers it as a
   *candidate* in the model registry: promoting it stays a person's decision
   (``roadstream models promote``).

The verdict in the report: the candidate *improves* when it beats production on the held-out
drifted frames and, on the held-out split, on every condition of the drifted frames, while
losing at most ``max_drop_map50`` (mAP@0.5) overall and on every other condition.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.device import resolve_device
from perception.checkpoint import load_checkpoint
from perception.data_memory import load_split
from perception.dataset import coco_document, load_coco
from perception.eval_run import DEFAULT_WEIGHTS, evaluate_on, heldout_split, load_model
from perception.registry import ModelRegistry
from perception.train_config import TrainConfig, load_train_config
from perception.training import TrainResult, train
from services.retrain.recorded import TRAIN_JSON, build_recorded_dataset
from services.retrain.request import RetrainRequest

DEFAULT_BASE_CONFIG = Path("configs/train_fcos_dense_cpu.yaml")
REPORT = "report.json"
CARD = "MODEL_CARD.md"

Progress = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class RetrainOptions:
    """How to retrain. Paths are taken from the working directory.

    ``weights``: the weights to fine-tune (default: the registry's production checkpoint, else
    the shipped one). ``heldout``: a COCO folder (its test.json) or file; default
    ``base_data/test.json`` when present, else the rendered held-out split.
    ``overrides``: training config fields set last (``--set``).
    """

    out_dir: Path
    registry: Path
    base_data: Path = Path("data/sim_coco")
    base_config: Path = DEFAULT_BASE_CONFIG
    weights: Path | None = None
    heldout: Path | None = None
    steps: int = 600
    lr: float = 3e-4  # [1/step]; the base recipe peaks at 2e-3 from scratch
    warmup_steps: int = 20
    drift_repeat: int = 2
    frame_stride: int = 2
    holdout_fraction: float = 0.25
    max_drop_map50: float = 0.01
    device: str = "cpu"
    register: bool = True
    resume: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


def production_weights(options: RetrainOptions) -> tuple[Path, str]:
    """(checkpoint to fine-tune, where it came from); ValueError for a package in production."""
    if options.weights is not None:
        return options.weights, "given"
    entry = ModelRegistry(options.registry).production()
    if entry is None:
        return DEFAULT_WEIGHTS, "the shipped weights; the registry has no production version"
    if entry["kind"] != "checkpoint":
        raise ValueError(f"production version {entry['version']} is a model package "
                         f"({entry['path']}); fine-tuning needs a checkpoint: give --weights")
    return Path(entry["path"]), f"registry production {entry['version']}"


def merge_coco(out_json: Path, sources: list[tuple[Path, int]], info: dict[str, Any]) -> int:
    """Write one COCO file of ``sources`` ((json, repeats)), images renumbered and their files
    named relative to ``out_json``'s folder; returns the number of images."""
    root = out_json.parent
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for path, repeats in sources:
        doc = load_coco(path)
        by_image: dict[int, list[dict[str, Any]]] = {}
        for ann in doc["annotations"]:
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        for _ in range(repeats):
            for img in doc["images"]:
                new_id = len(images) + 1
                name = os.path.relpath((path.parent / img["file_name"]).resolve(), root.resolve())
                images.append({**img, "id": new_id, "file_name": name})
                annotations += [{**a, "id": len(annotations) + k + 1, "image_id": new_id}
                                for k, a in enumerate(by_image.get(int(img["id"]), []))]
    out_json.write_text(json.dumps(coco_document(info, images, annotations)), encoding="utf-8")
    return len(images)


def finetune_config(request: RetrainRequest, options: RetrainOptions, *, init: Path,
                    data_dir: Path) -> TrainConfig:
    """The base recipe, fine-tuning from ``init`` on ``data_dir`` with the options' schedule."""
    steps = options.steps
    base = load_train_config(options.base_config)
    fields: dict[str, Any] = {
        "name": f"{base.name}-rt-{request.request_id.removeprefix('drift-')}",
        "data_dir": str(data_dir), "out_dir": str(options.out_dir / "train"),
        "init_weights": str(init), "steps": steps, "lr": options.lr,
        "warmup_steps": min(options.warmup_steps, steps - 1), "time_limit_s": None,
        "train_images": None, "device": options.device,
        "val_every": max(1, steps // 4), "checkpoint_every": max(1, min(50, steps)),
        "log_every": max(1, min(10, steps)),
        **options.overrides}
    return load_train_config(options.base_config, fields)


def build_data(request: RetrainRequest, options: RetrainOptions) -> dict[str, Any]:
    """Steps 1: the recorded frames and the mixed training folder; returns their summary."""
    base_train, base_val = options.base_data / "train.json", options.base_data / "val.json"
    for path in (base_train, base_val):
        if not path.is_file():
            raise ValueError(f"base data {options.base_data} has no {path.name}: render the "
                             f"original data with `roadstream dataset --out {options.base_data}`")
    data = options.out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    recorded = build_recorded_dataset(Path(request.recording), request.start_ns, request.end_ns,
                                      data, holdout_fraction=options.holdout_fraction,
                                      frame_stride=options.frame_stride)
    recorded["frame_stride"], recorded["drift_repeat"] = options.frame_stride, options.drift_repeat
    info = {"description": f"base {options.base_data} + drift frames of {request.request_id}"}
    recorded["mixed_train_images"] = merge_coco(
        data / "train.json", [(base_train, 1), (data / TRAIN_JSON, options.drift_repeat)],
        {**info, "split": "train", "drift_repeat": options.drift_repeat})
    recorded["val_images"] = merge_coco(data / "val.json", [(base_val, 1)],
                                        {**info, "split": "val"})
    return recorded


def evaluate_pair(production: Path, candidate: Path, options: RetrainOptions,
                  drift_heldout: Path | None) -> dict[str, Any]:
    """Step 3: both models on the held-out split and on the held-out drifted frames."""
    device = resolve_device(options.device)
    models = {"production": load_model(production, device), "candidate": load_model(candidate, device)}
    h, w = models["production"][1]["image_size"]
    held = options.heldout
    if held is None and (options.base_data / "test.json").is_file():
        held = options.base_data / "test.json"
    split = heldout_split(held, (int(h), int(w)))
    label = str(held) if held is not None else "rendered test split"
    out: dict[str, Any] = {"heldout": {}, "drift_heldout": {}}
    for name, (model, info) in models.items():
        out["heldout"][name] = _brief(evaluate_on(model, info, split, data_label=label,
                                                  device=device))
    if drift_heldout is not None:
        frames = load_split(drift_heldout, (int(h), int(w)))
        for name, (model, info) in models.items():
            out["drift_heldout"][name] = _brief(evaluate_on(
                model, info, frames, data_label=str(drift_heldout), device=device))
    return out


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("map50", "map50_95", "per_class", "per_condition", "num_images", "num_ground_truth",
            "data")
    return {k: result[k] for k in keep if k in result} | {
        "model_version": result["model"]["model_version"]}


def verdict(evaluation: dict[str, Any], targets: list[str], max_drop: float) -> dict[str, Any]:
    """The module's rule, with every comparison it made (``None`` figures are skipped)."""
    checks: list[dict[str, Any]] = []

    def check(what: str, prod: float | None, cand: float | None, rule: str) -> None:
        if prod is None or cand is None:
            return
        ok = cand > prod if rule == "improve" else cand >= prod - max_drop
        checks.append({"what": what, "production": prod, "candidate": cand,
                       "delta": round(cand - prod, 4), "rule": rule, "ok": ok})

    drift = evaluation.get("drift_heldout") or {}
    if drift:
        check("drifted frames (held out)", drift["production"]["map50"],
              drift["candidate"]["map50"], "improve")
    held = evaluation["heldout"]
    check("held-out overall", held["production"]["map50"], held["candidate"]["map50"], "hold")
    for cond, prod in held["production"]["per_condition"].items():
        check(f"held-out {cond}", prod, held["candidate"]["per_condition"].get(cond),
              "improve" if cond in targets else "hold")
    return {"improves": bool(checks) and all(c["ok"] for c in checks), "target_conditions": targets,
            "max_drop_map50": max_drop, "checks": checks}


def retrain(request: RetrainRequest, options: RetrainOptions, *,
            progress: Progress | None = None) -> dict[str, Any]:
    """Run the four steps (module doc); returns the report (also in ``out_dir/report.json``)."""
    init, origin = production_weights(options)
    data = build_data(request, options)
    cfg = finetune_config(request, options, init=init, data_dir=options.out_dir / "data")
    result: TrainResult = train(cfg, resume=options.resume, progress=progress)
    candidate = result.best_path or result.final_path
    if candidate is None:
        raise ValueError(f"training in {cfg.out_dir} wrote no checkpoint")
    drift_held = Path(data["heldout"]["json"]) if data["heldout"]["images"] else None
    evaluation = evaluate_pair(init, candidate, options, drift_held)
    targets = sorted({c for part in ("train", "heldout") for c in data[part]["conditions"]}
                     - {"unknown"})
    report: dict[str, Any] = {
        "request": request.model_dump(mode="json"), "production": {"weights": str(init),
                                                                   "origin": origin},
        "candidate": {"weights": str(candidate), "model_version":
                      evaluation["heldout"]["candidate"]["model_version"],
                      "step": load_checkpoint(candidate).metadata.get("step")},
        "data": data, "training": {
            "config": cfg.model_dump(mode="json"), "steps": result.step,
            "best_val_map50": result.best_map50, "elapsed_s": round(result.elapsed_s, 1),
            "log": str(Path(cfg.out_dir) / "log.csv")},
        "evaluation": evaluation,
        "verdict": verdict(evaluation, targets, options.max_drop_map50)}
    card = candidate.parent / CARD
    card.write_text(model_card(report), encoding="utf-8")
    if options.register:
        entry = ModelRegistry(options.registry).register(candidate, stage="candidate",
                                                         model_card=card)
        report["registry"] = {"root": str(options.registry), "version": entry["version"],
                              "stage": entry["stage"]}
    (options.out_dir / REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def model_card(report: dict[str, Any]) -> str:
    """The candidate's model card (Markdown): where it came from and its figures."""
    req, ev, tr = report["request"], report["evaluation"], report["training"]
    cfg = tr["config"]
    held = ev["heldout"]
    lines = [
        f"# Model card: candidate `{report['candidate']['model_version']}`", "",
        f"Fine-tuned from `{held['production']['model_version']}` "
        f"({report['production']['origin']}) by `roadstream retrain` on retraining request "
        f"`{req['request_id']}`: a `detection_drift` of `{req['model_version']}` "
        f"(event `{req['event_id']}`), frames captured {req['start_ns']}–{req['end_ns']} ns in "
        f"`{Path(req['recording']).name}`.", "",
        "## Data", "",
        f"- drifted frames (one in {report['data']['frame_stride']} per camera): training "
        f"{report['data']['train']['images']} "
        f"(scenes {', '.join(report['data']['train']['scenarios'])}), held out "
        f"{report['data']['heldout']['images']} (scenes "
        f"{', '.join(report['data']['heldout']['scenarios']) or 'none'})",
        f"- training set: {report['data']['mixed_train_images']} images (base data + drifted "
        f"training frames × {report['data']['drift_repeat']}); validation "
        f"{report['data']['val_images']} base images", "",
        "## Training", "",
        f"{tr['steps']} steps, batch {cfg['batch_size']}, lr {cfg['lr']} (warm-up "
        f"{cfg['warmup_steps']}, cosine to {cfg['min_lr_ratio']} of it), {tr['elapsed_s']} s; "
        f"the candidate is the best validation checkpoint (step {report['candidate']['step']}, "
        f"validation mAP@0.5 {tr['best_val_map50']:.3f}).", "",
        "## Evaluation (mAP@0.5)", "",
        "| data | production | candidate | change |", "|---|---|---|---|"]
    for c in report["verdict"]["checks"]:
        lines.append(f"| {c['what']} | {_fmt(c['production'])} | {_fmt(c['candidate'])} | "
                     f"{c['delta']:+.3f} |")
    v = report["verdict"]
    lines += ["", f"Verdict: **{'improves' if v['improves'] else 'does not improve'}** (better on "
              f"the drifted frames and on {', '.join(v['target_conditions']) or 'no condition'}, "
              f"at most {v['max_drop_map50']} lower elsewhere). Stage: candidate; promote with "
              "`roadstream models promote VERSION`.", ""]
    return "\n".join(lines)
