"""compose.yaml and its three-broker overlay compose.ha.yaml, checked without a container engine.

Both files, and their merge, validate against the compose-spec JSON Schema (vendored, see
schemas/README.md); the Kafka settings are checked for what KRaft would refuse; the services'
healthcheck command is run against a real ops endpoint.
"""

from __future__ import annotations

import asyncio
import copy
import re
import sys
from typing import Any

import jsonschema
import pytest
from prometheus_client import CollectorRegistry

from services.broker.clients import topic_configs
from services.catalog import SERVICES
from services.runtime.http import OpsServer
from services.settings import Settings
from tests.unit.deploy.files import (
    ROOT,
    compose_schema,
    load_yaml,
    merge,
    overridden_sequences,
    settings_problems,
)
from tests.unit.deploy.kraft import (
    cluster_id_problem,
    kafka_nodes,
    kraft_problems,
    roadstream_services,
)

MAX_BYTES = Settings().max_message_bytes


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    data = load_yaml(ROOT / "compose.yaml")
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def ha_overlay() -> dict[str, Any]:
    data = load_yaml(ROOT / "compose.ha.yaml")
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def ha(base: dict[str, Any], ha_overlay: dict[str, Any]) -> dict[str, Any]:
    return merge(base, ha_overlay)


def test_the_overlay_replaces_no_list_so_the_merge_here_is_compose_s(
        base: dict[str, Any], ha_overlay: dict[str, Any]) -> None:
    assert overridden_sequences(base, ha_overlay) == []
    assert overridden_sequences({"a": {"b": [1]}}, {"a": {"b": [2]}}) == ["a.b"]  # it can see one


@pytest.mark.parametrize("which", ["compose.yaml", "compose.ha.yaml", "merged"])
def test_files_validate_against_the_compose_spec(which: str, base: dict[str, Any],
                                                 ha_overlay: dict[str, Any],
                                                 ha: dict[str, Any]) -> None:
    document = {"compose.yaml": base, "compose.ha.yaml": ha_overlay, "merged": ha}[which]
    validator = jsonschema.Draft7Validator(compose_schema())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(document)]
    assert errors == []


def test_the_schema_rejects_a_misspelt_healthcheck(base: dict[str, Any]) -> None:
    broken = copy.deepcopy(base)
    broken["services"]["planning"]["healthcheck"] = {"tset": ["CMD", "true"]}
    assert not jsonschema.Draft7Validator(compose_schema()).is_valid(broken)


@pytest.mark.parametrize("variant", ["single", "ha"])
def test_kafka_settings_are_consistent(variant: str, base: dict[str, Any],
                                       ha: dict[str, Any]) -> None:
    compose = base if variant == "single" else ha
    assert kraft_problems(compose, max_message_bytes=MAX_BYTES) == []
    assert len(kafka_nodes(compose)) == (1 if variant == "single" else 3)


def test_ha_topics_have_replication_3_and_min_insync_2(ha: dict[str, Any]) -> None:
    nodes = kafka_nodes(ha)
    assert sorted(int(env["KAFKA_NODE_ID"]) for env in nodes.values()) == [1, 2, 3]
    for env in nodes.values():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
    for name, svc in roadstream_services(ha).items():
        env = svc["environment"]
        assert settings_problems(env) == [], name
        settings = Settings(bootstrap_servers=env["ROADSTREAM_BOOTSTRAP_SERVERS"],
                            topic_replication=env["ROADSTREAM_TOPIC_REPLICATION"],
                            topic_min_insync_replicas=env["ROADSTREAM_TOPIC_MIN_INSYNC_REPLICAS"])
        assert len(settings.servers) == 3, name
        # what `roadstream topics --create` (kafka-init) asks the cluster for
        assert settings.topic_replication == 3
        assert topic_configs(settings)["min.insync.replicas"] == "2"


def test_single_broker_keeps_replication_1(base: dict[str, Any]) -> None:
    for name, svc in roadstream_services(base).items():
        assert settings_problems(svc["environment"]) == [], name
        assert "ROADSTREAM_TOPIC_MIN_INSYNC_REPLICAS" not in svc["environment"], name


def test_cluster_id_is_a_kraft_uuid(base: dict[str, Any]) -> None:
    (env,) = kafka_nodes(base).values()
    assert cluster_id_problem(env["CLUSTER_ID"]) is None


@pytest.mark.parametrize(("value", "why"), [
    ("roadstream-kraft-cluster-01", "not 22 characters"),
    ("AAAAAAAAAAAAAAAAAAAAAA", "reserved"),
    ("EbeCaFkCRAexdW+orPSxrg", "outside URL-safe"),
    ("EbeCaFkCRAexdW-orPSxrh", "canonical"),   # the last character carries unused bits
])
def test_cluster_id_check_rejects(value: str, why: str) -> None:
    problem = cluster_id_problem(value)
    assert problem is not None
    assert why in problem


def _broken(compose: dict[str, Any], node: str, key: str, value: str) -> dict[str, Any]:
    copy_ = copy.deepcopy(compose)
    copy_["services"][node]["environment"][key] = value
    return copy_


@pytest.mark.parametrize(("node", "key", "value", "expected"), [
    ("kafka-3", "KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9094",
     "voter 3@kafka-3:9094 is not kafka-3's controller listener"),
    ("kafka-2", "KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka:9093,2@kafka-2:9093",
     "quorum voters [1, 2] are not the controllers [1, 2, 3]"),
    ("kafka-2", "KAFKA_NODE_ID", "1", "KAFKA_NODE_ID 1 is also"),
    ("kafka-2", "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka:9092,EXTERNAL://localhost:29093",
     "advertises host 'kafka'"),
    ("kafka-3", "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka-3:9092,OUTSIDE://localhost:29094",
     "advertised listener OUTSIDE is not bound"),
    ("kafka-3", "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka-3:9092,EXTERNAL://localhost:29095",
     "no port mapping joins them"),
    ("kafka-2", "CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qk", "different CLUSTER_IDs"),
    ("kafka", "KAFKA_MIN_INSYNC_REPLICAS", "4", "KAFKA_MIN_INSYNC_REPLICAS exceeds"),
    ("kafka", "KAFKA_MESSAGE_MAX_BYTES", "1048588", "KAFKA_MESSAGE_MAX_BYTES is below"),
    ("planning", "ROADSTREAM_BOOTSTRAP_SERVERS", "kafka:9092,kafka-4:9092",
     "bootstrap server kafka-4:9092 is no broker's"),
    ("recorder", "ROADSTREAM_TOPIC_REPLICATION", "4", "ROADSTREAM_TOPIC_REPLICATION=4 exceeds"),
])
def test_kafka_checks_find_what_kraft_would_refuse(ha: dict[str, Any], node: str, key: str,
                                                   value: str, expected: str) -> None:
    problems = kraft_problems(_broken(ha, node, key, value), max_message_bytes=MAX_BYTES)
    assert any(expected in p for p in problems), problems


def test_min_insync_above_replication_is_a_settings_error(ha: dict[str, Any]) -> None:
    env = dict(ha["services"]["planning"]["environment"], ROADSTREAM_TOPIC_MIN_INSYNC_REPLICAS="4")
    assert any("exceeds topic_replication" in p for p in settings_problems(env))


HEALTHZ = re.compile(r"http://(?P<host>127\.0\.0\.1|localhost):(?P<port>\d+)/healthz")


@pytest.mark.parametrize("variant", ["single", "ha"])
def test_every_served_service_checks_its_healthz(variant: str, base: dict[str, Any],
                                                 ha: dict[str, Any]) -> None:
    compose = base if variant == "single" else ha
    served = {}
    for name, svc in roadstream_services(compose).items():
        if svc["command"][1] != "serve":
            continue
        served[svc["command"][2]] = name
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD", name
        match = HEALTHZ.search(" ".join(test))
        assert match is not None, name
        assert match["port"] == str(svc["environment"]["ROADSTREAM_METRICS_PORT"]), name
        # the ops endpoint must accept the container's own loopback
        assert svc["environment"]["ROADSTREAM_METRICS_HOST"] in {"0.0.0.0", "127.0.0.1"}, name
    assert set(served) == set(SERVICES)


async def _run_healthcheck(test: list[str], port: int) -> int:
    argv = [sys.executable if arg == "python" else arg.replace(":9100/", f":{port}/")
            for arg in test[1:]]
    # not subprocess.run: the health document is computed on this event loop, which must run
    proc = await asyncio.create_subprocess_exec(*argv)
    return await asyncio.wait_for(proc.wait(), timeout=60)


async def test_the_healthcheck_command_passes_only_while_the_service_serves(
        base: dict[str, Any]) -> None:
    test = base["services"]["perception"]["healthcheck"]["test"]
    state = {"status": "starting"}
    server = OpsServer(CollectorRegistry(), lambda: dict(state), "127.0.0.1", 0)
    await server.start()
    try:
        assert await _run_healthcheck(test, server.port) != 0
        state["status"] = "ok"
        assert await _run_healthcheck(test, server.port) == 0
        state["status"] = "stopping"
        assert await _run_healthcheck(test, server.port) != 0
    finally:
        await server.stop()


def test_secrets_come_from_an_uncommitted_file(base: dict[str, Any]) -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for name, svc in roadstream_services(base).items():
        assert svc["env_file"] == ["secrets.env"], name
        assert "secrets.env" in ignored
        assert not any("KEY" in var or "PASSWORD" in var for var in svc["environment"]), name
