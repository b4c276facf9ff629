"""At-least-once delivery and dead letters.

A handler receives a `Record` (topic, partition, offset, key, value, headers). If it raises,
the original bytes go to `<topic>.dlq` with error headers, a `safety.events` entry is raised,
and the offset is committed: one bad message never stops a service. Only a failure to reach
Kafka itself propagates, so the message is not committed and is delivered again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from services.messages import DLQ_HEADERS

#: Exceptions that mean "Kafka is unreachable": retry the message instead of dead-lettering it.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (KafkaError, ConnectionError)
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class Record:
    """One consumed Kafka message, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """The first header of that name as text, or None."""
        for k, v in self.headers:
            if k == name:
                return v.decode(errors="replace")
        return None

    def header_map(self) -> dict[str, str]:
        """Headers as a str→str mapping (last one wins)."""
        return {k: v.decode(errors="replace") for k, v in self.headers}

    @classmethod
    def from_raw(cls, raw: object) -> Record:
        """From an aiokafka ConsumerRecord (or FastStream's test double of one)."""
        headers = tuple((str(k), bytes(v or b"")) for k, v in (getattr(raw, "headers", None) or ()))
        value = getattr(raw, "value", b"") or b""
        return cls(topic=str(getattr(raw, "topic", "")), partition=int(getattr(raw, "partition", 0)),
                   offset=int(getattr(raw, "offset", 0)), key=getattr(raw, "key", None),
                   value=bytes(value), headers=headers,
                   timestamp_ms=int(getattr(raw, "timestamp", 0) or 0))


def dead_letter_headers(record: Record, error: BaseException, service: str) -> dict[str, str]:
    """The original headers plus the DLQ error headers (see the registry)."""
    message = str(error)[:MAX_ERROR_CHARS] or type(error).__name__
    values = (record.topic, str(record.partition), str(record.offset), type(error).__name__,
              message, service, str(time.time_ns()))
    headers = {k: v for k, v in record.header_map().items() if not k.startswith("dlq-")}
    headers.update(dict(zip(DLQ_HEADERS, values, strict=True)))
    return headers


def is_infrastructure_error(error: BaseException) -> bool:
    """True for failures to reach Kafka (retry), False for bad input or bugs (dead-letter)."""
    return isinstance(error, INFRASTRUCTURE_ERRORS)


def headers_list(headers: Mapping[str, str] | Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Normalise headers to Kafka's list of (name, bytes)."""
    if isinstance(headers, Mapping):
        return [(k, v.encode()) for k, v in headers.items()]
    return [(k, v) for k, v in headers]
