"""Drift → retraining request → fine-tuning → a registered candidate, on real files.

The recording is written with the recorder's own writer from frames the simulator renders for
two night scenarios (camera.frames, sim.ground_truth, and safety.events with the simulator's
run_finished and the monitor's detection_drift as `DriftCheck` raises it). The fine-tuning is
the real trainer for two steps from the shipped weights; the candidate lands in a real registry.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import torch

from perception.architectures import DetectorSpec, build_from_spec
from perception.checkpoint import load_checkpoint
from perception.dataset import build_dataset
from perception.eval_run import DEFAULT_WEIGHTS
from perception.registry import ModelRegistry
from perception.training import load_initial_weights
from services.cli.main import main
from services.messages import (
    CAMERA_FRAMES,
    SAFETY_EVENTS,
    SIM_GROUND_TRUTH,
    TOPICS,
    FrameMeta,
    FrameRef,
    GroundTruth,
    PerceptionObjects,
    SafetyEvent,
    Severity,
)
from services.messages.examples import perception_objects
from services.monitor.drift import DriftCheck, DriftReference
from services.monitor.findings import DETECTION_DRIFT, DETECTION_DRIFT_CLEARED, Observation
from services.recording.envelope import KafkaRecord
from services.recording.mcap_io import RecordingWriter
from services.retrain.recorded import _Frame, split_by_scene
from services.retrain.request import drift_episodes, find_request, request_from_events
from services.runtime.events import RUN_FINISHED, safety_event
from services.simulator import convert
from simulators.library import load_scenario
from simulators.render import encode_jpeg
from simulators.world import World

T0_NS = 1_790_000_000_000_000_000
FRAME_NS = 250_000_000  # [ns] between rendered frames
MODEL = load_checkpoint(DEFAULT_WEIGHTS).model_version


def _render(scenario: str, run_id: str, start_ns: int, frames: int) -> list[KafkaRecord]:
    """`frames` frames of the scenario's first camera, with their ground truth, + run_finished."""
    world = World.from_scenario(load_scenario(scenario), seed=1)
    cam = next(iter(world.cameras.values()))
    out: list[KafkaRecord] = []
    for seq in range(frames):
        stamp = start_ns + seq * FRAME_NS
        meta = convert.frame_meta(cam, vehicle_id="ego", seq=seq, stamp_ns=stamp, run_id=run_id)
        gt = convert.ground_truth(world.ground_truth(cam.camera_id), vehicle_id="ego", seq=seq,
                                  stamp_ns=stamp, run_id=run_id)
        out.append(KafkaRecord(CAMERA_FRAMES.name, meta.key, encode_jpeg(world.render(cam.camera_id)),
                               tuple(meta.to_headers())))
        out.append(KafkaRecord(SIM_GROUND_TRUTH.name, meta.key, gt.model_dump_json().encode()))
        for _ in range(5):
            world.step(0.05)
    end = safety_event(source="simulator", type_=RUN_FINISHED, severity=Severity.INFO,
                       vehicle_id="ego", run_id=run_id, details={"scenario": scenario})
    out.append(KafkaRecord(SAFETY_EVENTS.name, b"ego", end.model_dump_json().encode()))
    return out


def _drift_events(stamps_ns: list[int]) -> list[SafetyEvent]:
    """What the monitor raises when frames answered with no detection meet a busy reference."""
    check = DriftCheck(DriftReference(scores=[0.9] * 30, counts=[3] * 10, score_thresh=0.3),
                       window_frames=6, every_frames=6, p_value=0.01)
    base = perception_objects()
    events = []
    for i, stamp in enumerate(stamps_ns):
        objects: PerceptionObjects = base.model_copy(update={
            "objects": [], "model_version": MODEL, "source": FrameRef(seq=i, stamp_ns=stamp)})
        for finding in check.observe(Observation("perception.objects", "ego/front", "ego", stamp,
                                                 0, i, "r-0"), objects):
            events.append(safety_event(source="monitor", type_=finding.type,
                                       severity=finding.severity, vehicle_id=finding.vehicle_id,
                                       details=finding.details, refs=finding.refs,
                                       run_id=finding.run_id))
    return events


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """runs/<id>/recording.mcap: night_city (run r-0) then ccrs_30kph_night (run r-1)."""
    run_dir = tmp_path_factory.mktemp("runs") / "run-1"
    run_dir.mkdir()
    records = _render("night_city", "r-0", T0_NS, 6) + _render(
        "ccrs_30kph_night", "r-1", T0_NS + 10 * FRAME_NS, 4)
    stamps = [T0_NS + k * FRAME_NS for k in range(6)]
    events = _drift_events(stamps)
    assert [e.type for e in events] == [DETECTION_DRIFT]
    records += [KafkaRecord(SAFETY_EVENTS.name, b"ego", e.model_dump_json().encode())
                for e in events]
    path = run_dir / "recording.mcap"
    with RecordingWriter(path, TOPICS) as writer:
        for offset, r in enumerate(records):
            writer.write(KafkaRecord(r.topic, r.key, r.value, r.headers, partition=0,
                                     offset=offset, timestamp_ms=offset))
    frame_stamps = stamps + [T0_NS + (10 + k) * FRAME_NS for k in range(4)]
    return path, frame_stamps


def test_a_drift_event_becomes_a_registered_candidate_after_a_few_training_steps(
        recording: tuple[Path, list[int]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, stamps = recording
    base = tmp_path / "base"
    build_dataset(base, images={"train": 4, "val": 4, "test": 6}, frames_per_scene=2)
    registry, out = tmp_path / "registry", tmp_path / "retrain"

    assert main(["retrain", "--recording", str(path), "--base-data", str(base),
                 "--registry", str(registry), "--out", str(out), "--steps", "2",
                 "--frame-stride", "1", "--set", "batch_size=2", "--set", "val_images=4",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    # the request: the drift episode (never cleared) from its first window to the last frame
    requests = list((path.parent / "retrain-requests").glob("*.json"))
    assert len(requests) == 1
    request = json.loads(requests[0].read_text())
    assert request == report["request"]
    assert (request["start_ns"], request["end_ns"]) == (stamps[0], stamps[-1])
    assert request["model_version"] == MODEL
    assert request["recording"] == str(path.resolve())

    # the data: every frame labelled; the later scene held out, whole
    data = report["data"]
    assert data["frames_in_range"] == 10
    assert data["unlabelled_frames"] == 0
    assert data["train"]["scenarios"] == ["night_city"]
    assert data["train"]["images"] == 6
    assert data["heldout"]["scenarios"] == ["ccrs_30kph_night"]
    assert data["heldout"]["images"] == 4
    assert data["train"]["conditions"] == ["night"]
    assert data["mixed_train_images"] == 4 + 2 * 6  # base + drifted frames twice

    # the fine-tuning started from the production weights and moved them
    assert report["training"]["steps"] == 2
    assert report["candidate"]["step"] in (1, 2)  # the best validation checkpoint
    cand = load_checkpoint(report["candidate"]["weights"])
    prod = load_checkpoint(DEFAULT_WEIGHTS)
    deltas = [float((cand.state_dict[k].float() - v.float()).abs().max())
              for k, v in prod.state_dict.items() if v.is_floating_point()]
    assert max(deltas) > 0
    assert all(torch.equal(cand.state_dict[k], v) for k, v in prod.state_dict.items()
               if not v.is_floating_point() and "num_batches" not in k)
    ev = report["evaluation"]
    held_prod, held_cand = ev["heldout"]["production"]["map50"], ev["heldout"]["candidate"]["map50"]
    assert held_prod is not None
    assert held_cand is not None
    assert held_cand >= 0.5 * held_prod  # two small steps from good weights, not from scratch
    assert ev["drift_heldout"]["candidate"]["num_images"] == 4
    whats = [c["what"] for c in report["verdict"]["checks"]]
    assert whats[:2] == ["drifted frames (held out)", "held-out overall"]
    assert report["verdict"]["target_conditions"] == ["night"]

    # registered as a candidate, with its card
    entry = ModelRegistry(registry).get(report["registry"]["version"])
    assert entry["stage"] == "candidate"
    assert entry["version"] == cand.model_version
    assert entry["version"].startswith("fcos_dense_sim-rt-")
    card = Path(entry["model_card"]).read_text()
    assert request["request_id"] in card
    assert "| held-out overall |" in card
    assert json.loads((out / "report.json").read_text())["registry"]["stage"] == "candidate"

    # the request can be named by id afterwards
    assert find_request(request["request_id"], path.parent.parent) == requests[0]


def _event(kind: str, version: str, stamp: int, **details: int) -> SafetyEvent:
    return SafetyEvent(event_id=uuid.uuid4(), stamp_ns=stamp, source="monitor", type=kind,
                       severity=Severity.WARNING, details={"model_version": version, **details})


def test_an_episode_ends_where_the_window_that_cleared_it_starts() -> None:
    onset = _event(DETECTION_DRIFT, "m1", 10, window_start_ns=100, window_end_ns=200)
    other = _event(DETECTION_DRIFT, "m2", 11, window_start_ns=150, window_end_ns=250)
    cleared = _event(DETECTION_DRIFT_CLEARED, "m1", 20, window_start_ns=400, window_end_ns=500)
    episodes = drift_episodes([onset, other, cleared])
    assert episodes == [(onset, cleared), (other, None)]
    req = request_from_events(onset, cleared, recording=Path("r.mcap"), last_frame_ns=900)
    assert (req.start_ns, req.end_ns) == (100, 400)
    assert req.request_id == f"drift-{onset.event_id.hex[:12]}"
    open_ = request_from_events(other, None, recording=Path("r.mcap"), last_frame_ns=900)
    assert (open_.start_ns, open_.end_ns) == (150, 900)


def test_an_event_without_window_stamps_is_refused_by_name() -> None:
    old = _event(DETECTION_DRIFT, "m1", 10)
    with pytest.raises(ValueError, match=f"drift event {old.event_id} carries no window_start_ns"):
        request_from_events(old, None, recording=Path("r.mcap"), last_frame_ns=900)


def test_one_scene_is_split_by_time() -> None:
    frames = [_Frame(meta, b"", gt) for meta, gt in _metas(8)]
    train, held = split_by_scene(frames, 0.25)
    assert [f.meta.seq for f in train] == list(range(6))
    assert [f.meta.seq for f in held] == [6, 7]


def _metas(n: int) -> list[tuple[FrameMeta, GroundTruth]]:
    world = World.from_scenario(load_scenario("night_city"), seed=1)
    cam = next(iter(world.cameras.values()))
    gt = convert.ground_truth(world.ground_truth(cam.camera_id), vehicle_id="ego", seq=0,
                              stamp_ns=T0_NS, run_id="r-0")
    return [(convert.frame_meta(cam, vehicle_id="ego", seq=k, stamp_ns=T0_NS + k, run_id="r-0"),
             gt) for k in range(n)]


def test_an_unknown_request_id_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ROADSTREAM_RUNS_DIR", str(tmp_path))
    assert main(["retrain", "--request", "drift-000000000000", "--registry",
                 str(tmp_path / "reg")]) != 0
    assert "no retraining request 'drift-000000000000'" in capsys.readouterr().err


def test_fine_tuning_refuses_weights_of_another_recipe() -> None:
    spec = DetectorSpec(arch="fcos_dense", image_size=(288, 512))
    with pytest.raises(ValueError, match=r"init_weights .*fcos_dense_sim\.pt: its model spec"):
        load_initial_weights(build_from_spec(spec), spec, DEFAULT_WEIGHTS)
