"""The perception service serves a model package named by ROADSTREAM_PERCEPTION_WEIGHTS."""

from __future__ import annotations

from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from perception.eval_run import DEFAULT_WEIGHTS
from perception.export import export_package
from perception.packages import read_manifest
from services.messages import PerceptionObjects
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.settings import Settings
from tests.service.test_perception_service import frame


@pytest.fixture(scope="module", params=["onnx", "openvino"])
def package(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / f"{request.param}-fp32"
    export_package(DEFAULT_WEIGHTS, out, fmt=request.param, evaluate=False)
    return out


async def test_a_package_from_the_environment_serves_and_names_itself(
        package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADSTREAM_PERCEPTION_WEIGHTS", str(package))
    options = PerceptionSettings(latency_budget_ms=2000)
    assert options.weights == package
    service = build(Settings(torch_threads=1), "localhost:9092", options=options)
    out: list[PerceptionObjects] = []

    @service.runtime.broker.subscriber("perception.objects")
    async def on_objects(msg: KafkaMessage) -> None:
        out.append(PerceptionObjects.decode(msg.body))

    async with TestKafkaBroker(service.runtime.broker) as br:
        for seq in (1, 2):
            value, headers = frame(seq)
            await br.publish(value, topic="camera.frames", key=b"ego/front", headers=headers)

    version = read_manifest(package).model_version
    assert version.endswith(f"-{package.name}")
    assert [(o.source.seq, o.model_version) for o in out] == [(1, version), (2, version)]
    assert service.ready()["model_version"] == version
