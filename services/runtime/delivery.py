"""At-least-once delivery: the record a handler receives, and which failures are retried.

A handler receives a `Record` (topic, partition, offset, key, value, headers). If it raises,
the record is dead-lettered (`services.runtime.deadletter`) and its offset committed: one bad
message never stops a service. Kafka failures fall in two kinds:

- record-level (`is_record_error`): this one record can never be written as it is (too large,
  invalid, corrupt). It is poison, not an outage: it is dead-lettered (a truncated copy when
  even its dead letter is refused) and its offset moves on;
- everything else Kafka raises (`is_infrastructure_error`): the brokers are unreachable or
  refuse for a reason that is not the record's (a connection lost, a leader moving, a request
  timing out, an authorisation missing). The record is not committed and is delivered again,
  after a bounded exponential `Backoff`, so an outage is waited out instead of spun on.
  Retrying the non-connection cluster refusals too (rather than dead-lettering) keeps a
  misconfigured cluster from turning every record into a dead letter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

#: Produce errors about one record (too large, invalid or corrupt): poison, never retried.
RECORD_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,  # over max_request_size (client) or the broker's message.max.bytes
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidMessageError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)
#: Exceptions that mean "Kafka cannot take anything now": retry the message, do not dead-letter.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (KafkaError, ConnectionError)

#: First wait before a record is retried after a Kafka failure [s]; it doubles per failure.
BACKOFF_INITIAL_S = 0.1


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


def is_record_error(error: BaseException) -> bool:
    """True for a produce error about the record itself (poison: never retried)."""
    return isinstance(error, RECORD_ERRORS)


def is_infrastructure_error(error: BaseException) -> bool:
    """True for failures to reach Kafka (retry), False for bad input, poison or bugs
    (dead-letter)."""
    return isinstance(error, INFRASTRUCTURE_ERRORS) and not is_record_error(error)


class Backoff:
    """Bounded exponential backoff: `initial_s`, doubling per failure, never above `max_s`.

    One per subscription: a failure waits `next_delay_s()` before the record is delivered
    again; a success (`reset`) starts the next outage from `initial_s`.
    """

    def __init__(self, max_s: float, initial_s: float = BACKOFF_INITIAL_S) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0

    def next_delay_s(self) -> float:
        """The wait after one more failure [s]."""
        self.failures += 1
        # the exponent is capped too: 2**failures overflows a float after ~1000 failures
        return min(self.max_s, self.initial_s * 2.0 ** min(self.failures - 1, 64))

    def reset(self) -> None:
        """A success: the next failure waits `initial_s` again."""
        self.failures = 0

    async def wait(self) -> float:
        """Sleep the next delay; returns it [s]."""
        delay = self.next_delay_s()
        await asyncio.sleep(delay)
        return delay
