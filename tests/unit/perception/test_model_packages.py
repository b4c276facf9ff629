"""`roadstream export`: a self-contained package whose manifest tells the truth about it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from perception.architectures import DetectorSpec
from perception.checkpoint import load_checkpoint, load_detector, save_checkpoint
from perception.classes import ModelLoadError
from perception.eval_run import DEFAULT_WEIGHTS, evaluate_weights
from perception.export import export_package
from perception.model import build_from_spec
from perception.packages import file_sha256, read_manifest
from services.cli.main import main
from tests.unit.perception.conftest import FIXTURE, TEST_CALIB_FRAMES


def test_fp32_manifest_records_source_format_input_and_classes(fp32_package: Path) -> None:
    assert sorted(p.name for p in fp32_package.iterdir()) == ["manifest.json", "model.onnx"]
    m = read_manifest(fp32_package).data
    ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    assert m["model_version"] == f"{ckpt.model_version}-onnx-fp32"
    assert m["source"] == {"checkpoint": DEFAULT_WEIGHTS.name, "sha256": file_sha256(DEFAULT_WEIGHTS),
                           "model_version": ckpt.model_version}
    assert (m["model"]["format"], m["model"]["precision"]) == ("onnx", "fp32")
    assert m["model"]["sha256"] == file_sha256(fp32_package / "model.onnx")
    assert m["input_size"] == list(ckpt.spec.image_size) == [352, 640]
    assert m["class_names"] == list(ckpt.class_names)
    assert m["operating_point"] == ckpt.metadata["operating_point"]
    assert m["calibration"] is None


def test_int8_manifest_names_its_calibration_frames(int8_package: Path) -> None:
    m = read_manifest(int8_package).data
    assert m["model"]["precision"] == "int8"
    assert m["model_version"].endswith("-onnx-int8")
    cal = m["calibration"]
    assert cal["split"] == "val"
    assert cal["frames"] == TEST_CALIB_FRAMES
    assert len(cal["frame_list"]) == TEST_CALIB_FRAMES
    assert all(f["seed"] >= 1_000_000 for f in cal["frame_list"])  # validation seeds, never test
    assert sum(cal["conditions"].values()) == TEST_CALIB_FRAMES
    assert m["evaluation"] is None


def test_round_trip_eval_of_the_package_gives_the_manifests_figures(
        fp32_package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorded = read_manifest(fp32_package).data["evaluation"]
    assert recorded["data"] == str(FIXTURE)
    assert recorded["num_images"] == 40
    assert main(["eval", "--model", str(fp32_package), "--data", str(FIXTURE), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"]["format"] == "onnx"
    assert result["model"]["model_version"].endswith("-onnx-fp32")
    for key in ("map50", "map50_95", "per_class", "per_condition", "num_predictions"):
        assert result[key] == recorded[key], key
    # fp32 in another runtime: the checkpoint's accuracy on the same split.
    assert abs(recorded["map50"] - recorded["source"]["map50"]) <= 0.005


def test_a_package_serves_where_weights_do(fp32_package: Path) -> None:
    detector = load_detector(fp32_package, device="auto", num_threads=1)
    manifest = read_manifest(fp32_package)
    assert detector.model_version == manifest.model_version
    assert detector.operating_score == manifest.operating_score
    assert str(detector.device) == "cpu"


def test_a_changed_model_file_is_refused(fp32_package: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(fp32_package, copy)
    with (copy / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelLoadError, match=r"model\.onnx has sha256 .* the file was changed"):
        load_detector(copy, device="cpu")


def test_a_folder_without_manifest_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no manifest\.json"):
        evaluate_weights(tmp_path, FIXTURE)


def test_a_package_names_what_it_needs_for_cuda_and_refuses_foreign_options(
        fp32_package: Path, ov_fp32_package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    # The CPU wheel of ONNX Runtime, whatever this machine has: a GPU needs onnxruntime-gpu.
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelLoadError, match=r"model package .*: ONNX model .*no CUDA or TensorRT execution "
                                             r"provider: install onnxruntime-gpu"):
        load_detector(fp32_package, device="cuda")
    with pytest.raises(ModelLoadError, match="served on the CPU only, not cuda"):
        load_detector(ov_fp32_package, device="cuda")
    assert load_detector(fp32_package, device="auto").device.type == "cpu"  # auto: the CPU
    with pytest.raises(ModelLoadError, match="builder and class_map apply to plain weight files"):
        load_detector(fp32_package, builder="fcos_dense")


def test_export_refuses_an_existing_folder_and_a_non_fcos_model(tmp_path: Path) -> None:
    with pytest.raises(FileExistsError, match="choose a new folder"):
        export_package(DEFAULT_WEIGHTS, tmp_path, evaluate=False)
    spec = DetectorSpec(arch="ssdlite", image_size=(96, 160))
    ssd = save_checkpoint(tmp_path / "ssd.pt", build_from_spec(spec), spec, model_version="ssd")
    with pytest.raises(ValueError, match="'ssdlite' detector; packages hold FCOS"):
        export_package(ssd, tmp_path / "pkg", evaluate=False)
    assert not (tmp_path / "pkg").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ssd.pt"]  # no half-written folder left


def test_cli_export_rejects_calibration_options_without_int8(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--out", str(tmp_path / "p"), "--calib-frames", "8"]) == 1
    assert "--calib-frames and --calib-data apply to --int8 only" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_openvino_manifest_hashes_both_files_as_documented(ov_fp32_package: Path,
                                                           fp32_package: Path) -> None:
    names = sorted(p.name for p in ov_fp32_package.iterdir())
    assert names == ["manifest.json", "model.bin", "model.xml"]
    m = read_manifest(ov_fp32_package).data
    assert m["model_version"].endswith("-openvino-fp32")
    assert m["source"] == read_manifest(fp32_package).data["source"]
    model = m["model"]
    assert (model["format"], model["precision"], model["file"]) == ("openvino", "fp32", "model.xml")
    assert model["runtime"].startswith("openvino 2")
    assert model["converted_from"] == "onnx"
    digests = {n: file_sha256(ov_fp32_package / n) for n in ("model.xml", "model.bin")}
    assert model["files"] == digests
    # The documented rule: `sha256sum model.bin model.xml | sha256sum`.
    listing = f"{digests['model.bin']}  model.bin\n{digests['model.xml']}  model.xml\n"
    assert model["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert model["bytes"] == sum((ov_fp32_package / n).stat().st_size for n in digests)


def test_both_int8_formats_calibrate_on_the_same_frames_with_their_own_quantiser(
        ov_int8_package: Path, int8_package: Path) -> None:
    ov = read_manifest(ov_int8_package).data
    ort = read_manifest(int8_package).data
    assert ov["model_version"].endswith("-openvino-int8")
    assert ov["calibration"]["frame_list"] == ort["calibration"]["frame_list"]
    assert len(ov["calibration"]["frame_list"]) == TEST_CALIB_FRAMES
    assert ov["calibration"]["quantiser"].startswith("nncf ")
    assert ort["calibration"]["quantiser"].startswith("onnxruntime.quantization ")
    assert ov["calibration"]["why"].startswith("OpenVINO's own quantiser")
    assert ort["calibration"]["why"].startswith("the runtime's own quantiser")


def test_round_trip_eval_of_the_openvino_package_gives_the_manifests_figures(
        ov_fp32_package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorded = read_manifest(ov_fp32_package).data["evaluation"]
    assert (recorded["data"], recorded["num_images"]) == (str(FIXTURE), 40)
    capsys.readouterr()
    assert main(["eval", "--model", str(ov_fp32_package), "--data", str(FIXTURE), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["model"]["format"], result["model"]["precision"]) == ("openvino", "fp32")
    for key in ("map50", "map50_95", "per_class", "per_condition", "num_predictions"):
        assert result[key] == recorded[key], key
    assert abs(recorded["map50"] - recorded["source"]["map50"]) <= 0.005


@pytest.mark.parametrize("name", ["model.bin", "model.xml"])
def test_a_changed_openvino_file_is_refused_by_name(ov_fp32_package: Path, tmp_path: Path,
                                                    name: str) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(ov_fp32_package, copy)
    with (copy / name).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelLoadError, match=rf"{re.escape(name)} has sha256 .* the file was changed"):
        load_detector(copy, device="cpu")
    (copy / name).unlink()
    with pytest.raises(ModelLoadError, match=rf"model file {re.escape(name)} is missing"):
        load_detector(copy, device="cpu")


def test_a_manifest_whose_digest_is_not_its_files_is_refused(ov_fp32_package: Path,
                                                             tmp_path: Path) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(ov_fp32_package, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["model"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match=r"model\.sha256 is not the digest of model\.files"):
        load_detector(copy, device="cpu")


def test_export_refuses_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format 'tflite' cannot be exported; known: onnx, openvino"):
        export_package(DEFAULT_WEIGHTS, tmp_path / "pkg", fmt="tflite", evaluate=False)
