"""`roadstream dataset`, `train`, `eval`, `calibrate` and `export`: the detector's data and model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from services.cli.common import CommandError, emit, write_json
from services.cli.progress import progress_bar


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `dataset`, `train`, `eval`, `calibrate` and `export`."""
    p = sub.add_parser(
        "dataset", help="render labelled detection data (COCO JSON + JPEG)",
        description="Render frames of the scenario library under random seeds, conditions, actor "
                    "appearance and camera pose into DIR/{train,val,test}.json (COCO) and "
                    "DIR/<split>/*.jpg. Splits use disjoint seed ranges (train 0…, val 1e6…, "
                    "test 2e6…), so no held-out scene is seen in training.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--images", type=int, default=2000, metavar="N", help="training images (2000)")
    p.add_argument("--val", type=int, default=None, metavar="N",
                   help="validation images (default N/10, at least 50)")
    p.add_argument("--test", type=int, default=300, metavar="N", help="held-out images (300)")
    p.add_argument("--size", default="640x360", metavar="WxH", help="image size (640x360)")
    p.add_argument("--frames-per-scene", type=int, default=6, help="instants per scene (6)")
    p.add_argument("--workers", type=int, default=2, help="render processes (2)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser(
        "train", help="train the detector from scratch",
        description="Train a detector as a YAML config says (configs/train_*.yaml): seeded, "
                    "checkpointed (OUT/last.pt), resumable, CSV log (OUT/log.csv); best and "
                    "final detector checkpoints in OUT/best.pt and OUT/final.pt.")
    p.add_argument("--config", dest="train_config", type=Path, required=True, metavar="FILE",
                   help="training config (YAML)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set steps=100 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval", help="COCO-style evaluation of a detector checkpoint or model package on the held-out split",
        description="mAP@0.5, mAP@[.5:.95], AP@0.5 per class and mAP@0.5 per condition on the "
                    "held-out split (DIR/test.json, or test frames rendered on the spot). A model "
                    "package (a folder written by `roadstream export`) is scored on the same split "
                    "as a checkpoint.")
    p.add_argument("--model", "--weights", dest="weights", type=Path, default=None, metavar="PATH",
                   help="detector checkpoint (.pt) or model package folder (default: the shipped "
                        "weights)")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="dataset directory with test.json (default: render the held-out split)")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="held-out frames to render when no --data (300)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    p.add_argument("--tracking", action="store_true",
                   help="evaluate tracking (MOTA, IDF1) and ranging on held-out sequences "
                        "instead of detection mAP")
    p.add_argument("--sequences", nargs="+", default=None, metavar="SCENARIO",
                   help="with --tracking: scenarios to run (default: 8 varied ones)")
    p.add_argument("--seconds", type=float, default=8.0,
                   help="with --tracking: seconds per sequence (8)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="with --tracking: seeds of the held-out test range (default, the figures "
                        "to report) or of the validation range (to tune the tracker on)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the JSON")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "calibrate", help="store a detector's operating score (F1-best threshold on validation)",
        description="Run the detector on the validation split (DIR/val.json), find the score "
                    "threshold that maximises F1 at IoU 0.5, and store it in the checkpoint's "
                    "metadata; the perception service and the tracker take their thresholds "
                    "from it. `roadstream train` does this at the end of every run.")
    p.add_argument("--weights", type=Path, required=True, metavar="PATH",
                   help="detector checkpoint (rewritten in place)")
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="dataset directory with val.json (never the held-out test split)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    p.add_argument("--dry-run", action="store_true", help="print the point, do not write it")
    p.add_argument("--json", action="store_true", help="print the point as JSON")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "export", help="export a checkpoint as a model package (ONNX or OpenVINO, fp32 or int8)",
        description="Write a self-contained model package: the convolutional core (DIR/model.onnx, "
                    "or DIR/model.xml + model.bin for --format openvino; resize/normalise and FCOS "
                    "decode + NMS run in the shared torch code) and "
                    "DIR/manifest.json (version, source sha256, format, precision, input size, "
                    "classes, calibration data, and the package's own held-out evaluation). "
                    "--int8: post-training static quantisation calibrated on validation frames "
                    "(onnx: ONNX Runtime, QDQ; openvino: NNCF).")
    p.add_argument("--weights", type=Path, default=None, metavar="PATH",
                   help="detector checkpoint (default: the shipped weights)")
    p.add_argument("--format", dest="fmt", choices=("onnx", "openvino"), default="onnx",
                   help="package format: onnx (ONNX Runtime) or openvino (OpenVINO IR) (onnx)")
    p.add_argument("--int8", action="store_true", help="quantise to int8 (else fp32)")
    p.add_argument("--calib-frames", type=int, default=None, metavar="N",
                   help="with --int8: validation frames to calibrate on (64)")
    p.add_argument("--calib-data", type=Path, default=None, metavar="DIR",
                   help="with --int8: dataset directory with val.json (default: render validation "
                        "frames)")
    p.add_argument("--calib-seed", type=int, default=0, help="with --calib-data: frame draw seed (0)")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="held-out split for the package's evaluation (default: render it, as eval)")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="held-out frames to render when no --data (300)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation (manifest: null)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="new package folder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_export)


def cmd_dataset(args: argparse.Namespace) -> int:
    """Render the dataset with a progress bar."""
    from perception.dataset import build_dataset, parse_size

    try:
        size = parse_size(args.size)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    val = args.val if args.val is not None else max(50, args.images // 10)
    images = {"train": args.images, "val": val, "test": args.test}
    with progress_bar(f"rendering {sum(images.values())} frames") as bar:
        task = bar.add_task("dataset", total=sum(images.values()))
        summary = build_dataset(args.out, images=images, size=size, workers=args.workers,
                                frames_per_scene=args.frames_per_scene,
                                progress=lambda done, _total: bar.update(task, completed=done))
    lines = [f"{name}: {s['images']} images, {s['scenes']} scenes, {s['annotations']} objects "
             f"({s['ignored']} ignored) → {s['json']}" for name, s in summary["splits"].items()]
    emit(summary, as_json=args.json, text="\n".join(lines))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train with a progress bar; prints where the checkpoints are."""
    from pydantic import ValidationError

    from perception.train_config import load_train_config
    from perception.training import parse_overrides, train

    try:
        cfg = load_train_config(args.train_config, parse_overrides(args.overrides))
    except (ValidationError, ValueError) as exc:
        raise CommandError(f"bad training config {args.train_config}: {exc}") from exc
    last: dict[str, Any] = {}
    with progress_bar(f"training {cfg.arch} {cfg.image_size[0]}x{cfg.image_size[1]}") as bar:
        task = bar.add_task("train", total=cfg.steps)

        def show(step: int, _total: int, row: dict[str, Any]) -> None:
            last.update(row)
            bar.update(task, completed=step, description=f"train loss {row.get('loss', '')}")

        result = train(cfg, resume=args.resume, progress=show)
    out = {"step": result.step, "best_val_map50": result.best_map50,
           "best": str(result.best_path) if result.best_path else None,
           "final": str(result.final_path) if result.final_path else None,
           "state": str(result.last_state), "log": str(Path(cfg.out_dir) / "log.csv"),
           "elapsed_s": round(result.elapsed_s, 1), "stopped_early": result.stopped_early,
           "last_row": last}
    text = (f"trained {result.step} steps in {result.elapsed_s:.0f} s; best val mAP@0.5 "
            f"{result.best_map50:.3f}\nbest: {out['best']}\nfinal: {out['final']}\n"
            f"log: {out['log']}")
    emit(out, as_json=args.json, text=text)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Calibrate and store a checkpoint's operating score."""
    from perception.classes import ModelLoadError
    from perception.operating_point import calibrate_checkpoint

    val_json = args.data / "val.json" if args.data.suffix != ".json" else args.data
    if not val_json.is_file():
        raise CommandError(f"no validation split at {val_json}")
    try:
        point = calibrate_checkpoint(args.weights, val_json, device=args.device,
                                     write=not args.dry_run)
    except (ModelLoadError, ValueError) as exc:
        raise CommandError(f"cannot calibrate {args.weights}: {exc}") from exc
    out = {**point.to_dict(), "weights": str(args.weights), "written": not args.dry_run}
    text = (f"operating score {point.score:.3f}: precision {point.precision:.3f}, recall "
            f"{point.recall:.3f}, F1 {point.f1:.3f} on {point.images} images "
            f"({'not written' if args.dry_run else f'stored in {args.weights}'})")
    emit(out, as_json=args.json, text=text)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate weights on the held-out split."""
    from perception.classes import ModelLoadError
    from perception.eval_run import DEFAULT_HELDOUT_IMAGES, DEFAULT_WEIGHTS, evaluate_weights

    weights = args.weights or DEFAULT_WEIGHTS
    if args.tracking:
        return _eval_tracking(args, weights)
    n = args.images or DEFAULT_HELDOUT_IMAGES
    try:
        with progress_bar("rendering the held-out split") as bar:
            task = bar.add_task("held-out", total=n)
            result = evaluate_weights(weights, args.data, images=n, device=args.device,
                                      progress=lambda done, _t: bar.update(task, completed=done))
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from exc
    if args.out is not None:
        write_json(args.out, result)

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    model = result["model"]
    lines = [f"model {weights} ({model['model_version']}, {model['format']} {model['precision']}), "
             f"{result['data']}",
             f"mAP@0.5 {fmt(result['map50'])}   mAP@[.5:.95] {fmt(result['map50_95'])}",
             "per class:     " + "  ".join(f"{k} {fmt(v)}" for k, v in result["per_class"].items()),
             "per condition: " + "  ".join(f"{k} {fmt(v)}"
                                           for k, v in result["per_condition"].items())]
    emit(result, as_json=args.json, text="\n".join(lines))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a package and print its manifest's essentials."""
    from perception.classes import ModelLoadError
    from perception.eval_run import DEFAULT_HELDOUT_IMAGES, DEFAULT_WEIGHTS
    from perception.export import DEFAULT_CALIB_FRAMES, export_package

    if not args.int8 and (args.calib_frames is not None or args.calib_data is not None):
        raise CommandError("--calib-frames and --calib-data apply to --int8 only")
    frames = DEFAULT_CALIB_FRAMES if args.calib_frames is None else args.calib_frames
    if frames < 1:
        raise CommandError(f"--calib-frames {frames}: at least 1 frame is needed")
    weights = args.weights or DEFAULT_WEIGHTS
    with progress_bar(f"exporting {weights.name}") as bar:
        task = bar.add_task("export", total=None)
        try:
            manifest = export_package(
                weights, args.out, fmt=args.fmt, int8=args.int8, calib_frames=frames,
                calib_data=args.calib_data, calib_seed=args.calib_seed, eval_data=args.data,
                eval_images=args.images or DEFAULT_HELDOUT_IMAGES, evaluate=not args.no_eval,
                progress=lambda stage: bar.update(task, description=stage))
        except (ModelLoadError, ValueError, FileExistsError) as exc:
            raise CommandError(f"cannot export {weights}: {exc}") from exc
    data = manifest.data
    lines = [f"package {args.out}: {manifest.model_version} ({manifest.format} {manifest.precision}, "
             f"{data['model']['bytes'] / 1e6:.1f} MB, sha256 {data['model']['sha256'][:12]})"]
    if data["calibration"] is not None:
        lines.append(f"calibrated on {data['calibration']['frames']} validation frames")
    ev = data["evaluation"]
    if ev is not None:
        src = ev["source"]
        lines.append(f"mAP@0.5 {ev['map50']} (checkpoint {src['map50']}) on {ev['data']}")
        lines.append("per condition: " + "  ".join(
            f"{k} {v} ({src['per_condition'].get(k)})" for k, v in ev["per_condition"].items()))
    emit(data, as_json=args.json, text="\n".join(lines))
    return 0


def _eval_tracking(args: argparse.Namespace, weights: Path) -> int:
    """`roadstream eval --tracking`: MOTA, IDF1 and ranging error on held-out sequences."""
    from perception.checkpoint import load_detector
    from perception.tracking_eval import DEFAULT_SEQUENCES, evaluate_tracking_sequences

    detector = load_detector(weights, device=args.device)
    sequences = tuple(args.sequences or DEFAULT_SEQUENCES)
    with progress_bar("tracking held-out sequences") as bar:
        task = bar.add_task("sequences", total=len(sequences))
        result = evaluate_tracking_sequences(
            detector, sequences=sequences, seconds=args.seconds, split=args.split,
            progress=lambda done, _t: bar.update(task, completed=done))
    if args.out is not None:
        write_json(args.out, result)
    rng = result["ranging"]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [f"weights {weights} ({result['model_version']}), {len(sequences)} {args.split} "
             f"sequences x {args.seconds:g} s",
             f"MOTA {fmt(result['mota'])}   IDF1 {fmt(result['idf1'])}",
             f"range error (median relative, <= {rng['range_limit_m']:g} m): "
             f"{fmt(rng['median_relative_error'])} over {rng['matched_objects']} matches; "
             + "  ".join(f"{k} {fmt(v)}" for k, v in rng["per_class"].items())]
    emit(result, as_json=args.json, text="\n".join(lines))
    return 0
