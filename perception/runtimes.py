"""One detector interface, several runtimes: the core runs in torch, ONNX Runtime or OpenVINO.

An FCOS detector splits into three parts:

1. pre-processing: the model's own ``GeneralizedRCNNTransform`` (normalise, resize to the fixed
   input size, batch) — torch, on the host;
2. the convolutional core (``FcosCore``: backbone + FPN + head), the only part that runs in a
   runtime: ``Runtime.run(images [N, 3, H, W] float, normalised)`` →
   ``(cls_logits [N, A, C], bbox_regression [N, A, 4], bbox_ctrness [N, A, 1])``, A = the
   locations of every FPN level, level after level, row-major;
3. post-processing: the model's own anchors, FCOS box decode, top-k, class-wise NMS and the
   mapping back to input pixels (``FCOS.postprocess_detections``, ``transform.postprocess``).

``SplitModel`` runs 1 and 3 with the torch model's own code around any runtime, so every
runtime shares one pre/post-processing path; with ``TorchRuntime`` its results are the
unsplit model's, bit for bit (tests/unit/perception/test_runtime_parity.py). It keeps the
torchvision contract of ``perception.model`` (list of ``[3, H, W]`` RGB [0, 1] tensors → dicts
of ``boxes`` xyxy px, ``labels``, ``scores``), so ``Detector`` and the evaluation take it as
they take the model itself.
"""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS

HEAD_OUTPUTS: tuple[str, ...] = ("cls_logits", "bbox_regression", "bbox_ctrness")
INPUT_NAME = "images"
HeadOutputs = tuple[Tensor, Tensor, Tensor]


class Runtime(Protocol):
    """Runs the convolutional core of an FCOS detector (see the module docstring)."""

    name: str  # "torch", "onnxruntime", "openvino"

    def run(self, images: Tensor) -> HeadOutputs:
        """Head outputs for a normalised ``[N, 3, H, W]`` float batch."""
        ...


class FcosCore(nn.Module):
    """Backbone + head of an FCOS model (sharing its modules): what a package exports.

    ``forward(images [N, 3, H, W])`` → ``(cls_logits [N, A, C], bbox_regression [N, A, 4],
    bbox_ctrness [N, A, 1])``; the input is already normalised and resized.
    """

    def __init__(self, model: FCOS) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head

    def forward(self, images: Tensor) -> HeadOutputs:
        """Head outputs, as ``FCOS.forward`` computes them before decoding."""
        features = list(self.backbone(images).values())
        out = self.head(features)
        return out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"]


class TorchRuntime(nn.Module):
    """The core in torch eager (a module, so ``.to(device)`` and channels-last reach it)."""

    name = "torch"

    def __init__(self, core: FcosCore) -> None:
        super().__init__()
        self.core = core

    def run(self, images: Tensor) -> HeadOutputs:
        """Head outputs on ``images``' device (fp16 under the caller's autocast)."""
        out: HeadOutputs = self.core(images)
        return out


GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def ort_providers(device: str | torch.device, available: list[str], *,
                  cache_dir: Path | None = None) -> list[str | tuple[str, dict[str, object]]]:
    """ONNX Runtime execution providers for ``device``, best first, with their options.

    ``cpu``: the CPU provider alone. ``cuda[:N]``: TensorRT in fp16 (an int8 QDQ graph stays
    int8; engines cached in ``cache_dir`` when given) where that provider is available, then
    CUDA (the graph's own precision), with the CPU provider last for any node neither takes.
    Raises ``ValueError`` when this ONNX Runtime has no GPU provider (the ``onnxruntime``
    wheel is CPU-only; ``onnxruntime-gpu`` replaces it on a machine with a GPU).
    """
    dev = torch.device(device)
    if dev.type == "cpu":
        return ["CPUExecutionProvider"]
    if dev.type != "cuda":
        raise ValueError(f"ONNX Runtime serves on cpu or cuda, not {device}")
    index = dev.index or 0
    chosen: list[str | tuple[str, dict[str, object]]] = []
    if "TensorrtExecutionProvider" in available:
        trt: dict[str, object] = {"device_id": index, "trt_fp16_enable": True}
        if cache_dir is not None:
            trt |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}
        chosen.append(("TensorrtExecutionProvider", trt))
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"device_id": index}))
    if not chosen:
        raise ValueError(f"this ONNX Runtime offers {available}, no CUDA or TensorRT execution "
                         "provider: install onnxruntime-gpu in place of onnxruntime to serve "
                         f"a package on {device}")
    return [*chosen, "CPUExecutionProvider"]


def engine_cache_dir(model_file: str | Path) -> Path:
    """Where TensorRT keeps the engines it builds for ``model_file``: building one takes
    minutes, so each machine builds it once. ``$XDG_CACHE_HOME`` (default ``~/.cache``)
    ``/roadstream/tensorrt/<the file's sha256, 16 digits>``: a changed model gets its own."""
    from perception.packages import file_sha256  # packages imports this module

    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(home) / "roadstream" / "tensorrt" / file_sha256(Path(model_file))[:16]


class OrtRuntime:
    """The core in ONNX Runtime (fp32 or a QDQ int8 graph), on the CPU or a CUDA GPU.

    ``num_threads`` sets the session's intra-op threads (``None``: ONNX Runtime's default, every
    core); inter-op parallelism is off (one graph, sequential). ``device`` ``cuda[:N]`` runs it
    on the GPU providers of ``ort_providers`` (TensorRT fp16, its engines cached in
    ``cache_dir``, default ``engine_cache_dir``; else CUDA); the head outputs
    still come back to the host, where the shared post-processing runs. Raises ``ValueError``
    naming the file when it is not a model of the core's contract, or when the GPU providers
    asked for are missing or were not taken (ONNX Runtime falls back to the CPU silently when
    the CUDA libraries cannot be loaded).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, num_threads: int | None = None,
                 device: str | torch.device = "cpu", cache_dir: Path | None = None) -> None:
        import onnxruntime as ort  # a package dependency, imported when a package is opened

        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        available = ort.get_available_providers()
        if torch.device(device).type == "cuda" and "TensorrtExecutionProvider" in available:
            cache_dir = cache_dir or engine_cache_dir(path)
            cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            providers = ort_providers(device, available, cache_dir=cache_dir)
        except ValueError as exc:
            raise ValueError(f"ONNX model {path}: {exc}") from exc
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ONNX Runtime raises its own exception types for a bad file
            raise ValueError(f"ONNX model {path} cannot be opened: {exc}") from exc
        self.providers: list[str] = list(self.session.get_providers())
        if torch.device(device).type == "cuda" and not set(self.providers) & set(GPU_PROVIDERS):
            raise ValueError(f"ONNX model {path}: ONNX Runtime took none of the GPU providers "
                             f"asked for (it runs on {self.providers}); are the CUDA libraries "
                             "of onnxruntime-gpu installed?")
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or tuple(outputs) != HEAD_OUTPUTS:
            raise ValueError(f"ONNX model {path} has inputs {inputs} and outputs {outputs}; "
                             f"expected [{INPUT_NAME!r}] and {list(HEAD_OUTPUTS)}")

    def run(self, images: Tensor) -> HeadOutputs:
        """Head outputs as CPU float32 tensors."""
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        cls_logits, regression, ctrness = self.session.run(list(HEAD_OUTPUTS), {INPUT_NAME: array})
        return torch.from_numpy(cls_logits), torch.from_numpy(regression), torch.from_numpy(ctrness)


class OvRuntime:
    """The core in OpenVINO on the CPU (an fp32 IR, or an int8 IR quantised by NNCF).

    ``path``: the IR's ``.xml`` (its weights, the ``.bin`` of the same stem, are read from beside
    it). Compiled for the ``CPU`` device with the latency hint (one stream: a call uses every
    thread it is given) and ``num_threads`` as ``INFERENCE_NUM_THREADS`` (``None``: OpenVINO's
    default, every core). The inference precision is pinned to f32: on CPUs with bf16 or AMX
    units OpenVINO would otherwise run an fp32 IR in bf16, and a package's precision is its
    manifest's, not the host's (an int8 IR still runs its quantised layers in int8).
    One infer request, serialised by a lock: a call at a time, like a single-stream latency
    configuration. Raises ``ValueError`` naming the file when it is missing, unreadable or not a
    model of the core's contract.
    """

    name = "openvino"

    def __init__(self, path: str | Path, *, num_threads: int | None = None,
                 device: str | torch.device = "cpu") -> None:
        import openvino as ov  # a package dependency, imported when a package is opened

        if torch.device(device).type != "cpu":
            raise ValueError(f"OpenVINO model {path} is served on the CPU only, not {device} "
                             "(export --format onnx for ONNX Runtime's GPU providers)")
        self.path = Path(path)
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError (or its own types) for a bad file
            raise ValueError(f"OpenVINO model {path} cannot be opened: {exc}") from exc
        inputs = [sorted(i.get_names()) for i in model.inputs]
        outputs = [sorted(o.get_names()) for o in model.outputs]
        named = {name for names in outputs for name in names}
        if inputs != [[INPUT_NAME]] or len(outputs) != len(HEAD_OUTPUTS) or not named >= set(HEAD_OUTPUTS):
            raise ValueError(f"OpenVINO model {path} has inputs {inputs} and outputs {outputs}; "
                             f"expected [{INPUT_NAME!r}] and {list(HEAD_OUTPUTS)}")
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ValueError(f"OpenVINO model {path} cannot be compiled for the CPU: {exc}") from exc
        self._outputs = [self.compiled.output(name) for name in HEAD_OUTPUTS]
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def run(self, images: Tensor) -> HeadOutputs:
        """Head outputs as CPU float32 tensors (copies: the request reuses its output buffers)."""
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        with self._lock:
            result = self._request.infer({INPUT_NAME: array})
            cls_logits, regression, ctrness = (torch.from_numpy(np.array(result[o], copy=True))
                                               for o in self._outputs)
        return cls_logits, regression, ctrness


class SplitModel(nn.Module):
    """An FCOS detector whose core runs in ``runtime``, pre/post-processing in torch.

    ``model`` provides the transform, anchors and post-processing (its score floor, NMS
    threshold, top-k and detections per image); with an ONNX Runtime or OpenVINO runtime its
    backbone and head are never run. Contract: ``perception.model``'s, eval mode only.
    """

    def __init__(self, model: FCOS, runtime: Runtime) -> None:
        super().__init__()
        self.model = model
        self.runtime = runtime
        self._level_hw: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.eval()

    @classmethod
    def torch(cls, model: FCOS) -> SplitModel:
        """``model`` itself, split: its core runs in torch eager."""
        return cls(model, TorchRuntime(FcosCore(model)))

    def level_sizes(self, input_hw: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of each FPN level for a batched input of ``input_hw`` [px].

        Found once per size by running a copy of the backbone on the meta device (shapes only,
        no arithmetic), so it holds for any backbone.
        """
        if input_hw not in self._level_hw:
            backbone = copy.deepcopy(self.model.backbone).to("meta")
            with torch.no_grad():
                features = backbone(torch.empty(1, 3, *input_hw, device="meta"))
            self._level_hw[input_hw] = [(int(f.shape[-2]), int(f.shape[-1]))
                                        for f in features.values()]
        return self._level_hw[input_hw]

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections per image, as ``FCOS.forward`` in eval mode returns them."""
        if self.training:
            raise RuntimeError("SplitModel serves only; train the FCOS model itself")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, _ = self.model.transform(images)
        outputs = self.runtime.run(image_list.tensors)
        h, w = image_list.tensors.shape[-2:]
        levels = self.level_sizes((int(h), int(w)))
        per_level = [lh * lw for lh, lw in levels]
        if sum(per_level) != outputs[0].shape[1]:
            raise ValueError(f"the runtime returned {outputs[0].shape[1]} locations; the FPN levels "
                             f"{levels} of a {int(h)}x{int(w)} input have {sum(per_level)}")
        # Anchors depend on the level shapes, dtype and device only (AnchorGenerator.forward).
        shapes = [torch.empty((0, 0, lh, lw), dtype=outputs[0].dtype, device=outputs[0].device)
                  for lh, lw in levels]
        anchors = self.model.anchor_generator(image_list, shapes)
        split_outputs = {k: list(v.split(per_level, dim=1))
                         for k, v in zip(HEAD_OUTPUTS, outputs, strict=True)}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        detections = self.model.postprocess_detections(split_outputs, split_anchors,
                                                       image_list.image_sizes)
        result: list[dict[str, Tensor]] = self.model.transform.postprocess(
            detections, image_list.image_sizes, original_sizes)
        return result


def serving_model(model: nn.Module) -> nn.Module:
    """An FCOS model split around ``TorchRuntime`` (the shared path); any other model as it is."""
    return SplitModel.torch(model) if isinstance(model, FCOS) else model
