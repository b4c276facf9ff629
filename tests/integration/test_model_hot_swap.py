"""Hot swap on a live perception service: `roadstream models promote` mid-stream, nothing lost.

The service serves the shipped checkpoint; a copy of it saved under a new version is registered
and promoted with the CLI, which publishes on `model.deployments`. Frames stream at 10 Hz
throughout. Every frame must get exactly one result; results name the old model until the
switch and the new one after it, each with its artifact's sha256. Then two bad deployments (a
file changed after registration, a file that is no model) must leave the new model serving and
raise `model_swap_failed`. The swap time (command issued → first result of the new model) is
printed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from perception.architectures import build_from_spec
from perception.checkpoint import load_checkpoint, save_checkpoint
from perception.eval_run import DEFAULT_WEIGHTS
from perception.packages import file_sha256
from perception.registry import ModelRegistry
from services.cli.main import main
from services.cli.models import deployment_of, publish_deployment
from services.messages import DeploymentAction, ModelDeployment, PerceptionObjects, SafetyEvent
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.settings import Settings
from tests.kafka_helpers import collect
from tests.schema_check import header_errors, published, value_errors
from tests.service.test_perception_service import frame

pytestmark = pytest.mark.integration
PERIOD_S = 0.1  # 10 Hz camera


def copy_as(path: Path, version: str) -> Path:
    """The shipped checkpoint's weights saved under another version (another file, sha256)."""
    ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    model = build_from_spec(ckpt.spec)
    model.load_state_dict(ckpt.state_dict)
    return save_checkpoint(path, model, ckpt.spec, model_version=version,
                           class_names=ckpt.class_names, metadata=ckpt.metadata)


class Camera:
    """Streams frames of one camera at 10 Hz; remembers when each seq was sent [ns]."""

    def __init__(self, bootstrap: str, unique: str) -> None:
        self.bootstrap = bootstrap
        self.key = f"ego-{unique}/front".encode()
        self.vehicle = f"ego-{unique}"
        self.sent_ns: dict[int, int] = {}

    async def stream(self, stop: asyncio.Event) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=False,
                                    acks="all")
        await producer.start()
        try:
            seq = 0
            while not stop.is_set():
                value, headers = frame(seq, stamp_ns=time.time_ns())
                headers = {**headers, "vehicle-id": self.vehicle}
                await producer.send_and_wait("camera.frames", value, key=self.key,
                                             headers=[(k, v.encode()) for k, v in headers.items()])
                self.sent_ns[seq] = time.time_ns()
                seq += 1
                await asyncio.sleep(PERIOD_S)
        finally:
            await producer.stop()


async def wait_for(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def events_of(records: list[ConsumerRecord], versions: set[str]) -> list[SafetyEvent]:
    events = [SafetyEvent.decode(r.value) for r in records]
    return [e for e in events if e.source == "perception" and e.details.get("version") in versions]


async def test_promote_mid_stream_swaps_without_losing_a_frame(
        kafka_bootstrap: str, unique: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    old_version = load_checkpoint(DEFAULT_WEIGHTS).model_version
    new_version, bad_version = f"swap-new-{unique}", f"swap-bad-{unique}"
    new_path = copy_as(tmp_path / "new.pt", new_version)
    bad_path = copy_as(tmp_path / "bad.pt", bad_version)
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(DEFAULT_WEIGHTS, stage="production")
    registry.register(new_path)
    registry.register(bad_path)
    bad_path.write_bytes(bad_path.read_bytes()[:-100] + b"\0" * 100)  # changed after registering

    built = build(Settings(group_prefix=f"swap{unique}"), kafka_bootstrap,
                  options=PerceptionSettings(weights=DEFAULT_WEIGHTS, latency_budget_ms=None,
                                             newest_per_camera=False),
                  start_from="latest")
    await built.runtime.start()
    camera = Camera(kafka_bootstrap, unique)
    stop = asyncio.Event()
    try:
        assert await built.runtime.wait_assigned(30)
        streaming = asyncio.create_task(camera.stream(stop))
        await wait_for(lambda: len(camera.sent_ns) >= 10, 30)
        # the CLI, as an operator runs it: registry change + deployment on the broker (the
        # copy never ran in shadow: the shadow floor is test_cli_models_floors.py's subject)
        monkeypatch.setenv("ROADSTREAM_BOOTSTRAP_SERVERS", kafka_bootstrap)
        monkeypatch.setenv("ROADSTREAM_PROMOTION_MIN_SHADOW_AGREEMENT", "none")
        issued_ns = time.time_ns()
        code = await asyncio.to_thread(main, ["models", "--registry", str(registry.root),
                                              "promote", new_version])
        assert code == 0
        await wait_for(lambda: built.counts()["model_swaps"] == 1, 60)
        swapped_at = len(camera.sent_ns)
        await wait_for(lambda: len(camera.sent_ns) >= swapped_at + 10, 30)

        # two bad deployments: the changed file (sha256), a file that is no model (load)
        settings = Settings(bootstrap_servers=kafka_bootstrap)
        await publish_deployment(settings, deployment_of(registry.get(bad_version),
                                                         DeploymentAction.PROMOTE))
        junk = tmp_path / "junk.pt"
        junk.write_bytes(b"no model in here")
        await publish_deployment(settings, ModelDeployment(
            version=bad_version, path=str(junk), sha256=file_sha256(junk), stamp_ns=time.time_ns()))
        await wait_for(lambda: built.counts()["model_swaps_failed"] == 2, 60)
        failed_at = len(camera.sent_ns)
        await wait_for(lambda: len(camera.sent_ns) >= failed_at + 5, 30)
        stop.set()
        await streaming
        total = len(camera.sent_ns)
        out = await collect(kafka_bootstrap, "perception.objects", lambda r: r.key == camera.key,
                            total, timeout_s=60)
        events = await collect(
            kafka_bootstrap, "safety.events",
            lambda r: b"model_swap" in r.value and unique.encode() in r.value, 3, timeout_s=30)
        deployments = await collect(kafka_bootstrap, "model.deployments",
                                    lambda r: unique.encode() in r.value, 3, timeout_s=30)
    finally:
        stop.set()
        await built.runtime.stop()

    # the commands as published match the published schema, headers included
    assert len(deployments) == 3
    for record in deployments:
        assert value_errors(published("model.deployments.schema.json"), record.value) == []
        assert header_errors(published("model.deployments.headers.schema.json"),
                             record.headers or ()) == []
    results = sorted((PerceptionObjects.decode(r.value) for r in out), key=lambda o: o.source.seq)
    # no frame lost, none served twice
    assert [o.source.seq for o in results] == list(range(total))
    names = [(o.model_version, o.model_sha256) for o in results]
    old = (old_version, file_sha256(DEFAULT_WEIGHTS))
    new = (new_version, registry.get(new_version)["sha256"])
    # one switch, old before it and new after it (a batch finishes on the model it started on)
    switch = names.index(new)
    assert switch > 0
    assert names == [old] * switch + [new] * (total - switch)
    swapped = [e for e in events_of(events, {new_version}) if e.type == "model_swapped"]
    assert len(swapped) == 1
    assert all(o.model_version == old_version for o in results if o.stamp_ns < swapped[0].stamp_ns)
    assert all(names[seq] == new for seq, sent in camera.sent_ns.items()
               if sent > swapped[0].stamp_ns)
    # the failed deployments kept the new model serving, and said why
    failed = [e for e in events_of(events, {bad_version}) if e.type == "model_swap_failed"]
    assert sorted(e.details["step"] for e in failed) == ["load", "sha256"]
    assert all(e.details["serving"] == {"version": new_version, "sha256": new[1]} for e in failed)
    assert all(e.severity.value == "warning" for e in failed)
    # swap time: deployment command issued (its stamp) → first result of the new model
    details = swapped[0].details
    first_new_ns = results[switch].stamp_ns
    swap_ms = (first_new_ns - details["command_stamp_ns"]) / 1e6
    cli_ms = (first_new_ns - issued_ns) / 1e6
    steps = {k: details[k] for k in ("hash_ms", "load_ms", "warmup_ms", "received_to_switch_ms")}
    print(f"\nswap time: deployment issued -> first new-model result {swap_ms:.0f} ms "
          f"(from the CLI's start, broker connection included: {cli_ms:.0f} ms); in the service "
          f"{json.dumps(steps)}")
    assert 0 < details["issued_to_switch_ms"] < swap_ms < cli_ms
