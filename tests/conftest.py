"""Shared fixtures: one embedded broker (a real Kafka-protocol server) per test session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from services.broker.clients import ensure_topics
from services.broker.embedded import EmbeddedBroker
from services.messages import ALL_TOPICS
from services.settings import Settings
from tests.echo_service import ECHO_OUT


def _broker() -> Iterator[str]:
    broker = EmbeddedBroker()
    broker.start()
    settings = Settings()

    async def ready() -> None:
        await broker.wait_ready(settings)
        await ensure_topics(settings, broker.bootstrap, (*ALL_TOPICS, ECHO_OUT))

    try:
        asyncio.run(ready())
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of an embedded broker with every registry topic created."""
    yield from _broker()


@pytest.fixture
def own_kafka_bootstrap() -> Iterator[str]:
    """An embedded broker of the test's own, for a test whose subject starts reading at the
    topics' end: the embedded broker's ListOffsets counts a batch of several records as one
    (docs/kafka.md), so on the shared broker the "end" can lie inside another test's tail."""
    yield from _broker()


@pytest.fixture
def unique() -> str:
    """A unique id for a test's run id, keys and consumer groups."""
    return uuid.uuid4().hex[:12]
