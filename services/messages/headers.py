"""Kafka headers of every topic, as they are sent: each name and the JSON Schema of its value.

Header values are UTF-8 strings on the wire, numbers in canonical decimal (no sign, no leading
zero), so the schemas here describe strings. `header_schema` builds the JSON Schema of one
topic's header set; `roadstream docs` publishes it next to the value schemas.

Every header a roadstream producer writes is declared here; a consumer must ignore headers it
does not know (other clients and middleware may add their own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from services.messages.base import ID_MAX_CHARS, INT64_MAX, TEXT_MAX_CHARS
from services.messages.frames import CONTENT_TYPES, HEADER_FIELDS, OPTIONAL_HEADERS, FrameMeta

if TYPE_CHECKING:
    from services.messages.registry import TopicSpec

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
JSON_CONTENT_TYPE: Final = "application/json"


def decimal(description: str, *, minimum: int = 0, maximum: int = INT64_MAX) -> dict[str, Any]:
    """A non-negative integer written in canonical decimal, as `str(int)` writes it."""
    more = len(str(maximum)) - 1  # digits after the first
    digits = f"[1-9][0-9]{{0,{more}}}"
    pattern = f"^(0|{digits})$" if minimum == 0 else f"^{digits}$"
    return {"type": "string", "pattern": pattern, "maxLength": more + 1,
            "description": f"{description} Decimal integer in [{minimum}, {maximum}]."}


def text(description: str, *, min_length: int = 0, max_length: int = ID_MAX_CHARS
         ) -> dict[str, Any]:
    """A UTF-8 string of bounded length."""
    out: dict[str, Any] = {"type": "string", "maxLength": max_length, "description": description}
    if min_length:
        out["minLength"] = min_length
    return out


#: Headers of every roadstream message, JSON or not (the transport and tracing layer adds them).
COMMON_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "traceparent": {
        "type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        "description": "W3C trace context of the message; results carry their frame's trace id. "
                       "roadstream sends it on every message; other producers may omit it.",
    },
    "correlation_id": text("Message id written by the Kafka client library (FastStream); "
                           "carries no meaning for consumers and may be absent."),
}

#: The content type header of JSON values.
JSON_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "content-type": {"type": "string", "const": JSON_CONTENT_TYPE,
                     "description": "Media type of the value."},
}

#: Topic-specific headers that are not frame metadata (see the registry's `headers`).
TOPIC_HEADERS: Final[dict[str, dict[str, Any]]] = {
    # The signature of vehicle.control and safety.events; services/control/signing.py defines
    # its layout, each stream with a MAC domain of its own.
    "sig-key-id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$",
                   "description": "Id of the key that signed the message (keys rotate)."},
    "sig-epoch": decimal("The signer's start (the command gate's, the event source's service's); "
                         "grows with every start."),
    "sig-counter": decimal("Counter per epoch and stream (vehicle.control: per vehicle; "
                           "safety.events: per event source): 1, 2, 3, ..."),
    "sig-mac": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                "description": "HMAC-SHA256 of the stream's domain, key id, epoch, counter and "
                               "value, lowercase hex (docs/vehicle-client.md, docs/audit.md)."},
    "dlq-source-topic": text("Topic the rejected message was read from.", min_length=1),
    "dlq-source-partition": decimal("Its partition."),
    "dlq-source-offset": decimal("Its offset."),
    "dlq-error-class": text("Class of the error that rejected it.", min_length=1),
    "dlq-error-message": text("The error message.", max_length=TEXT_MAX_CHARS),
    "dlq-service": text("Service that rejected it.", min_length=1),
    "dlq-stamp-ns": decimal("When it was dead-lettered [ns since the Unix epoch]."),
    "dlq-truncated": {"type": "string", "const": "true",
                      "description": "Present on a copy cut to fit: the broker refused the whole "
                                     "message (only on such copies)."},
    "dlq-original-bytes": decimal("Size of the original value [bytes] (only on a cut copy)."),
    "dlq-produce-error": text("Why the whole copy was refused, `class: message` (only on a cut "
                              "copy).", max_length=TEXT_MAX_CHARS),
}


def frame_headers() -> dict[str, dict[str, Any]]:
    """The `camera.frames` headers, derived from FrameMeta's fields (one definition)."""
    fields = FrameMeta.model_json_schema(mode="serialization")["properties"]
    out: dict[str, dict[str, Any]] = {}
    for name, field in HEADER_FIELDS.items():
        prop = fields[field]
        doc = prop.get("description", prop.get("title", field))
        if name == "content-type":
            out[name] = {"type": "string", "enum": list(CONTENT_TYPES),
                         "description": "Media type of the value (the encoded image)."}
        elif name == "traceparent":
            out[name] = COMMON_HEADERS[name]
        elif name == "calibration":
            out[name] = {"type": "string", "contentMediaType": JSON_CONTENT_TYPE,
                         "contentSchema": {"$ref": "#/$defs/Calibration"},
                         "description": "The camera calibration as compact JSON."}
        elif prop.get("type") == "integer":
            low = 1 if "exclusiveMinimum" in prop else int(prop.get("minimum", 0))
            out[name] = decimal(doc, minimum=low, maximum=int(prop.get("maximum", INT64_MAX)))
        else:
            out[name] = text(doc, min_length=int(prop.get("minLength", 0)),
                             max_length=int(prop["maxLength"]))
    return out


def header_schema(spec: TopicSpec) -> dict[str, Any]:
    """JSON Schema 2020-12 of a topic's Kafka headers, as an object of header name → string.

    `required` lists the headers a roadstream producer always writes and a consumer may rely
    on; other headers are allowed (strings), so a consumer must ignore the ones it does not know.
    """
    required: list[str]
    defs: dict[str, Any] = {}
    if spec.header_model is not None:
        own = frame_headers()
        required = [h for h in own if h not in OPTIONAL_HEADERS]
        defs = FrameMeta.model_json_schema(mode="serialization")["$defs"]
        intro = ("Kafka headers of a camera frame: UTF-8 strings, numbers in decimal, the "
                 "calibration as JSON. The value is the encoded image.")
    elif spec.dead_letter:
        # imported here: the registry imports this module's neighbours first (a cycle)
        from services.messages.registry import DLQ_TRUNCATION_HEADERS

        own = {h: TOPIC_HEADERS[h] for h in (*spec.headers, *DLQ_TRUNCATION_HEADERS)}
        required = list(spec.headers)
        intro = ("Headers of a dead-lettered message: the original message's headers, unchanged, "
                 "plus these error headers. The value is the original bytes.")
    else:
        own = {**JSON_HEADERS, **{h: _topic_header(spec, h) for h in spec.headers}}
        required = list(own)
        own |= {h: _topic_header(spec, h) for h in spec.optional_headers}
        intro = f"Kafka headers of `{spec.name}` (UTF-8 strings). The value is JSON."
    properties = {**own, **{k: v for k, v in COMMON_HEADERS.items() if k not in own}}
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{spec.name} headers" if not spec.dead_letter else "dead-letter headers",
        "description": intro,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": {"type": "string"},
    }
    if defs:
        schema["$defs"] = defs
    return schema


def _topic_header(spec: TopicSpec, name: str) -> dict[str, Any]:
    try:
        return TOPIC_HEADERS[name]
    except KeyError:
        raise KeyError(f"header {name!r} of {spec.name} has no schema: describe it in "
                       "services/messages/headers.py TOPIC_HEADERS") from None
