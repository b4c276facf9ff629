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


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of an embedded broker with every registry topic created."""
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


@pytest.fixture
def unique() -> str:
    """A unique id for a test's run id, keys and consumer groups."""
    return uuid.uuid4().hex[:12]
