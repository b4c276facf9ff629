"""Every runtime gives torch eager's detections on the held-out fixture frames.

Bounds:
- torch through the shared pre/post-processing (``SplitModel``): the unsplit model's output,
  bit for bit — the closed loop serves checkpoints this way, so nothing it does may change.
- ONNX Runtime fp32: every detection at or above the serving floor has a partner of the same
  class at IoU ≥ 0.95 with a score within 0.02, both ways (the issue's bound; measured: IoU
  above 0.99999, scores within 1e-6).
- ONNX Runtime int8: at least 90 % of torch's detections at or above the operating score (the
  objects the tracker confirms) have an int8 partner of the same class at IoU ≥ 0.8 with a
  score within 0.1, and as many the other way. 256 activation levels move a box edge by a pixel
  or two (IoU 0.85–0.95 on boxes 20 px wide) and a score by a few hundredths, and a box near
  the operating score can cross it either way; what the quantisation costs in accuracy is
  judged by the mAP in the package's manifest (docs/benchmarks.md), and this bound catches a
  broken one. Measured on these frames (51 detections at the operating score): with 32 or more
  calibration frames all match; with 16, 98 %; with 8, whose min/max miss part of the
  activations' range, 82 % (scores up to 0.2 off).
- OpenVINO fp32 (the same ONNX graph as IR): the ONNX Runtime fp32 bound (measured: IoU above
  0.99999, scores within 1e-6).
- OpenVINO int8 (NNCF, on the same 32 calibration frames): the ONNX Runtime int8 bound
  (measured: all 51 of torch's detections at the operating score matched, and all 53 of its
  own; at the fp32 bound, 78 %).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from perception.checkpoint import load_detector
from perception.detections import Detections
from perception.eval_run import DEFAULT_INT8_PACKAGE, DEFAULT_WEIGHTS, load_model
from perception.packages import file_sha256
from perception.runtimes import (
    GPU_PROVIDERS,
    OrtRuntime,
    OvRuntime,
    Runtime,
    SplitModel,
    TorchRuntime,
    engine_cache_dir,
    ort_providers,
)
from perception.tracking import iou_matrix
from tests.unit.perception.conftest import FIXTURE

FRAMES = sorted((FIXTURE / "test").glob("*.jpg"))
POOL_FLOOR = 0.05  # the models' own floor: every candidate partner


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    read = [image for p in FRAMES if (image := cv2.imread(str(p))) is not None]
    assert len(read) == 40
    return read


def detect_all(path: Path, frames: list[np.ndarray], device: str = "cpu") -> list[Detections]:
    detector = load_detector(path, device=device, score_thresh=POOL_FLOOR, num_threads=2)
    return [detector.detect([f])[0] for f in frames]


@pytest.fixture(scope="module")
def torch_dets(frames: list[np.ndarray]) -> list[Detections]:
    return detect_all(DEFAULT_WEIGHTS, frames)


def match_rate(ref: list[Detections], other: list[Detections], *, floor: float, iou_min: float,
               score_tol: float) -> tuple[float, int]:
    """Share of ``ref``'s detections ≥ ``floor`` with a partner in ``other`` (any score ≥ the
    pool floor): same class, IoU ≥ ``iou_min``, |score difference| ≤ ``score_tol``."""
    found = total = 0
    for a, b in zip(ref, other, strict=True):
        keep = a.scores >= floor
        total += int(keep.sum())
        if not keep.any() or len(b) == 0:
            continue
        iou = iou_matrix(a.boxes[keep], b.boxes)
        ok = ((iou >= iou_min) & (a.class_ids[keep][:, None] == b.class_ids[None, :])
              & (np.abs(a.scores[keep][:, None] - b.scores[None, :]) <= score_tol))
        found += int(ok.any(axis=1).sum())
    return (found / total if total else 0.0), total


def test_the_shared_path_gives_the_torch_models_output_bit_for_bit(frames: list[np.ndarray]) -> None:
    model, _ = load_model(DEFAULT_WEIGHTS, torch.device("cpu"))
    assert isinstance(model, SplitModel)
    assert isinstance(model.runtime, TorchRuntime)
    images = [torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255
              for f in frames[:8]]
    with torch.inference_mode():
        unsplit = model.model(images)  # FCOS.forward: transform, core, decode + NMS in one
        split = model(images)
    assert sum(len(o["boxes"]) for o in unsplit) > 0
    for u, s in zip(unsplit, split, strict=True):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(u[key], s[key]), key


def test_checkpoints_serve_through_the_shared_path() -> None:
    detector = load_detector(DEFAULT_WEIGHTS, device="cpu")
    assert isinstance(detector.model, SplitModel)
    assert isinstance(detector.model.runtime, TorchRuntime)


def assert_fp32_parity(package: Path, runtime: type[Runtime], frames: list[np.ndarray],
                       torch_dets: list[Detections], device: str = "cpu") -> None:
    """The fp32 bound of the module docstring, for ``package`` served by ``runtime``."""
    detector = load_detector(package, device=device)
    assert isinstance(detector.model, SplitModel)
    assert isinstance(detector.model.runtime, runtime)
    floor = detector.score_thresh  # what the service would report
    ort_dets = detect_all(package, frames, device)
    forward, n_torch = match_rate(torch_dets, ort_dets, floor=floor, iou_min=0.95, score_tol=0.02)
    backward, n_ort = match_rate(ort_dets, torch_dets, floor=floor, iou_min=0.95, score_tol=0.02)
    assert n_torch > 100, "too few detections to compare"
    assert (forward, backward) == (1.0, 1.0)
    assert abs(n_torch - n_ort) <= 2  # only scores on the floor itself may fall either side


def test_onnx_fp32_package_matches_torch_eager(fp32_package: Path, frames: list[np.ndarray],
                                               torch_dets: list[Detections]) -> None:
    assert_fp32_parity(fp32_package, OrtRuntime, frames, torch_dets)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_onnx_package_on_the_gpu_matches_torch_eager(fp32_package: Path, frames: list[np.ndarray],
                                                     torch_dets: list[Detections]) -> None:
    """ONNX Runtime's TensorRT (fp16) or CUDA provider, held to the issue's bound.

    Fails, not skips, where a GPU exists but this ONNX Runtime has no GPU provider: the gap is
    then the environment's (onnxruntime-gpu), and a skip would hide it.
    """
    runtime = load_detector(fp32_package, device="cuda").model.runtime
    assert isinstance(runtime, OrtRuntime)
    assert set(runtime.providers) & set(GPU_PROVIDERS), runtime.providers
    assert_fp32_parity(fp32_package, OrtRuntime, frames, torch_dets, device="cuda")


def test_openvino_fp32_package_matches_torch_eager(ov_fp32_package: Path, frames: list[np.ndarray],
                                                   torch_dets: list[Detections]) -> None:
    assert_fp32_parity(ov_fp32_package, OvRuntime, frames, torch_dets)


def assert_int8_bound(package: Path, runtime: type[Runtime], frames: list[np.ndarray],
                      torch_dets: list[Detections]) -> None:
    """The int8 bound of the module docstring, for ``package`` served by ``runtime``."""
    detector = load_detector(package, device="cpu")
    assert isinstance(detector.model, SplitModel)
    assert isinstance(detector.model.runtime, runtime)
    assert detector.operating_score is not None
    floor = detector.operating_score
    int8_dets = detect_all(package, frames)
    recall, n_torch = match_rate(torch_dets, int8_dets, floor=floor, iou_min=0.8, score_tol=0.1)
    precision, _ = match_rate(int8_dets, torch_dets, floor=floor, iou_min=0.8, score_tol=0.1)
    assert n_torch >= 40, "too few detections to compare"
    assert recall >= 0.9
    assert precision >= 0.9


def test_int8_package_stays_within_its_stated_bound(int8_package: Path, frames: list[np.ndarray],
                                                    torch_dets: list[Detections]) -> None:
    assert_int8_bound(int8_package, OrtRuntime, frames, torch_dets)


def test_the_shipped_int8_package_stays_within_the_same_bound(
        frames: list[np.ndarray], torch_dets: list[Detections]) -> None:
    """The package `roadstream run --clock realtime` serves on a CPU (MODEL_CARD.md)."""
    assert_int8_bound(DEFAULT_INT8_PACKAGE, OrtRuntime, frames, torch_dets)


def test_openvino_int8_package_stays_within_the_same_bound(
        ov_int8_package: Path, frames: list[np.ndarray], torch_dets: list[Detections]) -> None:
    assert_int8_bound(ov_int8_package, OvRuntime, frames, torch_dets)


def test_int8_package_really_holds_an_int8_graph(int8_package: Path, fp32_package: Path) -> None:
    graph = onnx.load(str(int8_package / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 30  # every conv's weights (37 convs)
    assert (int8_package / "model.onnx").stat().st_size < 0.5 * (fp32_package / "model.onnx").stat().st_size


def test_ort_providers_for_each_device() -> None:
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers("cpu", gpu) == ["CPUExecutionProvider"]
    assert ort_providers("cuda:1", gpu, cache_dir=Path("engines")) == [
        ("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": True,
                                       "trt_engine_cache_enable": True,
                                       "trt_engine_cache_path": "engines"}),
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert ort_providers("cuda", gpu[1:]) == [("CUDAExecutionProvider", {"device_id": 0}),
                                              "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="no CUDA or TensorRT execution provider: install "
                                         "onnxruntime-gpu in place of onnxruntime"):
        ort_providers("cuda", cpu_only)
    with pytest.raises(ValueError, match="cpu or cuda, not mps"):
        ort_providers("mps", gpu)


def test_tensorrt_engines_are_cached_per_model_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Built once per machine and model: under the user's cache, keyed by the file's digest."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"graph a")
    b.write_bytes(b"graph b")
    assert engine_cache_dir(a) == tmp_path / "cache" / "roadstream" / "tensorrt" / file_sha256(
        a)[:16]
    assert engine_cache_dir(b) != engine_cache_dir(a)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert engine_cache_dir(a).parent == Path.home() / ".cache" / "roadstream" / "tensorrt"


def test_ort_runtime_refuses_a_graph_of_another_contract(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ValueError, match=r"other\.onnx has inputs \['x'\]"):
        OrtRuntime(path)


def conv_weight_types(xml: Path) -> list[str]:
    """Element type of the constant each ``Convolution``'s weights come from (through the
    Convert/Subtract/Multiply of a dequantisation, if any)."""
    import openvino as ov

    def source(node: ov.Node) -> str:
        while node.get_type_name() != "Constant":
            node = node.input(0).get_source_output().get_node()
        return node.get_output_element_type(0).get_type_name()

    model = ov.Core().read_model(str(xml))
    return [source(op.input(1).get_source_output().get_node())
            for op in model.get_ops() if op.get_type_name() == "Convolution"]


def test_openvino_int8_package_really_holds_int8_weights(ov_int8_package: Path,
                                                         ov_fp32_package: Path) -> None:
    import openvino as ov

    assert conv_weight_types(ov_fp32_package / "model.xml") == ["f32"] * 37
    assert conv_weight_types(ov_int8_package / "model.xml") == ["i8"] * 37  # every conv
    model = ov.Core().read_model(str(ov_int8_package / "model.xml"))
    assert "FakeQuantize" in {op.get_type_name() for op in model.get_ops()}  # activations too
    size = {p: (p / "model.bin").stat().st_size for p in (ov_int8_package, ov_fp32_package)}
    assert size[ov_int8_package] < 0.5 * size[ov_fp32_package]


def test_ov_runtime_refuses_a_file_that_is_no_model(tmp_path: Path) -> None:
    path = tmp_path / "model.xml"
    path.write_text("<net>not an IR</net>")
    with pytest.raises(ValueError, match=r"OpenVINO model .*model\.xml cannot be opened"):
        OvRuntime(path)
    with pytest.raises(ValueError, match=r"OpenVINO model .*absent\.xml cannot be opened"):
        OvRuntime(tmp_path / "absent.xml")


def test_ov_runtime_refuses_a_graph_of_another_contract(tmp_path: Path) -> None:
    import openvino as ov

    x = ov.opset13.parameter([1], ov.Type.f32, name="x")
    x.output(0).set_names({"x"})
    relu = ov.opset13.relu(x)
    relu.output(0).set_names({"y"})
    path = tmp_path / "other.xml"
    ov.save_model(ov.Model([relu], [x], "other"), str(path))
    with pytest.raises(ValueError, match=r"other\.xml has inputs \[\['x'\]\]"):
        OvRuntime(path)
