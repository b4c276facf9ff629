"""Detector training on simulator data: seeded, checkpointed, resumable, logged.

From scratch, or fine-tuned from a checkpoint's weights (``init_weights``; the optimizer and
schedule start afresh).

``train(config)`` trains ``config.arch`` on ``<data_dir>/train.json`` (validating on
``val.json``) and writes to ``<out_dir>``:

- ``last.pt``: the full training state (model, optimizer, step, RNG states, config), written
  every ``checkpoint_every`` steps and at the end; ``--resume`` continues from it exactly.
- ``best.pt`` / ``final.pt``: detector checkpoints (``perception.checkpoint`` format, loadable
  with ``load_detector``) of the best validation mAP@0.5 and of the last step.
- ``log.csv``: step, epoch, lr, losses, images/s, validation mAP (when measured), elapsed time.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.device import resolve_device
from perception.architectures import DetectorSpec, build_from_spec
from perception.checkpoint import load_checkpoint, save_checkpoint
from perception.data_memory import MemoryDataset, load_split, make_batch
from perception.eval_run import detection_metrics, predict
from perception.operating_point import calibrate_checkpoint
from perception.train_config import TrainConfig

logger = logging.getLogger(__name__)
LOG_FIELDS = ("step", "epoch", "lr", "loss", "loss_bbox", "loss_cls", "images_per_s",
              "val_map50", "val_map50_95", "elapsed_s")
STATE_FORMAT = "roadstream.train_state"


@dataclass
class TrainResult:
    """What a run reached: final step, best validation mAP@0.5 and the files written."""

    step: int
    best_map50: float
    best_path: Path | None
    final_path: Path | None
    last_state: Path
    elapsed_s: float
    stopped_early: bool


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine to ``lr * min_lr_ratio`` at ``cfg.steps``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    low = cfg.lr * cfg.min_lr_ratio
    return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * frac))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return the CPU generator that drives sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on norm layers and biases (1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def spec_for(cfg: TrainConfig) -> DetectorSpec:
    """The detector recipe saved with every checkpoint of this run."""
    return DetectorSpec(arch=cfg.arch, image_size=cfg.image_size, extra=dict(cfg.arch_extra))


def save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
               step: int, best: float, cfg: TrainConfig, elapsed_s: float) -> None:
    """Write the resumable training state atomically."""
    state = {
        "format": STATE_FORMAT, "step": step, "best_map50": best, "elapsed_s": elapsed_s,
        "config": cfg.model_dump(mode="json"), "model": model.state_dict(),
        "optimizer": opt.state_dict(), "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_state(path: Path) -> dict[str, Any]:
    """Read a training state written by ``save_state``; ``ValueError`` if it is not one."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a roadstream training state")
    return state


def load_initial_weights(model: nn.Module, spec: DetectorSpec, path: Path) -> None:
    """Load the weights of checkpoint ``path`` into ``model`` (built from ``spec``) to fine-tune.

    The checkpoint's architecture, image size and classes must be ``spec``'s; ``ValueError``
    naming the file otherwise (a ``ModelLoadError`` for a file that is no checkpoint).
    """
    ckpt = load_checkpoint(path)
    if ckpt.spec.to_dict() != spec.to_dict():
        raise ValueError(f"init_weights {path}: its model spec {ckpt.spec.to_dict()} is not "
                         f"this run's {spec.to_dict()} (arch, image_size and arch_extra must match)")
    model.load_state_dict(ckpt.state_dict)


def _scalar(losses: dict[str, torch.Tensor], key: str) -> float | str:
    return round(float(losses[key].detach()), 5) if key in losses else ""


def _next_indices(weights: torch.Tensor, n: int, gen: torch.Generator) -> list[int]:
    return [int(i) for i in torch.multinomial(weights, n, replacement=True, generator=gen)]


class _Log:
    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        if not (resume and path.exists()):
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(LOG_FIELDS)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in LOG_FIELDS])


def validate(model: nn.Module, data: MemoryDataset, device: torch.device) -> dict[str, Any]:
    """Validation metrics (``detection_metrics``) of ``model`` on ``data``; leaves it in train mode."""
    preds = predict(model, data, device=device, batch_size=32)
    model.train()
    return detection_metrics(data, preds)


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train as ``cfg`` says (see the module doc for outputs); ``resume`` continues ``last.pt``.

    ``stop_at`` ends this run at that step (state saved) without changing the schedule, as an
    interruption would; ``progress(step, total_steps, row)`` is called after every logged step.
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    gen = seed_everything(cfg.seed)
    spec = spec_for(cfg)
    model = build_from_spec(spec)
    if cfg.init_weights is not None and not resume:
        load_initial_weights(model, spec, cfg.init_weights)
    model = model.to(device).train()
    opt = build_optimizer(model, cfg)
    step, best, prior_s = 0, -1.0, 0.0
    last_path = out / "last.pt"
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"nothing to resume: {last_path} does not exist")
        state = load_state(last_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step, best, prior_s = int(state["step"]), float(state["best_map50"]), state["elapsed_s"]
    train_data = load_split(Path(cfg.data_dir) / "train.json", cfg.image_size,
                            limit=cfg.train_images).to(device)
    val_json = Path(cfg.data_dir) / "val.json"
    val_data = load_split(val_json, cfg.image_size, limit=cfg.val_images) if val_json.exists() else None
    weights = train_data.sample_weights(cfg.rare_boost)
    log = _Log(out / "log.csv", resume)
    use_amp = cfg.amp and device.type == "cuda"
    start = time.monotonic()
    window_t, window_n = time.monotonic(), 0
    best_path: Path | None = out / "best.pt" if (out / "best.pt").exists() else None
    stopped = False
    meta = {"config": cfg.model_dump(mode="json"), "train_images": len(train_data)}
    while step < cfg.steps:
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = _next_indices(weights, cfg.batch_size, gen)
        images, targets = make_batch(train_data, idx, gen, augment=True, zoom_prob=cfg.zoom_prob,
                                     min_zoom=cfg.min_zoom, colour_jitter=cfg.colour_jitter)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            losses = model(images, targets)
        loss: torch.Tensor = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        window_n += len(idx)
        elapsed = prior_s + time.monotonic() - start
        row: dict[str, Any] = {}
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.monotonic()
            row = {"step": step, "epoch": round(step * cfg.batch_size / len(train_data), 3),
                   "lr": f"{lr:.6g}", "loss": round(float(loss.detach()), 5),
                   "loss_bbox": _scalar(losses, "bbox_regression"),
                   "loss_cls": _scalar(losses, "classification"),
                   "images_per_s": round(window_n / max(now - window_t, 1e-9), 2),
                   "elapsed_s": round(elapsed, 1)}
            window_t, window_n = now, 0
        stop_now = ((cfg.time_limit_s is not None and time.monotonic() - start > cfg.time_limit_s)
                     or (stop_at is not None and step >= stop_at and step < cfg.steps))
        if val_data is not None and (step % cfg.val_every == 0 or step == cfg.steps or stop_now):
            metrics = validate(model, val_data, device)
            row = row or {"step": step, "lr": f"{lr:.6g}", "elapsed_s": round(elapsed, 1)}
            row["val_map50"], row["val_map50_95"] = metrics["map50"], metrics["map50_95"]
            if metrics["map50"] is not None and metrics["map50"] > best:
                best = float(metrics["map50"])
                best_path = save_checkpoint(
                    out / "best.pt", model, spec, model_version=f"{cfg.name}-step{step}",
                    metadata={**meta, "step": step, "val": metrics})
        if row:
            log.write(row)
            if progress is not None:
                progress(step, cfg.steps, row)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop_now:
            save_state(last_path, model, opt, gen, step, best, cfg, elapsed)
        if stop_now:
            stopped = True
            break
    final = save_checkpoint(out / "final.pt", model, spec, model_version=f"{cfg.name}-step{step}",
                            metadata={**meta, "step": step})
    if val_json.exists():  # the operating score the service and tracker will run at
        for path in {p for p in (final, best_path) if p is not None}:
            try:
                calibrate_checkpoint(path, val_json, device=str(device))
            except ValueError as exc:  # an untrained model may find nothing: leave it uncalibrated
                logger.warning("%s: no operating point stored: %s", path, exc)
    total = prior_s + time.monotonic() - start
    return TrainResult(step, best, best_path, final, last_path, total, stopped)


def main(argv: list[str] | None = None) -> int:
    """``python -m perception.training --config FILE [--resume] [--set KEY=VALUE ...]``.

    The same run as ``roadstream train``, for machines that carry only the pure packages.
    """
    import argparse
    import json

    from perception.train_config import load_train_config

    parser = argparse.ArgumentParser(prog="python -m perception.training")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (value parsed as JSON when it can be)")
    args = parser.parse_args(argv)
    cfg = load_train_config(args.config, parse_overrides(args.set))

    def show(step: int, total: int, row: dict[str, Any]) -> None:
        print(f"step {step}/{total} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    result = train(cfg, resume=args.resume, progress=show)
    print(json.dumps({k: str(v) for k, v in vars(result).items()}), flush=True)
    return 0


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["steps=100", "device=cpu"]`` → ``{"steps": 100, "device": "cpu"}`` (JSON values)."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


if __name__ == "__main__":
    raise SystemExit(main())
