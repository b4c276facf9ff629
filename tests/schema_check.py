"""Check messages against the published docs/schemas with a validator we did not write.

`jsonschema` (Draft 2020-12) does the validation. Unknown keywords count as errors: every
schema must also pass a strict meta-schema that extends the official 2020-12 one with
`unevaluatedProperties: false` (through its `$dynamicAnchor`, so every subschema is held to
it) and forbids the pre-2020 leftovers, as ajv's strict mode would. Header values are UTF-8
strings; a header whose schema says `contentMediaType: application/json` is parsed and
checked against its `contentSchema` too (2020-12 only annotates it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

DOCS = Path(__file__).resolve().parents[1] / "docs"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
STRICT_META_SCHEMA: dict[str, Any] = {
    "$schema": DIALECT,
    "$id": "urn:roadstream-tests:strict-2020-12",
    "$dynamicAnchor": "meta",
    "$ref": DIALECT,
    "properties": {"definitions": False, "dependencies": False,
                   "$recursiveAnchor": False, "$recursiveRef": False},
    "unevaluatedProperties": False,
}
_STRICT = Draft202012Validator(STRICT_META_SCHEMA)


def strict_schema_errors(schema: dict[str, Any]) -> list[str]:
    """Why a schema is not plain, strict JSON Schema 2020-12 (empty when it is)."""
    if schema.get("$schema") != DIALECT:
        return [f"$schema is {schema.get('$schema')!r}, not {DIALECT}"]
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in Draft202012Validator(Draft202012Validator.META_SCHEMA).iter_errors(schema)]
    errors += [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
               for e in _STRICT.iter_errors(schema)]
    return errors


@cache
def published(name: str, docs: Path = DOCS) -> dict[str, Any]:
    """A schema file of docs/schemas (read once)."""
    schema: dict[str, Any] = json.loads((docs / "schemas" / name).read_text(encoding="utf-8"))
    return schema


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def instance_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Validation errors of a JSON instance, each with its path."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in _validator(schema).iter_errors(instance)]


def value_errors(schema: dict[str, Any], raw: bytes) -> list[str]:
    """Errors of a JSON Kafka value: strict JSON (no NaN or Infinity), then the schema."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        return [f"not strict JSON: {exc}"]
    return instance_errors(schema, value)


def header_errors(schema: dict[str, Any], headers: Iterable[tuple[str, bytes]], *,
                  declared_only: bool = True) -> list[str]:
    """Errors of a Kafka header list against a header schema.

    Names must be unique and values UTF-8. With `declared_only`, a header the schema does not
    name is an error too: the published schema must list every header roadstream sends.
    """
    pairs = [(k, bytes(v)) for k, v in headers]
    names = [k for k, _ in pairs]
    errors = [f"header {k!r} is repeated" for k in sorted(set(names)) if names.count(k) > 1]
    as_text: dict[str, str] = {}
    for k, v in pairs:
        try:
            as_text[k] = v.decode()
        except UnicodeDecodeError:
            errors.append(f"header {k!r} is not UTF-8")
    errors += instance_errors(schema, as_text)
    properties: dict[str, Any] = schema.get("properties", {})
    if declared_only:
        errors += [f"header {k!r} is not declared in the schema"
                   for k in sorted(as_text) if k not in properties]
    for name, prop in properties.items():
        if name in as_text and prop.get("contentMediaType") == "application/json":
            inner = {"$schema": DIALECT, "$defs": schema.get("$defs", {}),
                     **prop.get("contentSchema", {})}
            errors += [f"header {name!r}: {e}" for e in value_errors(inner, as_text[name].encode())]
    return errors
