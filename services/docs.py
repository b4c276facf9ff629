"""`roadstream docs`: JSON Schema per payload and an AsyncAPI document, generated from the code.

The output is deterministic (sorted keys, no timestamps) so the committed copy can be
checked for staleness by a test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.messages import ALL_TOPICS, TOPICS, FrameMeta, TopicSpec
from services.messages.examples import JSON_EXAMPLES, frame_meta

ASYNCAPI_VERSION = "3.0.0"
PACKAGE_VERSION = "0.1.0"


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_name(spec: TopicSpec) -> str:
    """File name (without folder) of a topic's value schema."""
    if spec.dead_letter:
        return "dead-letter.headers.schema.json"
    if spec.header_model is not None:
        return f"{spec.name}.headers.schema.json"
    return f"{spec.name}.schema.json"


def _dlq_headers_schema() -> dict[str, Any]:
    from services.messages import DLQ_HEADERS

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "DeadLetterHeaders",
        "description": "Headers added to the original message's headers in `<topic>.dlq`; "
                       "the value is the original bytes.",
        "type": "object",
        "properties": {h: {"type": "string"} for h in DLQ_HEADERS},
        "required": list(DLQ_HEADERS),
    }


def schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for every topic."""
    out: dict[str, dict[str, Any]] = {}
    for spec in TOPICS:
        if spec.value is not None:
            schema = spec.value.model_json_schema(by_alias=True, mode="serialization")
            schema["examples"] = [json.loads(JSON_EXAMPLES[spec.name]().encode())]
        else:
            schema = FrameMeta.model_json_schema(mode="serialization")
            schema["description"] = ("Kafka headers of a camera frame (UTF-8 strings; the "
                                     "calibration is JSON). The value is the encoded image.")
            schema["examples"] = [{k: v.decode() for k, v in frame_meta().to_headers()}]
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["x-topic"] = spec.name
        schema["x-schema-version"] = spec.schema_version
        out[schema_name(spec)] = schema
    out["dead-letter.headers.schema.json"] = _dlq_headers_schema()
    return out


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.0 document of every topic in the registry."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in ALL_TOPICS:
        msg_id = spec.name.replace(".", "_")
        message: dict[str, Any] = {
            "name": msg_id,
            "title": spec.name,
            "summary": spec.description,
            "contentType": spec.content_types[0],
            "bindings": {"kafka": {"key": {"type": "string", "description": spec.key}}},
            "x-schema-version": spec.schema_version,
            "x-expected-rate-hz": spec.rate_hz,
        }
        ref = f"schemas/{schema_name(spec)}"
        if spec.value is not None:
            message["payload"] = {"$ref": ref}
        else:
            message["payload"] = {"type": "string", "format": "binary",
                                  "description": "Raw bytes: " + ", ".join(spec.content_types)}
            message["headers"] = {"$ref": ref}
        messages[msg_id] = message
        channels[msg_id] = {
            "address": spec.name,
            "description": f"{spec.description} Producers: {', '.join(spec.producers)}. "
                           f"Consumers: {', '.join(spec.consumers)}.",
            "messages": {msg_id: {"$ref": f"#/components/messages/{msg_id}"}},
        }
        operations[f"receive_{msg_id}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{msg_id}"},
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "roadstream topics", "version": PACKAGE_VERSION,
                 "description": "Kafka topics of roadstream. Keys and header values are "
                                "UTF-8 strings; JSON values carry `schema_version`."},
        "defaultContentType": "application/json",
        "servers": {"embedded": {"host": "127.0.0.1:<port>", "protocol": "kafka",
                                 "description": "roadstream's embedded broker"},
                    "production": {"host": "kafka:9092", "protocol": "kafka",
                                   "description": "Apache Kafka (compose.yaml)"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render_docs() -> dict[str, str]:
    """Relative path under docs/ → file text."""
    files = {f"schemas/{name}": _dump(schema) for name, schema in sorted(schemas().items())}
    files["asyncapi.json"] = _dump(asyncapi())
    return files


def write_docs(out_dir: Path) -> list[Path]:
    """Write the generated docs; return the paths written."""
    written = []
    for rel, text in render_docs().items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
