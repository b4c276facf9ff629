"""compose.yaml has the right structure (there is no Docker engine to run it here)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.audit.settings import AuditSettings
from services.catalog import SERVICES
from services.cli.main import build_parser
from services.perception.settings import PerceptionSettings
from services.recording.service import RecorderSettings
from services.settings import ENV_PREFIX, Settings
from services.simulator.settings import SimulatorSettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def roadstream_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("command") and svc["command"][0] == "roadstream"}


def test_kafka_is_apache_kraft_with_volume_and_healthcheck(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert any(v.split(":")[0] in compose["volumes"] for v in kafka["volumes"])
    assert kafka["healthcheck"]["test"]


def test_topic_init_job_runs_after_kafka_is_healthy(compose: dict[str, Any]) -> None:
    init = compose["services"]["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init["command"][:3] == ["roadstream", "topics", "--create"]


def test_every_designed_service_has_an_entry(compose: dict[str, Any]) -> None:
    served = {svc["command"][2] for svc in roadstream_services(compose).values()
              if svc["command"][1] == "serve"}
    assert served == set(SERVICES)
    for required in ("prometheus", "grafana", "kafka", "kafka-init"):
        assert required in compose["services"]


def test_service_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name, svc in roadstream_services(compose).items():
        args = parser.parse_args(svc["command"][1:])
        assert callable(args.func), name
        assert svc.get("build") == "." or svc.get("image") == "roadstream:latest"


SERVICE_SETTINGS: tuple[type[BaseSettings], ...] = (
    Settings, SimulatorSettings, PerceptionSettings, AuditSettings, RecorderSettings)


def setting_names() -> dict[str, tuple[type[BaseSettings], str]]:
    """Every ROADSTREAM_* variable any settings class reads → (class, field)."""
    names = {}
    for cls in SERVICE_SETTINGS:
        prefix = cls.model_config.get("env_prefix", "")
        for field in cls.model_fields:
            names[(prefix + field).upper()] = (cls, field)
    return names


def test_environment_variables_are_real_settings(compose: dict[str, Any]) -> None:
    names = setting_names()
    for name, svc in roadstream_services(compose).items():
        env = svc.get("environment", {})
        values: dict[type[BaseSettings], dict[str, str]] = {}
        for var, value in env.items():
            if var.startswith(ENV_PREFIX):
                assert var in names, f"{name}: {var} is not a setting"
                cls, field = names[var]
                values.setdefault(cls, {})[field] = value
        for cls, kwargs in values.items():
            cls(**kwargs)  # every value is valid too


def test_perception_reserves_a_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["perception"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)


def test_dockerfile_and_prometheus_config_exist(compose: dict[str, Any]) -> None:
    assert (ROOT / "Dockerfile").is_file()
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t.split(":")[0] for job in prom["scrape_configs"]
               for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == set(roadstream_services(compose)) - {"kafka-init"}
    assert shlex.split("roadstream --help")


def test_grafana_dashboard_queries_metrics_the_services_define(compose: dict[str, Any]) -> None:
    import json
    import re

    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/roadstream.json").read_text())
    assert any("dashboards" in v for v in compose["services"]["grafana"]["volumes"])
    source = "\n".join(p.read_text() for p in (ROOT / "services").rglob("*.py"))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"roadstream_[a-z_]+", target["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", metric)
                base = base.removesuffix("_total") if base.endswith("_total") else base
                assert f'"{base}' in source, f"{panel['title']}: {metric} is not defined"
