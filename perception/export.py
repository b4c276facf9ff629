"""``roadstream export``: a checkpoint → a model package (``perception.packages``).

The package holds the convolutional core only (``perception.runtimes.FcosCore``, exported with
``torch.onnx.export``, dynamic batch); resize/normalise and the FCOS decode + NMS stay outside the
graph, in the torch code every runtime shares, so a package's results differ from the
checkpoint's only by what the runtime computes differently in the core.

Formats. ``onnx``: that graph, ``model.onnx``, served by ONNX Runtime. ``openvino``: the same
ONNX graph converted by ``openvino.convert_model`` and saved as IR (``model.xml`` + ``model.bin``,
fp32 weights: ``compress_to_fp16`` off), served by OpenVINO. Converting the ONNX file rather than
tracing the torch core again keeps one exporter: both runtimes start from the same graph, and
the OpenVINO package differs from the ONNX one only by its runtime.

int8 is post-training static quantisation calibrated on validation frames — never on held-out
ones — the same frames, drawn by the same code (``calibration_split``, ``calibration_inputs``),
for both formats; each format has one quantiser, the one of its runtime:

- ``onnx``: ``onnxruntime.quantization``: QDQ format, per-channel symmetric int8 weights, uint8
  activations calibrated (min/max). ONNX Runtime's own tool rather than NNCF: the int8 graph
  stays an ONNX file that the same runtime, the same session code and the same parity tests
  serve, and ONNX Runtime's CUDA and TensorRT execution providers read the same QDQ graph.
- ``openvino``: ``nncf.quantize`` on the fp32 IR (performance preset: per-channel symmetric
  int8 weights, per-tensor symmetric activations from the mean of each frame's min/max, fast
  bias correction). NNCF rather than converting the ONNX Runtime QDQ graph: it places its
  FakeQuantize operations by the OpenVINO CPU plugin's own hardware configuration (which
  operations the plugin runs in int8 and fuses), and corrects the bias the rounding shifts; a
  QDQ graph converted to IR keeps ONNX Runtime's placement.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import FCOS

from perception.architectures import build_from_spec
from perception.checkpoint import load_checkpoint
from perception.data_memory import MemoryDataset, load_split
from perception.dataset import NATIVE_SIZE, build_dataset, load_coco
from perception.eval_run import DEFAULT_HELDOUT_IMAGES, evaluate_on, heldout_split
from perception.packages import (
    FORMATS,
    MANIFEST,
    MODEL_FILES,
    PACKAGE_FORMAT,
    PACKAGE_VERSION,
    PackageManifest,
    file_sha256,
    load_package,
    model_files_record,
)
from perception.runtimes import HEAD_OUTPUTS, INPUT_NAME, FcosCore, SplitModel

DEFAULT_CALIB_FRAMES = 64
DEFAULT_CALIB_SEED = 0
MAX_EXPORT_BATCH = 64  # upper bound of the exported graph's dynamic batch dimension

Progress = Callable[[str], None]


def _padded(image_size: tuple[int, int], divisor: int = 32) -> tuple[int, int]:
    """The batched input size [px]: the transform pads each side up to a multiple of 32."""
    return tuple(-(-v // divisor) * divisor for v in image_size)  # type: ignore[return-value]


def export_onnx(model: FCOS, path: Path, image_size: tuple[int, int]) -> int:
    """Write ``model``'s core to ``path`` as ONNX (batch dimension dynamic); returns the opset."""
    import onnx

    core = FcosCore(model).eval()
    example = torch.zeros(1, 3, *_padded(image_size))
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    # The exporter reports each of its passes on stdout; a CLI command prints only its result.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(core, (example,), str(path), input_names=[INPUT_NAME],
                          output_names=list(HEAD_OUTPUTS), dynamic_shapes=({0: batch},),
                          external_data=False, dynamo=True, verbose=False)
    proto = onnx.load(str(path))
    return int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


def calibration_split(data_dir: str | Path | None, frames: int, seed: int, image_size: tuple[int, int],
                      *, workers: int = 1) -> tuple[MemoryDataset, dict[str, Any]]:
    """``frames`` validation frames for calibration, and their record for the manifest.

    From ``data_dir/val.json`` (drawn with ``seed`` without replacement), or — without a
    directory — rendered now from the validation seed range, one frame per scene so that the
    frames cycle through scenarios and conditions (deterministic).
    """
    if frames < 1:
        raise ValueError(f"calibration needs at least 1 frame, got {frames}")
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="roadstream-calib-") as tmp:
            build_dataset(tmp, images={"val": frames}, size=NATIVE_SIZE, frames_per_scene=1,
                          workers=workers)
            data, scenes = _frames_of(Path(tmp) / "val.json", image_size, None)
        source = "rendered validation split (perception.dataset, val seed range, 1 frame per scene)"
        digest = None
    else:
        root = Path(data_dir)
        val_json = root if root.suffix == ".json" else root / "val.json"
        if not val_json.is_file():
            raise FileNotFoundError(f"no validation split at {val_json}")
        available = len(load_coco(val_json)["images"])
        if frames > available:
            raise ValueError(f"{val_json} holds {available} frames; {frames} were asked for")
        pick = np.sort(np.random.default_rng(seed).choice(available, frames, replace=False))
        data, scenes = _frames_of(val_json, image_size, [int(i) for i in pick])
        source, digest = str(val_json), file_sha256(val_json)
    record = {"split": "val", "source": source, "source_sha256": digest, "frames": len(data),
              "seed": seed if data_dir is not None else None,
              "conditions": {c: data.conditions.count(c) for c in sorted(set(data.conditions))},
              "frame_list": scenes}
    return data, record


def _frames_of(json_path: Path, image_size: tuple[int, int], pick: list[int] | None
               ) -> tuple[MemoryDataset, list[dict[str, Any]]]:
    """Frames ``pick`` (all when None) of a COCO split, and what each one is (file, scene)."""
    full = load_split(json_path, image_size)
    entries = load_coco(json_path)["images"]
    idx = list(range(len(full))) if pick is None else pick
    data = MemoryDataset(full.images[idx], [full.boxes[i] for i in idx], [full.labels[i] for i in idx],
                         [full.ignore[i] for i in idx], [full.source_size[i] for i in idx],
                         [full.conditions[i] for i in idx], [full.file_names[i] for i in idx])
    keys = ("file_name", "scenario", "seed", "condition", "t_s")
    return data, [{k: entries[i][k] for k in keys if k in entries[i]} for i in idx]


def calibration_inputs(model: FCOS, data: MemoryDataset) -> list[np.ndarray]:
    """``data``'s frames as the core receives them: ``[1, 3, H, W]`` float32, normalised and
    resized by ``model``'s own transform (the inputs every quantiser calibrates on)."""
    inputs = []
    with torch.inference_mode():
        for i in range(len(data)):
            image_list, _ = model.transform([data.images[i].float().div_(255.0)])
            inputs.append(image_list.tensors.numpy().astype(np.float32))
    return inputs


class _Frames:
    """``onnxruntime.quantization.CalibrationDataReader`` over normalised model inputs."""

    def __init__(self, inputs: list[np.ndarray]) -> None:
        self._it = iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {INPUT_NAME: x}


def quantize_onnx_int8(fp32_path: Path, out_path: Path, inputs: list[np.ndarray]) -> dict[str, str]:
    """Static QDQ int8 of ``fp32_path`` → ``out_path``, calibrated on ``inputs``; its record."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out_path.with_name("pre.onnx")
    quant_pre_process(str(fp32_path), str(pre))
    # The quantiser warns on the root logger for every 1-D tensor it cannot split per channel
    # (the normalisation scales, which stay fp32 anyway); nothing for a user to act on.
    logging.disable(logging.WARNING)
    try:
        # Symmetric per-channel int8 weights with uint8 activations: the U8S8 kernels of ONNX
        # Runtime's CPU provider (AVX2, AVX-512 VNNI, AMX).
        quantize_static(str(pre), str(out_path), _Frames(inputs), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.disable(logging.NOTSET)
    pre.unlink()
    return {"method": "minmax", "quantiser": f"onnxruntime.quantization {onnxruntime.__version__}",
            "scheme": "QDQ; per-channel symmetric int8 weights; per-tensor uint8 activations",
            "why": "the runtime's own quantiser: the int8 graph stays an ONNX file served by the "
                   "same runtime, and ONNX Runtime's CUDA and TensorRT providers read QDQ"}


def quantize_openvino_int8(model: Any, inputs: list[np.ndarray]) -> tuple[Any, dict[str, str]]:
    """``nncf.quantize`` of the fp32 ``openvino.Model`` ``model`` on ``inputs``; the int8 model
    and its record."""
    # NNCF imports torch's extension builder, which warns that this host has no CUDA runtime.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    # NNCF logs each step and draws progress bars; a CLI command prints only its result.
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(model, nncf.Dataset(inputs), preset=nncf.QuantizationPreset.PERFORMANCE,
                                  target_device=nncf.TargetDevice.CPU, subset_size=len(inputs))
    return quantized, {
        "method": "mean_minmax", "quantiser": f"nncf {nncf.__version__}",
        "scheme": "FakeQuantize; per-channel symmetric int8 weights; per-tensor symmetric "
                  "activations (mean of each frame's min/max); fast bias correction",
        "why": "OpenVINO's own quantiser: it places int8 by the CPU plugin's hardware "
               "configuration and corrects the bias rounding shifts; a converted ONNX Runtime "
               "QDQ graph would keep ONNX Runtime's placement"}


def convert_openvino(onnx_path: Path, xml_path: Path, *, inputs: list[np.ndarray] | None = None
                     ) -> dict[str, str] | None:
    """The ONNX core at ``onnx_path`` as OpenVINO IR at ``xml_path`` (``.bin`` beside it), fp32
    weights; with ``inputs``, quantised to int8 on them first. Returns the quantiser's record
    (``None`` for fp32)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    record = None
    if inputs is not None:
        model, record = quantize_openvino_int8(model, inputs)
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return record


def _runtime_version(fmt: str) -> str:
    """The manifest's ``runtime``: the serving runtime's name and version at export."""
    if fmt == "openvino":
        import openvino

        return f"openvino {openvino.__version__}"
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def export_package(
    weights: str | Path,
    out: str | Path,
    *,
    fmt: str = "onnx",
    int8: bool = False,
    calib_frames: int = DEFAULT_CALIB_FRAMES,
    calib_data: str | Path | None = None,
    calib_seed: int = DEFAULT_CALIB_SEED,
    eval_data: str | Path | None = None,
    eval_images: int = DEFAULT_HELDOUT_IMAGES,
    evaluate: bool = True,
    workers: int = 1,
    progress: Progress | None = None,
) -> PackageManifest:
    """Export the checkpoint ``weights`` as a package in the new folder ``out``; its manifest.

    ``evaluate``: score the package and the checkpoint on the held-out split (``eval_data``
    test.json, or ``eval_images`` rendered test frames) into the manifest. The folder appears
    whole or not at all (written beside it, then renamed). Raises ``FileExistsError`` for an
    existing ``out``, ``ValueError`` for a format or architecture that cannot be exported,
    ``ModelLoadError`` for a bad checkpoint.
    """
    report = progress or (lambda _stage: None)
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} cannot be exported; known: {', '.join(FORMATS)}")
    target = Path(out)
    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new folder for the package")
    source = Path(weights)
    ckpt = load_checkpoint(source)
    model = build_from_spec(ckpt.spec)
    if not isinstance(model, FCOS):
        raise ValueError(f"{source} is a {ckpt.spec.arch!r} detector; packages hold FCOS "
                         "architectures only (fcos_dense, fcos_mbv3)")
    model.load_state_dict(ckpt.state_dict)
    model.eval()
    precision = "int8" if int8 else "fp32"
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        names = MODEL_FILES[fmt]
        onnx_path = work / names[0] if fmt == "onnx" and not int8 else work / "core.onnx"
        report("export")
        opset = export_onnx(model, onnx_path, ckpt.spec.image_size)
        calibration: dict[str, Any] | None = None
        inputs: list[np.ndarray] | None = None
        if int8:
            report("calibrate")
            calib, calibration = calibration_split(calib_data, calib_frames, calib_seed,
                                                   ckpt.spec.image_size, workers=workers)
            inputs = calibration_inputs(model, calib)
        quantiser: dict[str, str] | None = None
        if fmt == "openvino":
            report("convert" if inputs is None else "convert + quantize")
            quantiser = convert_openvino(onnx_path, work / names[0], inputs=inputs)
        elif inputs is not None:
            report("quantize")
            quantiser = quantize_onnx_int8(onnx_path, work / names[0], inputs)
        if calibration is not None and quantiser is not None:
            calibration.update(quantiser)
        if onnx_path.name not in names:
            onnx_path.unlink()
        converted = {"converted_from": "onnx"} if fmt == "openvino" else {}
        data: dict[str, Any] = {
            "format": PACKAGE_FORMAT, "format_version": PACKAGE_VERSION,
            "model_version": f"{ckpt.model_version}-{fmt}-{precision}",
            "model": {"format": fmt, "precision": precision, **model_files_record(work, names),
                      "runtime": _runtime_version(fmt), "opset": opset, **converted,
                      "graph": "convolutional core (backbone + FPN + head); pre/post-processing "
                               "in perception.runtimes.SplitModel"},
            "source": {"checkpoint": source.name, "sha256": file_sha256(source),
                       "model_version": ckpt.model_version},
            "spec": ckpt.spec.to_dict(), "input_size": list(ckpt.spec.image_size),
            "class_names": list(ckpt.class_names),
            "operating_point": ckpt.metadata.get("operating_point"),
            "calibration": calibration, "evaluation": None,
        }
        (work / MANIFEST).write_text(PackageManifest(data).to_json())
        if evaluate:
            report("evaluate")
            data["evaluation"] = _evaluate(work, model, data, eval_data, eval_images, workers)
            (work / MANIFEST).write_text(PackageManifest(data).to_json())
        work.chmod(0o755)  # mkdtemp's folder is private; a package is as readable as a checkpoint
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return PackageManifest(json.loads((target / MANIFEST).read_text()))


_SUMMARY = ("map50", "map50_95", "per_class", "per_condition", "num_images", "num_ground_truth",
            "num_predictions")


def _evaluate(folder: Path, model: FCOS, data: dict[str, Any], eval_data: str | Path | None,
              eval_images: int, workers: int) -> dict[str, Any]:
    """The package's metrics (loaded as it will be served) and the checkpoint's, on one split."""
    cpu = torch.device("cpu")
    h, w = data["input_size"]
    split = heldout_split(eval_data, (int(h), int(w)), images=eval_images, workers=workers)
    label = str(eval_data) if eval_data is not None else f"rendered test split ({eval_images})"
    info = {"operating_point": data["operating_point"]}
    package, _ = load_package(folder)
    ours = evaluate_on(package, info, split, data_label=label, device=cpu)
    theirs = evaluate_on(SplitModel.torch(model), info, split, data_label=label, device=cpu)
    return {"data": label, **{k: ours[k] for k in _SUMMARY},
            "source": {k: theirs[k] for k in ("map50", "map50_95", "per_condition")}}
