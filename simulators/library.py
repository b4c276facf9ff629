"""Loading scenario files and the built-in library (`simulators/library/*.yaml`).

A file holds one scenario, or a base scenario plus a `variants:` list. Each variant has a
full `name` and a `set:` mapping of dotted paths to values applied to the base before
validation, e.g. ``{ego.speed_kph: 50, actors[0].behaviours[0].decel_mps2: 6}``; the base
itself is then not runnable on its own. Every error is a `ScenarioError` naming the file,
the path inside it and the reason.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simulators.appearance import parse_colour
from simulators.scenario import BEHAVIOUR_TYPES, BODIES, Scenario

LIBRARY_DIR = Path(__file__).with_name("library")
DEFAULT_SCENARIO = "ccrs_30kph"
"""A car-to-stationary-car approach at 30 km/h: short, and shows braking in closed loop."""

_UNION_TAGS = frozenset(BEHAVIOUR_TYPES) | {"straight", "arc"}
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH_SYNTAX = re.compile(r"[A-Za-z_]\w*(\[\d+\])*(\.[A-Za-z_]\w*(\[\d+\])*)*")


class ScenarioError(ValueError):
    """A scenario file or name is invalid; `file`, `path` and `reason` say where and why."""

    def __init__(self, file: str, path: str, reason: str) -> None:
        self.file = file
        self.path = path
        self.reason = reason
        super().__init__(f"{file}: {path}: {reason}" if path else f"{file}: {reason}")


class UnknownScenarioError(ScenarioError, KeyError):
    """No library scenario has this name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return ValueError.__str__(self)


@dataclass(frozen=True)
class ScenarioInfo:
    """What `roadstream scenarios list` shows about one scenario."""

    name: str
    description: str
    tags: tuple[str, ...]
    duration_s: float
    speeds_kph: dict[str, float]  # ego start speed ("ego"); each actor's top scripted speed
    condition: str
    source: str


def format_loc(loc: tuple[int | str, ...]) -> str:
    """`('actors', 2, 'behaviours', 0, 'brake', 'x')` -> `actors[2].behaviours[0].x`."""
    out = ""
    prev: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (part in _UNION_TAGS and isinstance(prev, int)):  # pydantic's union tag
            out += f".{part}" if out else str(part)
        prev = part
    return out


def _validation_error(file: str, exc: ValidationError, prefix: str = "") -> ScenarioError:
    errors = exc.errors()
    first = errors[0]
    path = format_loc(tuple(first["loc"]))
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    reason = str(first["msg"])
    if first["type"] not in ("missing", "extra_forbidden"):
        reason += f" (got {first.get('input')!r})"
    elif first["type"] == "extra_forbidden":
        reason = "unknown key"
    if len(errors) > 1:
        reason += f" (+{len(errors) - 1} more error(s))"
    return ScenarioError(file, path, reason)


def _read_yaml(path: Path) -> dict[str, Any]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(file, "", f"cannot read the file: {exc}") from exc
    return parse_yaml_text(text, file)


def parse_yaml_text(text: str, file: str = "<string>") -> dict[str, Any]:
    """Parse YAML text into a mapping; syntax errors name the line and column."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(file, where, f"YAML syntax error: {problem}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(file, "", "the file must hold a mapping (key: value) at the top")
    return data


def _apply_set(base: dict[str, Any], dotted: str, value: Any, file: str, where: str) -> None:
    if not _PATH_SYNTAX.fullmatch(dotted):
        raise ScenarioError(file, where, f"bad path {dotted!r}; write e.g. actors[0].speed_kph")
    tokens = _PATH_TOKEN.findall(dotted)
    node: Any = base
    for n, (key, idx) in enumerate(tokens):
        last = n == len(tokens) - 1
        if key:
            if not isinstance(node, dict):
                raise ScenarioError(file, where, f"{dotted!r}: {key!r} is not inside a mapping")
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            i = int(idx)
            if not isinstance(node, list) or i >= len(node):
                raise ScenarioError(file, where, f"{dotted!r}: no element [{i}]")
            if last:
                node[i] = value
            else:
                node = node[i]


def _expand(data: dict[str, Any], file: str) -> list[tuple[str, dict[str, Any]]]:
    """Return `(path prefix for errors, raw scenario)` for the file's scenarios."""
    data = dict(data)
    variants = data.pop("variants", None)
    if variants is None:
        return [("", data)]
    if not isinstance(variants, list) or not variants:
        raise ScenarioError(file, "variants", "must be a non-empty list")
    out = []
    for i, var in enumerate(variants):
        where = f"variants[{i}]"
        if not isinstance(var, dict) or "name" not in var:
            raise ScenarioError(file, where, "a variant is a mapping with a name")
        unknown = set(var) - {"name", "description", "tags", "set"}
        if unknown:
            raise ScenarioError(file, f"{where}.{sorted(unknown)[0]}", "unknown key")
        raw = copy.deepcopy(data)
        sets = var.get("set") or {}
        if not isinstance(sets, dict):
            raise ScenarioError(file, f"{where}.set", "must be a mapping of path: value")
        for dotted, value in sets.items():
            _apply_set(raw, str(dotted), value, file, f"{where}.set.{dotted}")
        raw["name"] = var["name"]
        if "description" in var:
            raw["description"] = var["description"]
        raw["tags"] = list(raw.get("tags") or []) + list(var.get("tags") or [])
        out.append((where, raw))
    return out


def _check_semantics(sc: Scenario, file: str, prefix: str) -> None:
    """Cross-field checks pydantic cannot express per field."""

    def fail(path: str, reason: str) -> None:
        raise ScenarioError(file, f"{prefix}.{path}" if prefix else path, reason)

    lanes = sc.road.lanes

    def lane_ok(lane: int | None, path: str) -> None:
        if lane is not None and lane >= lanes:
            fail(path, f"lane {lane} does not exist (the road has {lanes} lane(s): 0..{lanes - 1})")

    lane_ok(sc.ego.lane, "ego.lane")
    for i, leg in enumerate(sc.ego.route):
        lane_ok(leg.lane, f"ego.route[{i}].lane")
    ids = set()
    for i, actor in enumerate(sc.actors):
        aid = sc.actor_id(i)
        if aid in ids:
            fail(f"actors[{i}].id", f"duplicate actor id {aid!r}")
        ids.add(aid)
        lane_ok(actor.lane, f"actors[{i}].lane")
        body = actor.appearance.body
        if body is not None and body not in BODIES[actor.cls]:
            fail(f"actors[{i}].appearance.body", f"{body!r} is not one of {BODIES[actor.cls]}")
        if actor.appearance.colour is not None:
            try:
                parse_colour(actor.appearance.colour)
            except ValueError as exc:
                fail(f"actors[{i}].appearance.colour", str(exc))
        if actor.cls == "parked_car" and (actor.behaviours or actor.speed_kph):
            fail(f"actors[{i}].behaviours", "a parked_car does not move")
        for j, beh in enumerate(actor.behaviours):
            if beh.type == "cut_in":
                lane_ok(beh.target_lane, f"actors[{i}].behaviours[{j}].target_lane")
    cam_ids = [c.id for c in sc.cameras]
    if len(set(cam_ids)) != len(cam_ids):
        fail("cameras", f"camera ids must be unique, got {cam_ids}")


def parse_scenarios(data: dict[str, Any], file: str = "<string>") -> list[Scenario]:
    """Validate a parsed file (expanding variants) into scenarios; raise `ScenarioError`."""
    out = []
    for prefix, raw in _expand(data, file):
        try:
            sc = Scenario.model_validate(raw)
        except ValidationError as exc:
            raise _validation_error(file, exc, prefix) from exc
        _check_semantics(sc, file, prefix)
        sc._source = file
        out.append(sc)
    return out


def load_scenario_file(path: str | Path) -> list[Scenario]:
    """All scenarios of one file (one, or one per variant)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(str(path), "", "no such file")
    return parse_scenarios(_read_yaml(path), str(path))


@lru_cache(maxsize=4)
def _index(library_dir: str) -> dict[str, tuple[Path, int]]:
    index: dict[str, tuple[Path, int]] = {}
    for path in sorted(Path(library_dir).glob("*.yaml")):
        for i, sc in enumerate(load_scenario_file(path)):
            if sc.name in index:
                raise ScenarioError(str(path), "name", f"duplicate scenario name {sc.name!r}")
            index[sc.name] = (path, i)
    return index


def scenario_names(library_dir: str | Path = LIBRARY_DIR) -> list[str]:
    """Names of the library scenarios, in file order."""
    return list(_index(str(library_dir)))


def load_scenario(name_or_path: str | Path, library_dir: str | Path = LIBRARY_DIR) -> Scenario:
    """A library scenario by name (`ccrs_30kph`), or the scenario in a YAML file.

    A file with several variants must be loaded with `load_scenario_file`. Raises
    `UnknownScenarioError` for an unknown name, `ScenarioError` for an invalid file.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        scenarios = load_scenario_file(text)
        if len(scenarios) > 1:
            names = ", ".join(s.name for s in scenarios)
            raise ScenarioError(text, "variants", f"the file holds several scenarios: {names}")
        return scenarios[0]
    index = _index(str(library_dir))
    if text not in index:
        raise UnknownScenarioError(
            str(library_dir), "", f"unknown scenario {text!r}; known: {', '.join(index)}"
        )
    path, i = index[text]
    return load_scenario_file(path)[i]


def scenario_info(sc: Scenario) -> ScenarioInfo:
    """Summary of one scenario."""
    speeds = {"ego": sc.ego.speed_kph}
    for i, actor in enumerate(sc.actors):
        moves = [getattr(b, "speed_kph", 0.0) for b in actor.behaviours]
        speeds[sc.actor_id(i)] = max([actor.speed_kph, *moves])
    return ScenarioInfo(
        name=sc.name,
        description=sc.description,
        tags=tuple(sc.tags),
        duration_s=sc.duration_s,
        speeds_kph=speeds,
        condition=sc.environment.condition,
        source=sc.source or "",
    )


def list_scenarios(library_dir: str | Path = LIBRARY_DIR) -> list[ScenarioInfo]:
    """Every library scenario (variants expanded), in file order."""
    index = _index(str(library_dir))
    out: list[ScenarioInfo] = []
    for path in dict.fromkeys(p for p, _ in index.values()):
        out.extend(scenario_info(sc) for sc in load_scenario_file(path))
    return out
