"""At-least-once delivery: the record a handler receives, and which failures are retried.

A handler receives a `Record` (topic, partition, offset, key, value, headers). If it raises,
the record is dead-lettered (`services.runtime.deadletter`) and its offset committed: one bad
message never stops a service. Only a failure to reach Kafka itself propagates, so the message
is not committed and is delivered again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

#: Exceptions that mean "Kafka is unreachable": retry the message instead of dead-lettering it.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (KafkaError, ConnectionError)


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


def is_infrastructure_error(error: BaseException) -> bool:
    """True for failures to reach Kafka (retry), False for bad input or bugs (dead-letter)."""
    return isinstance(error, INFRASTRUCTURE_ERRORS)
