"""`roadstream dataset`, `train` and `eval` end to end on a tiny rendered dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli.main import main


def test_dataset_train_eval_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "coco"
    assert main(["dataset", "--out", str(data), "--images", "8", "--val", "4", "--test", "4",
                 "--size", "160x90", "--frames-per-scene", "4", "--workers", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {k: v["images"] for k, v in summary["splits"].items()} == {"train": 8, "val": 4,
                                                                      "test": 4}
    config = tmp_path / "train.yaml"
    config.write_text(
        f"data_dir: {data}\nout_dir: {tmp_path / 'run'}\nimage_size: [64, 112]\nsteps: 2\n"
        "batch_size: 2\nwarmup_steps: 1\nlog_every: 1\nval_every: 2\ndevice: cpu\n")
    assert main(["train", "--config", str(config), "--set", "num_threads=1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 2
    assert Path(result["final"]).is_file()
    out = tmp_path / "eval.json"
    assert main(["eval", "--weights", result["final"], "--data", str(data), "--json",
                 "--out", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= {"map50", "map50_95", "per_class", "per_condition"}
    assert set(metrics["per_condition"]) == {"day", "dusk", "night", "rain", "fog"}
    assert metrics["num_images"] == 4
    assert json.loads(out.read_text())["map50"] == metrics["map50"]


def test_bad_inputs_fail_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "--out", str(tmp_path), "--size", "big"]) == 1
    assert "WxH" in capsys.readouterr().err
    assert main(["eval", "--weights", str(tmp_path / "missing.pt"), "--data", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    assert main(["train", "--config", str(bad)]) == 1
    assert "bad training config" in capsys.readouterr().err
