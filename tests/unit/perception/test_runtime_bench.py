"""`roadstream bench perception --compare`: what it counts and where its accuracy comes from.

Speed itself is never asserted: a stepping clock makes every timed call last 10 ms, so the
arithmetic around the timings is checked, not the machine.
"""

from __future__ import annotations

from itertools import count
from pathlib import Path

import cv2
import pytest

from perception.eval_run import DEFAULT_WEIGHTS
from perception.packages import read_manifest
from perception.runtime_bench import compare_models
from tests.unit.perception.conftest import FIXTURE


def test_compare_counts_the_cores_flops_and_reads_accuracy_from_the_manifest(fp32_package: Path) -> None:
    paths = sorted((FIXTURE / "test").glob("*.jpg"))[:2]
    frames = [f for p in paths if (f := cv2.imread(str(p))) is not None]
    assert len(frames) == 2
    ticks = count()
    rows = compare_models([DEFAULT_WEIGHTS, fp32_package], frames, threads=1, rounds=2, runs=2,
                          clock=lambda: 0.01 * next(ticks))
    torch_row, ort_row = rows
    assert (torch_row["runtime"], ort_row["runtime"]) == ("torch", "onnxruntime")
    for row in rows:
        assert row["fps"] == pytest.approx(100.0)  # each call: one 10 ms tick of the clock
        assert row["gflop_per_frame"] == pytest.approx(3.0, abs=0.01)  # the 3.0 GFLOP
        assert row["achieved_gflops"] == pytest.approx(100 * row["gflop_per_frame"], abs=0.1)
        assert len(row["fps_rounds"]) == 2
    assert ort_row["speedup_vs_first"] == 1.0
    evaluation = read_manifest(fp32_package).data["evaluation"]
    assert ort_row["accuracy"]["map50"] == evaluation["map50"]
    assert ort_row["accuracy"]["night"] == evaluation["per_condition"]["night"]
    # The checkpoint's own figures on the same split, as the package recorded them.
    assert torch_row["accuracy"]["map50"] == evaluation["source"]["map50"]


def test_compare_takes_an_openvino_package_as_it_is(ov_fp32_package: Path) -> None:
    frame = cv2.imread(str(sorted((FIXTURE / "test").glob("*.jpg"))[0]))
    assert frame is not None
    frames = [frame]
    ticks = count()
    (row,) = compare_models([ov_fp32_package], frames, threads=1, rounds=1, runs=2,
                            clock=lambda: 0.01 * next(ticks))
    assert (row["runtime"], row["precision"]) == ("openvino", "fp32")
    assert row["model_version"].endswith("-openvino-fp32")
    assert row["gflop_per_frame"] == pytest.approx(3.0, abs=0.01)
    assert row["accuracy"]["map50"] == read_manifest(ov_fp32_package).data["evaluation"]["map50"]


def test_compare_needs_models_and_frames() -> None:
    with pytest.raises(ValueError, match="at least one model and one frame"):
        compare_models([], [])
