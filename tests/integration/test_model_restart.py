"""A perception service started (or restarted) after a promotion serves the registry's production.

`model.deployments` is read from its end by every instance, so a deployment made before an
instance started never reaches it; with ``from_registry`` the registry says what serves. Each
test builds a live service on the embedded broker with the shipped checkpoint configured as its
weights and a registry whose production is another version, streams frames through it, and
reads what it published: the results' model names and its safety events.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from perception.checkpoint import load_checkpoint
from perception.eval_run import DEFAULT_WEIGHTS
from perception.packages import file_sha256
from perception.registry import ModelRegistry
from services.messages import PerceptionObjects, SafetyEvent
from services.perception.service import PerceptionService, build
from services.perception.settings import PerceptionSettings
from services.runtime.service import BuiltService
from services.settings import Settings
from tests.integration.test_model_hot_swap import Camera, copy_as, wait_for
from tests.kafka_helpers import collect

pytestmark = pytest.mark.integration


def started_after_promotion(tmp_path: Path, unique: str) -> tuple[ModelRegistry, str]:
    """A registry where the shipped checkpoint was production and a copy (returned) now is."""
    new_version = f"restart-{unique}"
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(DEFAULT_WEIGHTS, stage="production")
    registry.register(copy_as(tmp_path / "new.pt", new_version), stage="production")
    return registry, new_version


def perception(bootstrap: str, unique: str,
               registry: ModelRegistry) -> BuiltService[PerceptionService]:
    settings = Settings(group_prefix=f"restart{unique}", model_registry_dir=registry.root)
    return build(settings, bootstrap, start_from="latest", options=PerceptionSettings(
        weights=DEFAULT_WEIGHTS, from_registry=True, latency_budget_ms=None,
        newest_per_camera=False))


async def stream_through(built: BuiltService[PerceptionService], bootstrap: str, unique: str,
                         until: int = 8) -> tuple[list[PerceptionObjects], list[SafetyEvent]]:
    """Start the service, stream ``until`` frames, stop; its results and perception events."""
    camera, stop = Camera(bootstrap, unique), asyncio.Event()
    await built.runtime.start()
    try:
        assert await built.runtime.wait_assigned(30)
        streaming = asyncio.create_task(camera.stream(stop))
        await wait_for(lambda: len(camera.sent_ns) >= until, 30)
        stop.set()
        await streaming
        out = await collect(bootstrap, "perception.objects", lambda r: r.key == camera.key,
                            len(camera.sent_ns), timeout_s=60)
        events = await collect(bootstrap, "safety.events",
                               lambda r: b"registry at start" in r.value
                               and unique.encode() in r.value, 1, timeout_s=10)
    finally:
        stop.set()
        await built.runtime.stop()
    results = sorted((PerceptionObjects.decode(r.value) for r in out), key=lambda o: o.source.seq)
    assert [o.source.seq for o in results] == list(range(len(camera.sent_ns)))  # none lost
    return results, [SafetyEvent.decode(r.value) for r in events]


async def test_started_after_a_promotion_it_serves_production_from_its_first_frame(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    registry, new_version = started_after_promotion(tmp_path, unique)
    built = perception(kafka_bootstrap, unique, registry)
    new = (new_version, registry.get(new_version)["sha256"])
    assert (built.ready()["model_version"], built.ready()["model_sha256"]) == new
    results, events = await stream_through(built, kafka_bootstrap, unique)
    assert {(o.model_version, o.model_sha256) for o in results} == {new}
    assert events == []  # nothing went wrong, and the second reading found the same production
    assert built.counts()["model_swaps"] == 0


async def test_a_promotion_between_build_and_start_is_found_by_the_second_reading(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """The registry changes after the service chose its model and before its deployment
    consumer started (`--no-publish`, or a deployment published in that gap): the reading made
    once the consumer holds its partition swaps to it, as a deployment would."""
    registry, new_version = started_after_promotion(tmp_path, unique)
    built = perception(kafka_bootstrap, unique, registry)
    assert built.ready()["model_version"] == new_version
    registry.rollback()  # the shipped checkpoint is production again
    old = (load_checkpoint(DEFAULT_WEIGHTS).model_version, file_sha256(DEFAULT_WEIGHTS))
    results, events = await stream_through(built, kafka_bootstrap, unique, until=20)
    assert built.counts()["model_swaps"] == 1
    swapped = [e for e in events if e.type == "model_swapped"]
    assert len(swapped) == 1
    assert swapped[0].details["origin"] == "registry at start"
    assert (swapped[0].details["version"], swapped[0].details["sha256"]) == old
    # one switch, to the registry's production, which serves to the end
    names = [(o.model_version, o.model_sha256) for o in results]
    new = (new_version, registry.get(new_version)["sha256"])
    switch = names.index(old)
    assert names == [new] * switch + [old] * (len(names) - switch)


async def test_a_production_that_fails_its_check_leaves_the_weights_serving_and_says_so(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    registry, new_version = started_after_promotion(tmp_path, unique)
    changed = Path(registry.get(new_version)["path"])
    changed.write_bytes(changed.read_bytes()[:-100] + b"\0" * 100)  # changed after registering
    started = time.time_ns()
    built = perception(kafka_bootstrap, unique, registry)
    configured = (load_checkpoint(DEFAULT_WEIGHTS).model_version, file_sha256(DEFAULT_WEIGHTS))
    assert (built.ready()["model_version"], built.ready()["model_sha256"]) == configured
    results, events = await stream_through(built, kafka_bootstrap, unique)
    assert {(o.model_version, o.model_sha256) for o in results} == {configured}
    assert built.counts()["model_swaps_failed"] == 1  # said once, not again at the second reading
    assert len(events) == 1
    failed = events[0]
    assert failed.type == "model_swap_failed"
    assert failed.severity.value == "warning"
    assert failed.stamp_ns > started
    assert failed.details["origin"] == "registry at start"
    assert failed.details["step"] == "sha256"
    assert failed.details["version"] == new_version
    assert failed.details["serving"] == {"version": configured[0], "sha256": configured[1]}
