"""Model packages: a folder holding an exported detector core and its ``manifest.json``.

A package is self-contained: the runtime's model files (the convolutional core of
``perception.runtimes``: ``model.onnx`` for ONNX Runtime, or the OpenVINO IR ``model.xml`` +
``model.bin``) plus a manifest with everything needed to serve and to trust it::

    format: "roadstream.model-package"   format_version: 1
    model_version: "<source version>-<format>-<precision>"
    model: {format: "onnx" | "openvino", precision: "fp32" | "int8",
            file (the one the runtime opens), files: {name: sha256} (every model file),
            sha256 (see below), bytes (all model files), runtime ("<name> <version>"),
            opset (of the ONNX graph the core was exported as), converted_from (openvino: "onnx")}
    source: {checkpoint (file name), sha256 (of the checkpoint file), model_version}
    spec: DetectorSpec.to_dict()   (rebuilds the torch pre/post-processing, never the weights)
    input_size: [h, w] [px]        class_names: ["background", "car", ...]
    operating_point: the checkpoint's calibrated operating score (or null)
    calibration: int8 only: split, source, frames, seed, file names, method, quantiser and why
                 it is the one for this format (else null)
    evaluation: the package's own held-out metrics and the source checkpoint's on the same split

``model.sha256`` is one digest for the model however many files hold it (``models_sha256``):
for a single file (ONNX), that file's sha256, as a checkpoint's is; for several (OpenVINO's
graph and weights), the sha256 of their ``sha256sum`` listing sorted by name, i.e. of the text
``"<sha256 of model.bin>  model.bin\n<sha256 of model.xml>  model.xml\n"`` — what
``sha256sum model.bin model.xml | sha256sum`` prints. A listing rather than the files' bytes
end to end, so that no shift of bytes from one file to the other keeps the digest. ``files``
keeps each file's own digest so that a refusal names the file that changed.

``load_package`` checks every model file's sha256 against the manifest before opening it, so a
changed, truncated or missing file is refused, not served.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection import FCOS

from perception.architectures import DetectorSpec, build_from_spec
from perception.classes import ModelLoadError
from perception.runtimes import OrtRuntime, OvRuntime, Runtime, SplitModel

PACKAGE_FORMAT = "roadstream.model-package"
PACKAGE_VERSION = 1
MANIFEST = "manifest.json"
FORMATS: tuple[str, ...] = ("onnx", "openvino")
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
# Model files of each format, the one the runtime opens first.
MODEL_FILES: dict[str, tuple[str, ...]] = {"onnx": ("model.onnx",),
                                           "openvino": ("model.xml", "model.bin")}
# The runtime that serves each format: RUNTIMES[format](model file, num_threads=..., device=...).
RUNTIMES: dict[str, Callable[..., Runtime]] = {"onnx": OrtRuntime, "openvino": OvRuntime}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def models_sha256(files: Mapping[str, str]) -> str:
    """The one digest of a model held in ``files`` ({name: sha256}; see the module docstring)."""
    if len(files) == 1:
        return next(iter(files.values()))
    listing = "".join(f"{files[name]}  {name}\n" for name in sorted(files))
    return hashlib.sha256(listing.encode()).hexdigest()


def model_files_record(folder: Path, names: Sequence[str]) -> dict[str, Any]:
    """The manifest's ``file``, ``files``, ``sha256`` and ``bytes`` for ``names`` in ``folder``."""
    files = {name: file_sha256(folder / name) for name in names}
    return {"file": names[0], "files": files, "sha256": models_sha256(files),
            "bytes": sum((folder / name).stat().st_size for name in names)}


@dataclass(frozen=True)
class PackageManifest:
    """A package's manifest (see the module docstring); ``data`` is the JSON document."""

    data: dict[str, Any]

    @property
    def model_version(self) -> str:
        """The package's own version: its source's, format and precision."""
        return str(self.data["model_version"])

    @property
    def format(self) -> str:
        """Runtime format of the model files (``onnx`` or ``openvino``)."""
        return str(self.data["model"]["format"])

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``."""
        return str(self.data["model"]["precision"])

    @property
    def spec(self) -> DetectorSpec:
        """The detector recipe the package was exported from."""
        return DetectorSpec.from_dict(dict(self.data["spec"]))

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the class ids, index = id."""
        return tuple(self.data["class_names"])

    @property
    def operating_score(self) -> float | None:
        """The source checkpoint's calibrated operating score, if it had one."""
        point = self.data.get("operating_point")
        return float(point["score"]) if isinstance(point, Mapping) and "score" in point else None

    def to_json(self) -> str:
        """The manifest file's text."""
        return json.dumps(self.data, indent=1, sort_keys=False) + "\n"


def is_package(path: str | Path) -> bool:
    """True when ``path`` is a folder (a package, or meant to be one); files are checkpoints."""
    return Path(path).is_dir()


_REQUIRED = ("model_version", "model", "source", "spec", "input_size", "class_names")


def read_manifest(folder: str | Path) -> PackageManifest:
    """The manifest of the package in ``folder``; ``ModelLoadError`` naming what is wrong."""
    root = Path(folder)
    path = root / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"model package {root} has no {MANIFEST}: not a model package")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != PACKAGE_FORMAT:
        raise ModelLoadError(f"{path} is not a {PACKAGE_FORMAT} manifest")
    if data.get("format_version") != PACKAGE_VERSION:
        raise ModelLoadError(f"{path}: unsupported format_version {data.get('format_version')!r}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}")
    manifest = PackageManifest(data)
    model = data["model"]
    if not isinstance(model, dict):
        raise ModelLoadError(f"{path}: 'model' must be an object, got {model!r}")
    if model.get("format") not in FORMATS:
        raise ModelLoadError(f"{path}: model format {model.get('format')!r} is not one of "
                             f"{', '.join(FORMATS)}")
    if model.get("precision") not in PRECISIONS:
        raise ModelLoadError(f"{path}: precision {model.get('precision')!r} is not one of "
                             f"{', '.join(PRECISIONS)}")
    try:
        spec = manifest.spec
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: bad model spec ({exc})") from exc
    if len(manifest.class_names) != spec.num_classes:
        raise ModelLoadError(f"{path}: {len(manifest.class_names)} class names for "
                             f"num_classes={spec.num_classes}")
    return manifest


def load_package(folder: str | Path, *, num_threads: int | None = None,
                 device: str | torch.device = "cpu") -> tuple[SplitModel, PackageManifest]:
    """The package in ``folder`` as a servable model (``perception.model`` contract).

    ``device``: where the runtime runs the core, ``cpu`` or (ONNX packages, with
    onnxruntime-gpu) ``cuda[:N]``; pre/post-processing runs on the host either way.

    Every model file must match the manifest's sha256; the format's runtime (``RUNTIMES``:
    ONNX Runtime or OpenVINO) opens it. Pre/post-processing is rebuilt from the manifest's spec
    (``build_from_spec``; its random core weights are never run). ``num_threads``: the runtime's
    intra-op threads. Raises ``ModelLoadError`` naming the folder.
    """
    root = Path(folder)
    manifest = read_manifest(root)
    model_file = root / str(manifest.data["model"].get("file", ""))
    _check_files(root, manifest)
    try:
        skeleton = build_from_spec(manifest.spec)
        if not isinstance(skeleton, FCOS):
            raise ValueError(f"arch {manifest.spec.arch!r} cannot be served from a package (FCOS only)")
        runtime = RUNTIMES[manifest.format](model_file, num_threads=num_threads, device=device)
        model = SplitModel(skeleton, runtime)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"model package {root}: {exc}") from exc
    return model, manifest


def _check_files(root: Path, manifest: PackageManifest) -> None:
    """Every model file present and as exported; ``ModelLoadError`` naming the first that is not.

    ``model.files`` lists them (a manifest without it, as the first ONNX packages were written,
    holds one file: ``model.file`` with ``model.sha256``).
    """
    model = manifest.data["model"]
    files = model.get("files") or {str(model.get("file", "")): model.get("sha256")}
    if not isinstance(files, Mapping) or str(model.get("file")) not in files:
        raise ModelLoadError(f"model package {root}: model.files {files!r} does not list "
                             f"model.file {model.get('file')!r}")
    for name, recorded in files.items():
        path = root / str(name)
        if Path(str(name)).name != str(name) or not path.is_file():
            raise ModelLoadError(f"model package {root}: model file {name} is missing")
        digest = file_sha256(path)
        if digest != recorded:
            raise ModelLoadError(f"model package {root}: {name} has sha256 {digest[:12]}…, "
                                 f"the manifest says {str(recorded)[:12]}…; "
                                 "the file was changed after export")
    if models_sha256({str(k): str(v) for k, v in files.items()}) != model.get("sha256"):
        raise ModelLoadError(f"model package {root}: model.sha256 is not the digest of model.files; "
                             "the manifest was changed after export")
