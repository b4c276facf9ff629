"""`roadstream retrain`: from a detection drift to a registered candidate (services.retrain).

`--recording FILE` derives a retraining request from each `detection_drift` episode recorded in
the file (written to `retrain-requests/<id>.json` beside it) and retrains from the first (or
from `--event ID`); `--request ID|FILE` retrains from a request written before. The candidate,
its training run, report.json and model card go to `runs/retrain/<request id>/` (`--out`), and
the candidate is registered (stage candidate) in the model registry. docs/retraining.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from services.cli.common import CommandError, emit, settings_from
from services.cli.progress import progress_bar


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `retrain`."""
    p = sub.add_parser(
        "retrain", help="retrain the detector on the frames of a detection drift",
        description="Build a dataset from the drifted frames of a recording and their "
                    "sim.ground_truth labels, fine-tune the production weights on it mixed with "
                    "the original training data (progress, checkpoints, --resume), evaluate "
                    "production and candidate on the held-out split and on held-out drifted "
                    "frames, and register the candidate (stage candidate).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--request", metavar="ID|FILE",
                     help="a request id (found under runs/*/retrain-requests/) or its JSON file")
    src.add_argument("--recording", type=Path, metavar="FILE",
                     help="an MCAP recording: derive requests from its detection_drift events")
    p.add_argument("--event", metavar="EVENT_ID", default=None,
                   help="with --recording: the drift event to retrain from (default the first)")
    p.add_argument("--request-only", action="store_true",
                   help="with --recording: write the requests and stop")
    p.add_argument("--base-data", type=Path, default=Path("data/sim_coco"), metavar="DIR",
                   help="original training data: train.json, val.json (and test.json, the "
                        "held-out split) from `roadstream dataset` (data/sim_coco)")
    p.add_argument("--heldout", type=Path, default=None, metavar="PATH",
                   help="held-out COCO folder or file (default BASE_DATA/test.json, else the "
                        "rendered held-out split)")
    p.add_argument("--weights", type=Path, default=None, metavar="FILE",
                   help="checkpoint to fine-tune (default: the registry's production, else the "
                        "shipped weights)")
    p.add_argument("--base-config", type=Path, default=Path("configs/train_fcos_dense_cpu.yaml"),
                   metavar="FILE", help="training recipe the fine-tuning starts from")
    p.add_argument("--registry", type=Path, default=None, metavar="DIR",
                   help="registry folder (default: ROADSTREAM_MODEL_REGISTRY_DIR or registry/)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default RUNS_DIR/retrain/<request id>)")
    p.add_argument("--steps", type=int, default=600, help="fine-tuning steps (600)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (3e-4)")
    p.add_argument("--drift-repeat", type=int, default=2, metavar="N",
                   help="drifted training frames appear N times in the training set (2)")
    p.add_argument("--frame-stride", type=int, default=2, metavar="N",
                   help="keep one recorded frame in N per camera (2)")
    p.add_argument("--holdout-fraction", type=float, default=0.25, metavar="F",
                   help="share of the drifted frames held out, by scene (0.25)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config field (e.g. batch_size=8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    p.add_argument("--resume", action="store_true", help="continue the training's last.pt")
    p.add_argument("--no-register", action="store_true", help="do not register the candidate")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_retrain)


def cmd_retrain(args: argparse.Namespace) -> int:
    """Derive or read the request, retrain, print the verdict and the registry entry."""
    from perception.classes import ModelLoadError
    from perception.registry import RegistryError
    from perception.training import parse_overrides
    from services.recording.envelope import RecordingError
    from services.retrain.pipeline import RetrainOptions, retrain
    from services.retrain.request import (
        find_request,
        load_request,
        requests_from_recording,
        save_request,
    )

    settings = settings_from(args)
    try:
        if args.recording is not None:
            requests = requests_from_recording(args.recording)
            if not requests:
                raise CommandError(f"{args.recording}: no detection_drift event recorded; "
                                   "nothing to retrain on")
            paths = [save_request(r) for r in requests]
            if args.request_only:
                emit({"requests": [str(p) for p in paths]}, as_json=args.json,
                     text="\n".join(f"{r.request_id}: {p}" for r, p in zip(requests, paths,
                                                                            strict=True)))
                return 0
            chosen = [r for r in requests if args.event in (None, r.event_id)]
            if not chosen:
                raise CommandError(f"--event {args.event}: no drift event of that id in "
                                   f"{args.recording}")
            request = chosen[0]
        else:
            request = load_request(find_request(args.request, settings.runs_dir))
        options = RetrainOptions(
            out_dir=args.out or settings.runs_dir / "retrain" / request.request_id,
            registry=args.registry or settings.model_registry_dir, base_data=args.base_data,
            base_config=args.base_config, weights=args.weights, heldout=args.heldout,
            steps=args.steps, lr=args.lr, drift_repeat=args.drift_repeat,
            frame_stride=args.frame_stride, holdout_fraction=args.holdout_fraction,
            device=args.device, register=not args.no_register, resume=args.resume,
            overrides=parse_overrides(args.overrides))
        with progress_bar(f"retraining on {request.request_id}") as bar:
            task = bar.add_task("fine-tune", total=options.steps)

            def show(step: int, total: int, row: dict[str, Any]) -> None:
                bar.update(task, completed=step, total=total,
                           description=f"fine-tune loss {row.get('loss', '')}")

            report = retrain(request, options, progress=show)
    except (RecordingError, RegistryError, ModelLoadError, ValueError, FileNotFoundError) as exc:
        raise CommandError(f"retrain: {exc}") from None
    v = report["verdict"]
    lines = [f"request {request.request_id}: frames {request.start_ns}–{request.end_ns} ns of "
             f"{request.recording}",
             f"candidate {report['candidate']['model_version']}: {report['candidate']['weights']}"]
    lines += [f"  {c['what']}: {c['production']:.3f} → {c['candidate']:.3f} ({c['delta']:+.3f})"
              for c in v["checks"]]
    lines.append(f"verdict: {'improves' if v['improves'] else 'does not improve'}")
    if "registry" in report:
        lines.append(f"registered {report['registry']['version']} as "
                     f"{report['registry']['stage']} in {report['registry']['root']}")
    lines.append(f"report: {options.out_dir / 'report.json'}")
    emit(report, as_json=args.json, text="\n".join(lines))
    return 0
