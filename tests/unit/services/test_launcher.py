"""The process table and the main job's options: each service described once, bad input named."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel

from perception.eval_run import DEFAULT_INT8_PACKAGE, DEFAULT_WEIGHTS
from perception.packages import file_sha256, read_manifest
from services import catalog
from services.mainjob import RunOptions, default_perception_weights, job_services
from services.perception.settings import PerceptionSettings
from services.runtime.process import ServiceProcess
from services.runtime.service import BuiltService, ServiceRuntime
from services.settings import Settings


@pytest.mark.parametrize("name", list(catalog.SERVICES))
def test_every_entry_names_a_builder_that_takes_its_options_model(name: str) -> None:
    entry = catalog.SERVICES[name]
    builder = entry.load()
    model = entry.options_model()
    assert issubclass(model, BaseModel)
    params = inspect.signature(builder).parameters
    assert list(params)[:2] == ["settings", "bootstrap"]
    assert params["options"].kind is inspect.Parameter.KEYWORD_ONLY


def test_perception_and_planning_run_in_processes_of_their_own() -> None:
    own = {name for name, entry in catalog.SERVICES.items() if entry.own_process}
    assert own == {"perception", "planning"}


def test_a_builder_returning_the_runtime_alone_is_wrapped() -> None:
    built = catalog.build("recorder", Settings(), "localhost:9092")
    assert isinstance(built, BuiltService)
    assert isinstance(built.runtime, ServiceRuntime)
    assert built.runtime.name == "recorder"
    assert (built.ready(), built.counts()) == ({}, {})


def test_an_unknown_service_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"no service 'teleporter'; the services are: simulator, perception"):
        catalog.build("teleporter", Settings(), "localhost:9092")
    with pytest.raises(ValueError, match="teleporter"):
        ServiceProcess("teleporter")


def test_a_service_process_that_dies_at_start_up_says_why(tmp_path: Path) -> None:
    """The child builds through the table: a bad option fails there, and the parent shows it."""
    process = ServiceProcess("planning", tmp_path / "planning.log")

    class Broken(BaseModel):
        clock: str = "sundial"  # not a planning clock

    async def start() -> None:
        try:
            await process.start(Settings(), Broken(), "127.0.0.1:1", timeout_s=120)
        finally:
            await process.stop()

    with pytest.raises(RuntimeError, match="planning service process exited") as error:
        asyncio.run(start())
    assert "sundial" in str(error.value)


def options(**changes: object) -> RunOptions:
    base: dict[str, object] = {"scenarios": ("ccrs_30kph",), "run_id": "r1",
                               "out_dir": Path("runs/r1")}
    return RunOptions(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "named"), [
    ({"clock": "sundial"}, "clock must be 'lockstep' or 'realtime', not 'sundial'"),
    ({"speed": 0.0}, "speed must be above 0, not 0"),
    ({"duration_s": -1.0}, "duration_s must be above 0 s, not -1.0"),
    ({"segment_scenarios": 0}, "segment_scenarios must be at least 1, not 0"),
    ({"camera_rate_hz": 0.0}, r"camera_rate_hz must be in \(0, 240\] Hz, not 0.0"),
    ({"camera_rate_hz": 500.0}, "camera_rate_hz must be in"),
    ({"run_id": ""}, "run_id must not be empty"),
    ({"scenarios": "ccrs_30kph"}, "scenarios must be a sequence of names"),
])
def test_bad_run_options_are_named(change: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=f"RunOptions.{named}"):
        options(**change)


def test_run_options_are_frozen_and_keep_the_scenarios_in_order() -> None:
    run = options(scenarios=["b", "a"])
    assert run.scenarios == ("b", "a")
    with pytest.raises(AttributeError):
        run.speed = 2.0  # type: ignore[misc]


def test_real_time_on_a_cpu_serves_the_shipped_int8_package_unless_told(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROADSTREAM_PERCEPTION_WEIGHTS", raising=False)
    cpu, gpu = Settings(device="cpu"), Settings(device="cuda")
    assert default_perception_weights("realtime", cpu, PerceptionSettings()) == DEFAULT_INT8_PACKAGE
    assert default_perception_weights("lockstep", cpu, PerceptionSettings()) is None
    assert default_perception_weights("realtime", gpu, PerceptionSettings()) is None
    monkeypatch.setenv("ROADSTREAM_PERCEPTION_WEIGHTS", "mine.pt")
    assert default_perception_weights("realtime", cpu, PerceptionSettings()) is None
    # the package is the int8 of the shipped checkpoint, and the run hands it to perception
    manifest = read_manifest(DEFAULT_INT8_PACKAGE)
    assert (manifest.format, manifest.precision) == ("onnx", "int8")
    assert manifest.data["source"]["sha256"] == file_sha256(DEFAULT_WEIGHTS)
    chosen = job_services(options(clock="realtime", perception_weights=DEFAULT_INT8_PACKAGE))
    assert chosen["perception"][0].model_dump()["weights"] == DEFAULT_INT8_PACKAGE


def test_lockstep_serves_every_frame_alone_and_real_time_skips_to_the_newest() -> None:
    lockstep = job_services(options(clock="lockstep"))
    realtime = job_services(options(clock="realtime", camera_rate_hz=10.0))
    assert set(lockstep) <= set(catalog.SERVICES)
    assert "recorder" not in lockstep  # the run records to one file of its own
    perception, _ = lockstep["perception"]
    assert perception.model_dump()["max_batch_size"] == 1
    assert perception.model_dump()["latency_budget_ms"] is None
    assert realtime["perception"][0].model_dump()["newest_per_camera"] is True
    assert realtime["planning"][0].model_dump()["clock"] == "wall"
    assert realtime["planning"][0].model_dump()["perception_rate_hz"] == 10.0
    _, simulator_kwargs = lockstep["simulator"]
    assert simulator_kwargs == {"start_from": "latest", "repeat": False, "run_id": "r1",
                                "control": None}  # the run's keyring, settled when it starts
