"""Dead letters: poison records get a truncated copy or are skipped, never retried forever;
their safety events are aggregated per source, error class and window (injected clock)."""

from __future__ import annotations

import pytest
from aiokafka.errors import CorruptRecordException, KafkaConnectionError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from services.messages import VEHICLE_STATE, MessageError, Payload, SafetyEvent
from services.runtime.deadletter import (
    PUBLISH_OVERHEAD_BYTES,
    SMALL_COPY_BYTES,
    DeadLetters,
    record_size,
)
from services.runtime.deadletter_events import DEAD_LETTER, RECORD_SKIPPED, DeadLetterEvents
from services.runtime.delivery import Record
from services.runtime.metrics import ServiceMetrics

LIMIT = 1 << 20  # the service's max_message_bytes


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class Sink:
    """Collects emitted events; fails while `down` (Kafka unreachable)."""

    def __init__(self) -> None:
        self.events: list[SafetyEvent] = []
        self.down = False

    async def __call__(self, event: Payload) -> None:
        if self.down:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]")
        assert isinstance(event, SafetyEvent)
        self.events.append(SafetyEvent.decode(event.encode()))  # valid on the wire


class Broker:
    """Publishes like the producer: refuses a record over `limit` bytes (aiokafka's check)."""

    def __init__(self, limit: int = LIMIT, refuse: Exception | None = None) -> None:
        self.limit = limit
        self.refuse = refuse
        self.sent: list[tuple[bytes, str, bytes | None, dict[str, str]]] = []

    async def publish(self, value: bytes, topic: str, key: bytes | None,
                      headers: dict[str, str]) -> None:
        if self.refuse is not None:
            raise self.refuse
        size = record_size(key, value, headers) + PUBLISH_OVERHEAD_BYTES // 2  # the client's own
        if size > self.limit:
            raise MessageSizeTooLargeError(f"The message is {size} bytes when serialized")
        self.sent.append((value, topic, key, headers))


def record(offset: int, value: bytes = b"{broken", key: bytes = b"ego/front",
           partition: int = 0) -> Record:
    return Record(topic="vehicle.state", partition=partition, offset=offset, key=key,
                  value=value, headers=(("origin", b"test"),))


def letters(broker: Broker, sink: Sink) -> tuple[DeadLetters, ServiceMetrics]:
    metrics = ServiceMetrics(CollectorRegistry(), "echo")
    return DeadLetters("echo", broker.publish, metrics.dead_letters, sink, "run-1",
                       max_message_bytes=LIMIT, skipped=metrics.skipped), metrics


# --- aggregation

async def test_fifty_rejections_in_one_window_are_one_event_with_their_count() -> None:
    clock, sink = Clock(), Sink()
    events = DeadLetterEvents("echo", sink, window_s=10.0, run_id="run-1", clock=clock)
    for i in range(50):
        events.add(DEAD_LETTER, record(100 + i), MessageError(f"Invalid JSON at {i}"),
                   dlq_topic="vehicle.state.dlq")
        clock.now_s += 0.1
    assert await events.flush() == 0  # the window (opened at 100 s) is still open at 105 s
    clock.now_s = 110.0
    assert await events.flush() == 1
    [event] = sink.events
    assert (event.type, event.source, event.severity.value) == ("dead_letter", "echo", "warning")
    assert event.details["count"] == 50
    assert event.details["first"] == {"partition": 0, "offset": 100}
    assert event.details["last"] == {"partition": 0, "offset": 149}
    assert event.details["error"] == "Invalid JSON at 0"  # the example: the first one's
    assert event.details["error_class"] == "MessageError"
    assert event.references.offset == 100
    assert event.vehicle_id == "ego"
    assert event.run_id == "run-1"
    assert events.pending == 0


async def test_each_error_class_and_each_window_has_its_own_event() -> None:
    clock, sink = Clock(), Sink()
    events = DeadLetterEvents("echo", sink, window_s=10.0, clock=clock)
    events.add(DEAD_LETTER, record(1), MessageError("a"), dlq_topic="vehicle.state.dlq")
    events.add(DEAD_LETTER, record(2, key=b"other"), ValueError("b"),
               dlq_topic="vehicle.state.dlq")
    events.add(RECORD_SKIPPED, record(3), MessageError("c"), dlq_topic="vehicle.state.dlq",
               produce_error=MessageSizeTooLargeError("too big"))
    clock.now_s += 10
    events.add(DEAD_LETTER, record(4), MessageError("d"), dlq_topic="vehicle.state.dlq")
    assert await events.flush() == 3  # the fourth opened a new window, not yet ended
    by_key = {(e.type, e.details["error_class"]): e for e in sink.events}
    assert set(by_key) == {("dead_letter", "MessageError"), ("dead_letter", "ValueError"),
                           ("record_skipped", "MessageError")}
    assert all(e.details["count"] == 1 for e in sink.events)
    assert "too big" in by_key[("record_skipped", "MessageError")].details["produce_error"]
    assert await events.flush(everything=True) == 1  # at stop: the open window goes too
    assert sink.events[-1].references.offset == 4


async def test_records_of_several_vehicles_name_none_and_count_them() -> None:
    clock, sink = Clock(), Sink()
    events = DeadLetterEvents("echo", sink, clock=clock)
    for i, key in enumerate((b"ego-1/front", b"ego-2/front", b"ego-1/rear")):
        events.add(DEAD_LETTER, record(i, key=key), MessageError("x"),
                   dlq_topic="vehicle.state.dlq")
    await events.flush(everything=True)
    [event] = sink.events
    assert event.vehicle_id == ""
    assert event.details["vehicles"] == 2


async def test_windows_wait_through_an_outage_and_go_out_after_it() -> None:
    clock, sink = Clock(), Sink()
    events = DeadLetterEvents("echo", sink, window_s=10.0, clock=clock)
    events.add(DEAD_LETTER, record(1), MessageError("x"), dlq_topic="vehicle.state.dlq")
    clock.now_s += 11
    sink.down = True
    with pytest.raises(KafkaConnectionError):
        await events.flush()
    assert events.pending == 1
    sink.down = False
    assert await events.flush() == 1
    assert sink.events[0].details["count"] == 1


def test_a_window_must_have_a_length() -> None:
    with pytest.raises(ValueError, match="window_s"):
        DeadLetterEvents("echo", Sink(), window_s=0)


# --- poison is not an outage

async def test_a_record_that_fits_is_dead_lettered_whole() -> None:
    broker, sink = Broker(), Sink()
    dead, metrics = letters(broker, sink)
    await dead.send(VEHICLE_STATE, record(7), MessageError("Invalid JSON"))
    [(value, topic, key, headers)] = broker.sent
    assert (value, topic, key) == (b"{broken", "vehicle.state.dlq", b"ego/front")
    assert headers["dlq-source-offset"] == "7"
    assert headers["origin"] == "test"
    assert "dlq-truncated" not in headers
    await dead.flush()
    assert sink.events[0].details["truncated"] == 0
    assert metrics.dead_letters.labels("echo", "vehicle.state", "MessageError")._value.get() == 1


async def test_a_dead_letter_too_large_for_kafka_goes_as_a_truncated_copy() -> None:
    broker, sink = Broker(), Sink()
    dead, metrics = letters(broker, sink)
    big = bytes(range(256)) * (10 << 12)  # 10 MiB
    await dead.send(VEHICLE_STATE, record(7, value=big), MessageError("Invalid JSON"))
    [(value, topic, _, headers)] = broker.sent
    assert topic == "vehicle.state.dlq"
    assert big.startswith(value)
    assert LIMIT // 2 < len(value) < LIMIT  # as much as fits
    assert headers["dlq-truncated"] == "true"
    assert headers["dlq-original-bytes"] == str(len(big))
    assert headers["dlq-produce-error"].startswith("MessageSizeTooLargeError")
    assert headers["dlq-error-class"] == "MessageError"  # why it was rejected, as before
    assert headers["origin"] == "test"
    await dead.flush()
    [event] = sink.events
    assert (event.type, event.details["truncated"], event.details["count"]) == (
        "dead_letter", 1, 1)
    assert metrics.dead_letters.labels("echo", "vehicle.state", "MessageError")._value.get() == 1


async def test_a_broker_with_a_lower_limit_gets_the_small_copy_without_original_headers(
        ) -> None:
    broker, sink = Broker(limit=SMALL_COPY_BYTES + PUBLISH_OVERHEAD_BYTES * 2), Sink()
    dead, _ = letters(broker, sink)
    big = b"x" * (3 << 20)
    await dead.send(VEHICLE_STATE, record(7, value=big), MessageError("Invalid JSON"))
    [(value, _, _, headers)] = broker.sent
    assert value == big[:SMALL_COPY_BYTES]
    assert "origin" not in headers
    assert headers["dlq-source-offset"] == "7"
    assert headers["dlq-original-bytes"] == str(len(big))


async def test_a_record_nothing_of_which_can_be_written_is_skipped_with_an_event() -> None:
    broker, sink = Broker(refuse=CorruptRecordException()), Sink()
    dead, metrics = letters(broker, sink)
    for offset in (7, 8):
        await dead.send(VEHICLE_STATE, record(offset), MessageError("Invalid JSON"))
    assert broker.sent == []
    await dead.flush()
    [event] = sink.events
    assert event.type == "record_skipped"
    assert event.details["count"] == 2
    assert event.details["produce_error"].startswith("CorruptRecordException")
    assert metrics.skipped.labels("echo", "vehicle.state", "MessageError")._value.get() == 2
    assert metrics.dead_letters.labels("echo", "vehicle.state", "MessageError")._value.get() == 0


async def test_an_outage_while_dead_lettering_propagates_and_counts_nothing() -> None:
    broker, sink = Broker(refuse=KafkaConnectionError("Unable to bootstrap")), Sink()
    dead, metrics = letters(broker, sink)
    with pytest.raises(KafkaConnectionError):
        await dead.send(VEHICLE_STATE, record(7), MessageError("Invalid JSON"))
    assert dead.events.pending == 0
    assert metrics.dead_letters.labels("echo", "vehicle.state", "MessageError")._value.get() == 0
