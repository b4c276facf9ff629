"""Dead-lettering: a record a handler rejected goes to `<topic>.dlq`, with a safety event.

The dead letter carries the original bytes and key, the original headers, and the DLQ error
headers of the registry (`DLQ_HEADERS`: source topic, partition and offset, error class and
message, service, time). A `dead_letter` warning on `safety.events` references the source
record, and `roadstream_dead_letters_total` counts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker
from prometheus_client import Counter

from services.messages import DLQ_HEADERS, EventRefs, Payload, Severity, TopicSpec
from services.runtime.delivery import Record
from services.runtime.events import safety_event

log = logging.getLogger(__name__)

#: The error message is cut to this many characters in the headers and the event.
MAX_ERROR_CHARS = 1000


def dead_letter_headers(record: Record, error: BaseException, service: str) -> dict[str, str]:
    """The original headers plus the DLQ error headers (see the registry)."""
    message = str(error)[:MAX_ERROR_CHARS] or type(error).__name__
    values = (record.topic, str(record.partition), str(record.offset), type(error).__name__,
              message, service, str(time.time_ns()))
    headers = {k: v for k, v in record.header_map().items() if not k.startswith("dlq-")}
    headers.update(dict(zip(DLQ_HEADERS, values, strict=True)))
    return headers


class DeadLetters:
    """Sends rejected records of one service to their topic's DLQ.

    `emit` publishes a safety event (the runtime's, so the event is traced and acknowledged
    like any other publish); `counter` is `roadstream_dead_letters_total`.
    """

    def __init__(self, service: str, broker: KafkaBroker, counter: Counter,
                 emit: Callable[[Payload], Awaitable[None]], run_id: str = "") -> None:
        self.service = service
        self.run_id = run_id
        self._broker = broker
        self._counter = counter
        self._emit = emit

    async def send(self, spec: TopicSpec, record: Record, error: BaseException) -> None:
        """Send the original bytes to `<topic>.dlq` with error headers, and raise an event.

        Raises what publishing raises (a Kafka outage): the record is then not committed and
        is delivered again.
        """
        log.warning("%s: %s[%d]@%d dead-lettered: %s: %s", self.service, record.topic,
                    record.partition, record.offset, type(error).__name__, error)
        await self._broker.publish(record.value, topic=spec.dlq, key=record.key,
                                   headers=dead_letter_headers(record, error, self.service))
        self._counter.labels(self.service, spec.name, type(error).__name__).inc()
        await self._emit(safety_event(
            source=self.service, type_="dead_letter", severity=Severity.WARNING,
            vehicle_id=(record.key or b"").decode(errors="replace").split("/")[0],
            details={"error_class": type(error).__name__, "error": str(error)[:MAX_ERROR_CHARS],
                     "dlq_topic": spec.dlq},
            refs=EventRefs(topic=record.topic, partition=record.partition, offset=record.offset),
            run_id=self.run_id))
