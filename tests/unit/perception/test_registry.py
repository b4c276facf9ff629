"""The model registry: entries from real artifacts, promote / rollback / archive, atomic writes."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from common.classes import CLASS_NAMES
from perception.architectures import DetectorSpec, build_from_spec
from perception.checkpoint import save_checkpoint
from perception.packages import MANIFEST, PACKAGE_FORMAT, PACKAGE_VERSION, file_sha256
from perception.registry import INDEX, ModelRegistry, RegistryError, artifact_sha256

TINY = DetectorSpec(arch="ssdlite", image_size=(64, 96), score_thresh=0.0)
VAL = {"map50": 0.61, "map50_95": 0.4}
POINT = {"score": 0.45, "f1": 0.8}


def checkpoint(path: Path, version: str, *, seed: int = 0) -> Path:
    """A real (tiny) checkpoint of our format with validation metrics."""
    torch.manual_seed(seed)
    return save_checkpoint(path, build_from_spec(TINY), TINY, model_version=version,
                           metadata={"val": VAL, "operating_point": POINT, "step": 3})


def package(folder: Path, version: str, model_bytes: bytes = b"onnx graph bytes") -> Path:
    """A package folder whose manifest is valid (its model file is not run by the registry)."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(model_bytes)
    manifest = {
        "format": PACKAGE_FORMAT, "format_version": PACKAGE_VERSION, "model_version": version,
        "model": {"format": "onnx", "precision": "fp32", "file": "model.onnx",
                  "sha256": file_sha256(folder / "model.onnx")},
        "source": {"checkpoint": "x.pt", "sha256": "0" * 64, "model_version": "x"},
        "spec": TINY.to_dict(), "input_size": list(TINY.image_size),
        "class_names": list(CLASS_NAMES), "operating_point": POINT,
        "evaluation": {"data": "held-out", "map50": 0.7, "map50_95": 0.5}}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


class Clock:
    """Instants one minute apart, so history order is visible in the stamps."""

    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(minutes=1)
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry", clock=Clock())


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("ckpts")
    (root / "MODEL_CARD.md").write_text("# Tiny\nA card.\n")
    return [checkpoint(root / f"{v}.pt", v, seed=i) for i, v in enumerate(("v1", "v2", "v3"))]


def stages(registry: ModelRegistry) -> dict[str, str]:
    return {e["version"]: e["stage"] for e in registry.entries()}


def test_register_a_checkpoint_records_what_it_is(registry: ModelRegistry,
                                                  three: list[Path]) -> None:
    entry = registry.register(three[0])
    assert entry["version"] == "v1"
    assert entry["stage"] == "candidate"
    assert entry["kind"] == "checkpoint"
    assert entry["path"] == str(three[0].resolve())
    assert entry["sha256"] == file_sha256(three[0]) == artifact_sha256(three[0])
    assert entry["metrics"] == {"val": VAL, "operating_point": POINT}
    assert entry["model_card"] == str((three[0].parent / "MODEL_CARD.md").resolve())
    assert entry["created_utc"] == "2030-01-01T00:01:00Z"
    assert entry["promoted_utc"] is None
    assert entry["history"] == [{"at_utc": "2030-01-01T00:01:00Z", "stage": "candidate",
                                 "from": None, "reason": "registered"}]
    # what a fresh reader of the folder sees
    assert ModelRegistry(registry.root).get("v1") == entry


def test_paths_are_kept_relative_so_a_registry_moved_with_its_artifacts_stays_valid(
        tmp_path: Path) -> None:
    """The index names no folder of the machine it was made on; a copy of the project (the
    registry and its artifacts together) elsewhere resolves to the copy's artifacts."""
    project = tmp_path / "project"
    (project / "weights").mkdir(parents=True)
    (project / "weights" / "MODEL_CARD.md").write_text("# Tiny\n")
    ckpt = checkpoint(project / "weights" / "v1.pt", "v1")
    folder = package(project / "packages" / "v1-onnx", "v1-onnx-fp32")
    registry = ModelRegistry(project / "registry", clock=Clock())
    registry.register(ckpt, stage="production")
    registry.register(folder)
    index = json.loads((registry.root / INDEX).read_text())
    assert index["models"]["v1"]["path"] == "../weights/v1.pt"
    assert index["models"]["v1"]["model_card"] == "../weights/MODEL_CARD.md"
    assert index["models"]["v1-onnx-fp32"]["path"] == "../packages/v1-onnx"
    assert str(tmp_path) not in (registry.root / INDEX).read_text()

    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(project, moved)
    shutil.rmtree(project)  # nothing may still point at the old place
    copy = ModelRegistry(moved / "registry", clock=Clock())
    production = copy.production()
    assert production is not None
    assert production["path"] == str((moved / "weights" / "v1.pt").resolve())
    assert production["model_card"] == str((moved / "weights" / "MODEL_CARD.md").resolve())
    assert artifact_sha256(production["path"]) == production["sha256"]
    entry, archived = copy.promote("v1-onnx-fp32")
    assert entry["path"] == str((moved / "packages" / "v1-onnx").resolve())
    assert archived == "v1"
    assert artifact_sha256(entry["path"]) == entry["sha256"]


def test_an_index_with_absolute_paths_is_read_as_it_is(registry: ModelRegistry,
                                                       three: list[Path]) -> None:
    """Indexes written before paths were kept relative hold absolute ones."""
    registry.register(three[0])
    index = json.loads(registry.index_path.read_text())
    index["models"]["v1"]["path"] = str(three[0].resolve())
    registry.index_path.write_text(json.dumps(index))
    assert registry.get("v1")["path"] == str(three[0].resolve())


def test_register_a_package_names_it_by_its_manifest(registry: ModelRegistry,
                                                     tmp_path: Path) -> None:
    folder = package(tmp_path / "pkg", "v1-onnx-fp32")
    entry = registry.register(folder)
    assert entry["kind"] == "package"
    assert entry["sha256"] == file_sha256(folder / MANIFEST)
    assert entry["metrics"]["map50"] == 0.7
    assert entry["model_card"] is None
    # the digest is the manifest's, which pins the model file's sha256: so registration
    # refuses a package whose file no longer matches it
    changed = package(tmp_path / "changed", "v2-onnx-fp32")
    (changed / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match=r"changed.*does not match the manifest's sha256"):
        registry.register(changed)


def test_promote_archives_the_previous_production(registry: ModelRegistry,
                                                  three: list[Path]) -> None:
    for path in three:
        registry.register(path)
    assert registry.production() is None
    entry, archived = registry.promote("v1")
    assert (entry["stage"], archived) == ("production", None)
    entry, archived = registry.promote("v2")
    assert archived == "v1"
    assert stages(registry) == {"v1": "archived", "v2": "production", "v3": "candidate"}
    v1 = registry.get("v1")
    assert [(h["from"], h["stage"], h["reason"]) for h in v1["history"]] == [
        (None, "candidate", "registered"), ("candidate", "production", "promoted"),
        ("production", "archived", "replaced by v2")]
    assert registry.get("v2")["promoted_utc"] == v1["history"][-1]["at_utc"]
    # promoting the production again changes nothing
    before = registry.index_path.read_bytes()
    assert registry.promote("v2") == (registry.get("v2"), None)
    assert registry.index_path.read_bytes() == before


def test_rollback_steps_back_along_the_productions(registry: ModelRegistry,
                                                   three: list[Path]) -> None:
    for path in three:
        registry.register(path)
    with pytest.raises(RegistryError, match="has no production model"):
        registry.rollback()
    for version in ("v1", "v2", "v3"):
        registry.promote(version)
    restored, rolled = registry.rollback()
    assert (restored["version"], rolled["version"]) == ("v2", "v3")
    assert stages(registry) == {"v1": "archived", "v2": "production", "v3": "archived"}
    assert registry.get("v3")["history"][-1]["reason"] == "rolled back"
    assert registry.get("v2")["history"][-1]["reason"] == "restored by rollback of v3"
    restored, rolled = registry.rollback()
    assert (restored["version"], rolled["version"]) == ("v1", "v2")
    with pytest.raises(RegistryError, match="v1 is the first production version"):
        registry.rollback()
    assert stages(registry) == {"v1": "production", "v2": "archived", "v3": "archived"}


def test_register_as_production_promotes_in_one_step(registry: ModelRegistry,
                                                     three: list[Path]) -> None:
    registry.register(three[0], stage="production")
    registry.register(three[1], stage="production")
    assert stages(registry) == {"v1": "archived", "v2": "production"}
    assert registry.rollback()[0]["version"] == "v1"


def test_bad_input_is_named(registry: ModelRegistry, three: list[Path], tmp_path: Path) -> None:
    registry.register(three[0])
    with pytest.raises(RegistryError, match=r"version 'v9' is not in registry .* \(registered: v1\)"):
        registry.promote("v9")
    copy = tmp_path / "copy.pt"
    copy.write_bytes(three[0].read_bytes())
    with pytest.raises(RegistryError, match=r"version v1 is already registered .*copy\.pt cannot"):
        registry.register(copy)
    with pytest.raises(RegistryError, match=r"missing\.pt does not exist"):
        registry.register(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RegistryError, match=r"junk\.pt"):
        registry.register(junk)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match=r"empty has no manifest\.json"):
        registry.register(tmp_path / "empty")
    with pytest.raises(RegistryError, match=r"model card .*nope\.md does not exist"):
        registry.register(three[1], model_card=tmp_path / "nope.md")
    with pytest.raises(RegistryError, match="stage 'live' is not one of"):
        registry.register(three[1], stage="live")  # type: ignore[arg-type]
    assert stages(registry) == {"v1": "candidate"}  # nothing of the refused requests stayed


def test_a_damaged_index_is_refused_by_name(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    root.mkdir()
    (root / INDEX).write_text("{ half")
    with pytest.raises(RegistryError, match=r"index\.json is not readable JSON"):
        ModelRegistry(root).entries()
    (root / INDEX).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(RegistryError, match=r"is not a roadstream\.model-registry index"):
        ModelRegistry(root).entries()


def test_a_failed_write_leaves_the_old_index_whole(registry: ModelRegistry, three: list[Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register(three[0])
    before = registry.index_path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("perception.registry.os.replace", crash)
    with pytest.raises(OSError, match="No space left"):
        registry.promote("v1")
    assert registry.index_path.read_bytes() == before
    assert sorted(p.name for p in registry.root.iterdir()) == ["index.json", "index.lock"]


def test_concurrent_registrations_all_land(registry: ModelRegistry, tmp_path: Path) -> None:
    paths = [checkpoint(tmp_path / f"c{i}.pt", f"c{i}", seed=i) for i in range(6)]
    errors: list[BaseException] = []

    def register(path: Path) -> None:
        try:
            registry.register(path)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(stages(registry)) == [f"c{i}" for i in range(6)]
