"""On the embedded broker, which refuses InitProducerId, producers fall back and still deliver."""

from __future__ import annotations

import pytest

from services.broker.producers import ProbingKafkaBroker, open_producer, probe_idempotence
from services.settings import Settings
from tests.echo_service import ECHO_OUT
from tests.kafka_helpers import collect

pytestmark = pytest.mark.integration


async def test_the_embedded_broker_is_found_not_to_grant_idempotence(kafka_bootstrap: str) -> None:
    verdict = await probe_idempotence(Settings(), kafka_bootstrap)
    assert verdict.idempotent is False
    assert "InitProducerId" in verdict.reason


async def test_an_opened_producer_delivers(kafka_bootstrap: str, unique: str) -> None:
    producer = await open_producer(Settings(), kafka_bootstrap, "test")
    key = f"ego-{unique}".encode()
    try:
        await producer.send_and_wait(ECHO_OUT.name, b"{}", key=key)
    finally:
        await producer.stop()
    got = await collect(kafka_bootstrap, ECHO_OUT.name, lambda r: r.key == key, 1)
    assert [r.value for r in got] == [b"{}"]


async def test_a_service_broker_delivers_after_the_fallback(kafka_bootstrap: str,
                                                            unique: str) -> None:
    broker = ProbingKafkaBroker(Settings(), kafka_bootstrap, "test", acks="all")
    key = f"ego-{unique}".encode()
    await broker.start()
    try:
        await broker.publish(b"{}", topic=ECHO_OUT.name, key=key)
    finally:
        await broker.stop()
    assert broker.verdict is not None
    assert broker.verdict.idempotent is False
    got = await collect(kafka_bootstrap, ECHO_OUT.name, lambda r: r.key == key, 1)
    assert [r.value for r in got] == [b"{}"]
