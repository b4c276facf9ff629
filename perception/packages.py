"""Model packages: a folder holding an exported detector core and its ``manifest.json``.

A package is self-contained: the runtime's model file (``model.onnx``, the convolutional core
of ``perception.runtimes``) plus a manifest with everything needed to serve and to trust it::

    format: "roadstream.model-package"   format_version: 1
    model_version: "<source version>-<format>-<precision>"
    model: {format: "onnx", precision: "fp32" | "int8", file, sha256, bytes, runtime, opset}
    source: {checkpoint (file name), sha256 (of the checkpoint file), model_version}
    spec: DetectorSpec.to_dict()   (rebuilds the torch pre/post-processing, never the weights)
    input_size: [h, w] [px]        class_names: ["background", "car", ...]
    operating_point: the checkpoint's calibrated operating score (or null)
    calibration: int8 only: split, source, frames, seed, file names, method (else null)
    evaluation: the package's own held-out metrics and the source checkpoint's on the same split

``load_package`` checks the model file's sha256 against the manifest before opening it, so a
changed or truncated file is refused, not served.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchvision.models.detection import FCOS

from perception.architectures import DetectorSpec, build_from_spec
from perception.classes import ModelLoadError
from perception.runtimes import OrtRuntime, SplitModel

PACKAGE_FORMAT = "roadstream.model-package"
PACKAGE_VERSION = 1
MANIFEST = "manifest.json"
FORMATS: tuple[str, ...] = ("onnx",)
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
MODEL_FILES = {"onnx": "model.onnx"}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        """Runtime format of the model file (``onnx``)."""
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


def load_package(folder: str | Path, *, num_threads: int | None = None
                 ) -> tuple[SplitModel, PackageManifest]:
    """The package in ``folder`` as a servable model (``perception.model`` contract) on the CPU.

    The model file must match the manifest's sha256. Pre/post-processing is rebuilt from the
    manifest's spec (``build_from_spec``; its random core weights are never run).
    ``num_threads``: the runtime's intra-op threads. Raises ``ModelLoadError`` naming the folder.
    """
    root = Path(folder)
    manifest = read_manifest(root)
    model_file = root / str(manifest.data["model"].get("file", ""))
    if not model_file.is_file():
        raise ModelLoadError(f"model package {root}: model file {model_file.name} is missing")
    digest = file_sha256(model_file)
    if digest != manifest.data["model"].get("sha256"):
        raise ModelLoadError(f"model package {root}: {model_file.name} has sha256 {digest[:12]}…, "
                             f"the manifest says {str(manifest.data['model'].get('sha256'))[:12]}…; "
                             "the file was changed after export")
    try:
        skeleton = build_from_spec(manifest.spec)
        if not isinstance(skeleton, FCOS):
            raise ValueError(f"arch {manifest.spec.arch!r} cannot be served from a package (FCOS only)")
        runtime = OrtRuntime(model_file, num_threads=num_threads)
        model = SplitModel(skeleton, runtime)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"model package {root}: {exc}") from exc
    return model, manifest
