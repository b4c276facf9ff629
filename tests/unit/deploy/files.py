"""Loading the deployment files as their tools would, and checking their ROADSTREAM_* values."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.audit.settings import AuditSettings
from services.control.settings import ControlSettings
from services.monitor.settings import MonitorSettings
from services.perception.settings import PerceptionSettings
from services.planning.settings import PlanningSettings
from services.recording.service import RecorderSettings
from services.settings import ENV_PREFIX, Settings
from services.simulator.settings import SimulatorSettings

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
K8S = ROOT / "deploy" / "k8s"

#: Every settings class a roadstream container reads from its environment.
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    Settings, MonitorSettings, SimulatorSettings, PerceptionSettings, PlanningSettings,
    ControlSettings, AuditSettings, RecorderSettings)


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML file."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def compose_schema() -> dict[str, Any]:
    """The vendored compose-spec JSON Schema."""
    schema: dict[str, Any] = json.loads((SCHEMAS / "compose-spec.json").read_text())
    return schema


def overridden_sequences(base: dict[str, Any], override: dict[str, Any],
                         where: str = "") -> list[str]:
    """Paths where `override` replaces a list of `base` (compose merges lists its own way)."""
    found = []
    for key, value in override.items():
        if key not in base:
            continue
        here = f"{where}.{key}" if where else key
        if isinstance(value, dict) and isinstance(base[key], dict):
            found += overridden_sequences(base[key], value, here)
        elif isinstance(value, list) or isinstance(base[key], list):
            found.append(here)
    return found


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`docker compose -f base -f override` for files that override mappings and scalars only.

    Mappings merge key by key and scalars are replaced, as compose does; lists are merged by
    rules of their own in compose, so callers first check `overridden_sequences` is empty.
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def settings_problems(env: dict[str, object]) -> list[str]:
    """Why the ROADSTREAM_* variables of one container would not load (an empty list: fine).

    Each variable must be a field of some settings class, and each class must accept the
    values of its fields (one line per failing class).
    """
    problems = []
    claimed: set[str] = set()
    for cls in SETTINGS_CLASSES:
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        values = {}
        for var, value in env.items():
            field = var.upper().removeprefix(prefix).lower()
            if var.upper().startswith(prefix) and field in cls.model_fields:
                values[field] = "" if value is None else str(value)
                claimed.add(var)
        values = {k: v for k, v in values.items() if v != ""}  # an empty variable is unset
        if not values:
            continue  # its defaults are not this file's business
        try:
            cls.model_validate(values)
        except ValidationError as exc:
            problems.append(f"{cls.__name__}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
    problems += [f"{var} is no setting" for var in env
                 if var.startswith(ENV_PREFIX) and var not in claimed]
    return problems
