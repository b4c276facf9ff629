"""The published contract (docs/schemas, docs/asyncapi.json) as an outside client sees it.

Checked with validators we did not write: `jsonschema` (2020-12, unknown keywords refused) and
the official AsyncAPI 3.0.0 JSON Schema, vendored under tests/fixtures/asyncapi.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError

from services.cli.main import main
from services.docs import asyncapi, headers_schema_name, value_schema_name
from services.messages import ALL_TOPICS, TOPICS, TopicSpec
from services.messages.examples import JSON_EXAMPLES, frame_meta
from tests.schema_check import DOCS, header_errors, published, strict_schema_errors, value_errors

ASYNCAPI_SCHEMA = Path(__file__).resolve().parents[2] / "fixtures" / "asyncapi" / "3.0.0.json"
SCHEMA_FILES = sorted(p.name for p in (DOCS / "schemas").glob("*.json"))


def test_roadstream_docs_output_is_what_is_committed(tmp_path: Path) -> None:
    assert main(["docs", "--out", str(tmp_path)]) == 0
    generated = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")}
    # docs/schemas holds only generated files; other JSON under docs/ is written by hand
    committed = {"asyncapi.json", *(f"schemas/{name}" for name in SCHEMA_FILES)}
    assert generated == committed, "run `roadstream docs` and commit docs/"
    stale = [rel for rel in sorted(generated)
             if (tmp_path / rel).read_bytes() != (DOCS / rel).read_bytes()]
    assert stale == [], f"run `roadstream docs` and commit: {stale}"


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_schema_is_strict_json_schema_2020_12(name: str) -> None:
    schema = published(name)
    Draft202012Validator.check_schema(schema)
    assert strict_schema_errors(schema) == []
    assert ", schema version " in schema["$comment"]


def test_the_strict_check_refuses_custom_keywords() -> None:
    schema = json.loads(json.dumps(published("vehicle.control.schema.json")))
    schema["x-schema-version"] = 1
    schema["properties"]["seq"]["x-topic"] = "vehicle.control"
    errors = strict_schema_errors(schema)
    assert any(e.startswith("<root>:") and "'x-schema-version'" in e for e in errors)
    assert any(e.startswith("properties/seq:") and "'x-topic'" in e for e in errors)


def test_the_meta_schema_check_refuses_a_broken_schema() -> None:
    with pytest.raises(SchemaError):
        Draft202012Validator.check_schema({"type": "strnig"})


def test_asyncapi_document_is_valid_asyncapi_3() -> None:
    official = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    document = json.loads((DOCS / "asyncapi.json").read_text(encoding="utf-8"))
    validator = Draft7Validator(official)
    assert [e.message for e in validator.iter_errors(document)] == []
    broken = json.loads(json.dumps(document))
    broken["components"]["messages"]["vehicle_control"]["headers"] = "sig-mac"
    assert list(validator.iter_errors(broken)), "the AsyncAPI schema must catch a bad message"


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda t: t.name)
def test_every_asyncapi_message_declares_its_headers_and_value(spec: TopicSpec) -> None:
    message = asyncapi()["components"]["messages"][spec.name.replace(".", "_")]
    assert message["headers"] == {"$ref": f"schemas/{headers_schema_name(spec)}"}
    assert (DOCS / message["headers"]["$ref"]).is_file()
    value = value_schema_name(spec)
    if value is None:
        assert message["payload"]["format"] == "binary"
    else:
        assert message["payload"] == {"$ref": f"schemas/{value}"}
        assert (DOCS / message["payload"]["$ref"]).is_file()


@pytest.mark.parametrize("spec", [t for t in TOPICS if t.value is not None], ids=lambda t: t.name)
def test_examples_as_encoded_validate_against_the_published_schemas(spec: TopicSpec) -> None:
    example = JSON_EXAMPLES[spec.name]()
    assert value_errors(published(f"{spec.name}.schema.json"), example.encode()) == []


def test_object_class_is_one_name_in_model_wire_schema_and_docs() -> None:
    for topic, schema_def in (("perception.objects", "DetectedObject"),
                              ("sim.ground_truth", "TrueObject")):
        wire = json.loads(JSON_EXAMPLES[topic]().encode())
        assert "object_class" in wire["objects"][0]
        assert "class" not in wire["objects"][0]
        part = published(f"{topic}.schema.json")["$defs"][schema_def]
        assert "object_class" in part["required"]
        assert "class" not in part["properties"]
    assert '"object_class": "car"' in (DOCS / "topics.md").read_text(encoding="utf-8")


def test_a_value_with_the_old_class_name_fails_the_schema() -> None:
    wire = json.loads(JSON_EXAMPLES["perception.objects"]().encode())
    wire["objects"][0]["class"] = wire["objects"][0].pop("object_class")
    errors = value_errors(published("perception.objects.schema.json"), json.dumps(wire).encode())
    assert any("'object_class' is a required property" in e for e in errors)


def test_frame_headers_as_sent_validate_and_a_wrong_one_is_named() -> None:
    schema = published("camera.frames.headers.schema.json")
    headers = frame_meta(seq=3).to_headers()
    assert header_errors(schema, headers) == []
    bad = [(k, b"36O" if k == "height" else v) for k, v in headers]
    assert any(e.startswith("height:") for e in header_errors(schema, bad))
    calibration = [(k, b'{"fx": 0, "fy": 1, "cx": 1, "cy": 1, "width": 2, "height": 2}'
                    if k == "calibration" else v) for k, v in headers]
    assert any("'calibration': fx:" in e for e in header_errors(schema, calibration))
    extra = [*headers, ("x-undocumented", b"1")]
    assert header_errors(schema, extra) == ["header 'x-undocumented' is not declared in the schema"]


def test_control_signature_headers_are_declared_as_sent() -> None:
    # As the command gate writes them (the live run checks the real ones).
    headers = [("content-type", b"application/json"), ("sig-key-id", b"example"),
               ("sig-epoch", b"1790000000000"), ("sig-counter", b"42"),
               ("sig-mac", bytes.hex(b"\x5a" * 32).encode())]
    schema = published("vehicle.control.headers.schema.json")
    assert header_errors(schema, headers) == []
    assert any(e.startswith("<root>:") and "'sig-mac'" in e
               for e in header_errors(schema, [h for h in headers if h[0] != "sig-mac"]))
    leading_zero = [(k, b"042" if k == "sig-counter" else v) for k, v in headers]
    assert any(e.startswith("sig-counter:") for e in header_errors(schema, leading_zero))


def _bounds(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node: dict[str, Any] = schema
    for part in path:
        node = node[part]
    return node


def test_published_schemas_carry_the_bounds() -> None:
    control = published("vehicle.control.schema.json")
    assert _bounds(control, "properties", "seq")["maximum"] == 2**63 - 1
    assert _bounds(control, "properties", "vehicle_id")["maxLength"] == 128
    frames = published("camera.frames.headers.schema.json")
    calibration = frames["$defs"]["Calibration"]["properties"]
    assert calibration["fx"]["exclusiveMinimum"] == 0
    assert calibration["pitch_rad"]["maximum"] == pytest.approx(3.14159265 / 2)
    assert calibration["yaw_rad"]["minimum"] == pytest.approx(-3.14159265)
    assert frames["properties"]["seq"]["maxLength"] == 19
    event = published("safety.events.schema.json")
    assert event["properties"]["details"]["propertyNames"] == {"maxLength": 128}


def test_json_examples_in_topics_md_validate_against_their_schemas() -> None:
    text = (DOCS / "topics.md").read_text(encoding="utf-8")
    # each example follows a line naming its topic: "`vehicle.control` (...):" or "`safety.events`:"
    blocks = re.findall(r"^`([a-z_.]+)`[^\n]*:\n\n```json\n(.*?)\n```", text, re.M | re.S)
    topics = [t for t, _ in blocks]
    assert {"vehicle.control", "safety.events", "perception.objects"} <= set(topics)
    for topic, block in blocks:
        assert value_errors(published(f"{topic}.schema.json"), block.encode()) == [], topic
