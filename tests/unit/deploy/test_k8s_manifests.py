"""deploy/k8s, checked without a cluster.

Every Kubernetes resource validates, strictly (no unknown fields), against the OpenAPI schemas
that the `kubernetes-validate` package ships for the Kubernetes versions below. KEDA's
ScaledObject is not a Kubernetes type: it validates against KEDA's own CRD schema and the
metadata its Kafka scaler reads (both in schemas/, see the README there).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from services.catalog import SERVICES
from services.cli.main import build_parser
from services.messages import CAMERA_FRAMES
from services.runtime.service import ServiceRuntime
from services.settings import Settings
from tests.unit.deploy.files import K8S, SCHEMAS, load_yaml, load_yaml_all, settings_problems

#: The oldest and the newest Kubernetes minor version the shipped schemas cover that we check.
K8S_VERSIONS = ("1.30", "1.37")
#: What the kustomization may use; anything else would need its own handling here.
KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    data = load_yaml(K8S / "kustomization.yaml")
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for name in kustomization["resources"] for doc in load_yaml_all(K8S / name)]


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def containers(resources: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, res in by_kind(resources, kind).items():
            for container in res["spec"]["template"]["spec"]["containers"]:
                yield name, container


def config_map(resources: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = by_kind(resources, "ConfigMap")["roadstream-settings"]["data"]
    return data


def test_kustomization_lists_every_manifest(kustomization: dict[str, Any]) -> None:
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) <= KUSTOMIZE_KEYS
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert [i["name"] for i in kustomization["images"]] == ["roadstream"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_resources_validate_against_the_kubernetes_schemas(resources: list[dict[str, Any]],
                                                           version: str) -> None:
    checked = 0
    for res in resources:
        if res["apiVersion"].startswith("keda.sh/"):
            continue
        kubernetes_validate.validate(res, version, strict=True)
        checked += 1
    assert checked == len(resources) - 1  # all but the ScaledObject


def test_strict_validation_rejects_a_misplaced_field(resources: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(by_kind(resources, "Deployment")["planning"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["path"] = container["livenessProbe"]["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_every_service_is_a_deployment_with_healthz_probes(resources: list[dict[str, Any]]) -> None:
    deployments = by_kind(resources, "Deployment")
    assert set(deployments) == set(SERVICES)
    parser = build_parser()
    port = int(config_map(resources)["ROADSTREAM_METRICS_PORT"])
    # kubelet probes the pod's IP, never its loopback
    assert config_map(resources)["ROADSTREAM_METRICS_HOST"] == "0.0.0.0"
    for name, res in deployments.items():
        (container,) = res["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["roadstream", "serve", name]
        assert callable(parser.parse_args(container["command"][1:]).func)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        # Liveness asks only whether the service's loop answers (/livez): a broker outage
        # makes a pod unready (/healthz), never restarts it.
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/livez"),
                            ("readinessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert ports.get(get["port"], get["port"]) == port, (name, probe)
        refs = [e.get("configMapRef", e.get("secretRef", {})).get("name")
                for e in container["envFrom"]]
        assert refs == ["roadstream-settings", "roadstream-secrets"], name


def test_perception_requests_a_gpu(resources: list[dict[str, Any]]) -> None:
    (container,) = by_kind(resources, "Deployment")["perception"]["spec"]["template"]["spec"][
        "containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "ROADSTREAM_DEVICE", "value": "cuda"} in container["env"]


def test_settings_are_real_and_valid(resources: list[dict[str, Any]]) -> None:
    shared = config_map(resources)
    for name, container in containers(resources):
        env = {**shared, **{e["name"]: e["value"] for e in container.get("env", [])}}
        assert settings_problems(env) == [], name


def test_volumes_are_claimed(resources: list[dict[str, Any]]) -> None:
    claims = set(by_kind(resources, "PersistentVolumeClaim"))
    for res in by_kind(resources, "Deployment").values():
        for volume in res["spec"]["template"]["spec"].get("volumes", []):
            assert volume["persistentVolumeClaim"]["claimName"] in claims


def _crd_schema() -> dict[str, Any]:
    crd = load_yaml(SCHEMAS / "keda.sh_scaledobjects.yaml")
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _kafka_metadata_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        Path(SCHEMAS / "keda-kafka-trigger-metadata.json").read_text())
    return schema


@pytest.fixture(scope="module")
def scaler(resources: list[dict[str, Any]]) -> dict[str, Any]:
    (scaled,) = by_kind(resources, "ScaledObject").values()
    return scaled


def test_scaled_object_validates_against_keda_s_crd(scaler: dict[str, Any]) -> None:
    schema = _crd_schema()
    jsonschema.Draft7Validator(schema).validate(scaler)
    broken = copy.deepcopy(scaler)
    del broken["spec"]["scaleTargetRef"]["name"]
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)  # the schema is not empty


def test_perception_scales_on_the_lag_of_its_camera_frames_group(
        scaler: dict[str, Any], resources: list[dict[str, Any]]) -> None:
    shared = config_map(resources)
    perception = by_kind(resources, "Deployment")["perception"]
    assert scaler["spec"]["scaleTargetRef"] == {"name": "perception"}
    assert "replicas" not in perception["spec"]  # KEDA owns it; an apply must not reset it
    (trigger,) = scaler["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    jsonschema.Draft202012Validator(_kafka_metadata_schema()).validate(metadata)
    assert metadata["topic"] == CAMERA_FRAMES.name
    # the group the perception service really consumes camera.frames in
    settings = Settings.model_validate(
        {k.removeprefix("ROADSTREAM_").lower(): v for k, v in shared.items()})
    runtime = ServiceRuntime("perception", settings, settings.bootstrap_servers)
    assert metadata["consumerGroup"] == runtime.topic_group(CAMERA_FRAMES)
    assert metadata["bootstrapServersFromEnv"] in shared
    # a replica beyond the partitions would get none
    assert scaler["spec"]["maxReplicaCount"] <= int(shared["ROADSTREAM_TOPIC_PARTITIONS"])
    assert scaler["spec"]["minReplicaCount"] >= 1


@pytest.mark.parametrize("change", [
    {"lagThreshold": "0"}, {"offsetResetPolicy": "newest"}, {"lagTreshold": "30"},
    {"bootstrapServersFromEnv": None},
])
def test_kafka_metadata_schema_rejects(scaler: dict[str, Any], change: dict[str, Any]) -> None:
    metadata = dict(scaler["spec"]["triggers"][0]["metadata"])
    for key, value in change.items():
        if value is None:
            del metadata[key]
        else:
            metadata[key] = value
    assert not jsonschema.Draft202012Validator(_kafka_metadata_schema()).is_valid(metadata)
