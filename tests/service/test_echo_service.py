"""The service runtime with FastStream's TestKafkaBroker (no network): DLQ policy, aggregated
dead-letter events and publishing."""

from __future__ import annotations

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.messages import SafetyEvent, VehicleState
from services.messages.examples import vehicle_state
from services.settings import Settings
from tests.echo_service import ECHO_OUT, build_echo


@pytest.fixture
def runtime():  # type: ignore[no-untyped-def]
    return build_echo(Settings(), "localhost:9092")


async def test_valid_message_is_echoed(runtime) -> None:  # type: ignore[no-untyped-def]
    seen: list[VehicleState] = []

    @runtime.broker.subscriber(ECHO_OUT.name)
    async def out(msg: KafkaMessage) -> None:
        seen.append(VehicleState.decode(msg.body))

    async with TestKafkaBroker(runtime.broker) as br:
        await br.publish(vehicle_state().encode(), topic="vehicle.state", key=b"ego")
    assert seen == [vehicle_state()]


async def test_malformed_message_is_dead_lettered_with_headers(runtime) -> None:  # type: ignore[no-untyped-def]
    dlq: list[tuple[bytes, dict[str, str]]] = []
    events: list[SafetyEvent] = []

    @runtime.broker.subscriber("vehicle.state.dlq")
    async def on_dlq(msg: KafkaMessage) -> None:
        dlq.append((msg.body, dict(msg.headers)))

    @runtime.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    async with TestKafkaBroker(runtime.broker) as br:
        await br.publish(b"{broken", topic="vehicle.state", key=b"ego")
        await br.publish(vehicle_state().encode(), topic="vehicle.state", key=b"ego")
        await runtime.dead_letters.flush()  # what stop does: the open event window goes out

    assert len(dlq) == 1
    body, headers = dlq[0]
    assert body == b"{broken"
    assert headers["dlq-source-topic"] == "vehicle.state"
    assert headers["dlq-error-class"] == "MessageError"
    assert "Invalid JSON" in headers["dlq-error-message"]
    assert [e.type for e in events] == ["dead_letter"]
    assert events[0].details["count"] == 1
    assert events[0].references.topic == "vehicle.state"
    assert runtime.metrics.dead_letters.labels("echo", "vehicle.state", "MessageError")._value.get() == 1


async def test_fifty_bad_records_are_one_dead_letter_event_with_count_fifty(runtime) -> None:  # type: ignore[no-untyped-def]
    dlq: list[int] = []
    events: list[SafetyEvent] = []

    @runtime.broker.subscriber("vehicle.state.dlq")
    async def on_dlq(msg: KafkaMessage) -> None:
        dlq.append(int(msg.headers["dlq-source-offset"]))

    @runtime.broker.subscriber("safety.events")
    async def on_event(msg: KafkaMessage) -> None:
        events.append(SafetyEvent.decode(msg.body))

    async with TestKafkaBroker(runtime.broker) as br:
        for i in range(50):
            await br.publish(b"{broken %d" % i, topic="vehicle.state", key=b"ego")
        assert events == []  # within the window: gathered, not yet sent
        await runtime.dead_letters.flush()

    assert len(dlq) == 50  # every record has its dead letter
    [event] = events
    assert (event.type, event.source, event.vehicle_id) == ("dead_letter", "echo", "ego")
    assert event.details["count"] == 50
    assert event.details["error_class"] == "MessageError"
    # (the test broker numbers every record 0: the first and last offsets are checked by the
    # unit tests of the aggregation and on the embedded broker)
    assert "Invalid JSON" in event.details["error"]
    assert runtime.metrics.dead_letters.labels("echo", "vehicle.state", "MessageError")._value.get() == 50
