"""Producers that are idempotent wherever the cluster grants it, found out by asking it.

Apache Kafka gives an idempotent producer an id (the InitProducerId request, API key 22) and
then drops the duplicates that the producer's own retries would otherwise write. The embedded
broker (Tansu) advertises that API but answers it with an error, and an aiokafka producer
with ``enable_idempotence=True`` then fails to start. So, before a producer starts, roadstream
sends one InitProducerId request itself: a granted producer id turns idempotence on, a refusal
or a broker without the API leaves it off (at-least-once, as the consumers expect anyway).
No setting chooses it; one configuration runs on both brokers. ``acks=all`` always.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiokafka
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import IncompatibleBrokerVersion, for_code
from aiokafka.protocol.transaction import InitProducerIdRequest
from faststream.kafka import KafkaBroker

from services.broker.clients import client_kwargs, producer_kwargs
from services.settings import Settings

log = logging.getLogger(__name__)

#: Transaction timeout sent with the probe [ms]; brokers ignore it without a transactional id.
_PROBE_TXN_TIMEOUT_MS = 60_000
_RETRY_S = 0.2  # between asks while the cluster answers "try again" (e.g. loading)


@dataclass(frozen=True)
class IdempotenceVerdict:
    """Whether producers on one cluster run idempotent, and why (for the log)."""

    idempotent: bool
    reason: str


def verdict_for(error_code: int | None) -> IdempotenceVerdict | None:
    """The decision from the cluster's answer to InitProducerId (no transactional id).

    ``error_code`` None: the broker does not offer the request at all (not in its
    ApiVersions, or only in versions this client cannot speak). 0 grants a producer id:
    idempotent. A retriable error (a KRaft broker still fetching its block of producer ids
    answers COORDINATOR_LOAD_IN_PROGRESS) returns None: ask again. Any other error, e.g. the
    embedded broker's UNKNOWN_SERVER_ERROR or CLUSTER_AUTHORIZATION_FAILED where the
    principal lacks IdempotentWrite, means not idempotent.
    """
    if error_code is None:
        return IdempotenceVerdict(False, "the broker does not offer InitProducerId (API key 22)")
    if error_code == 0:
        return IdempotenceVerdict(True, "the cluster granted a producer id")
    error = for_code(error_code)
    if error.retriable:
        return None
    return IdempotenceVerdict(False, f"InitProducerId answered {error.__name__} "
                                     f"(error code {error_code})")


async def _ask(client: AIOKafkaClient) -> int | None:
    try:
        response = await client.send(client.get_random_node(),
                                     InitProducerIdRequest(None, _PROBE_TXN_TIMEOUT_MS))
    except (IncompatibleBrokerVersion, NotImplementedError):
        # not advertised, or only in versions aiokafka's own producer could not use either
        return None
    return int(response.error_code)


async def probe_idempotence(settings: Settings, bootstrap: str, *,
                            timeout_s: float | None = None) -> IdempotenceVerdict:
    """Ask the cluster at ``bootstrap`` whether it grants idempotent producers.

    Connection failures propagate (a producer could not start either). A cluster that keeps
    answering a retriable error for ``timeout_s`` (default ``connect_timeout_s``) gets a
    non-idempotent producer rather than a start-up that never ends.
    """
    wait_s = timeout_s if timeout_s is not None else settings.connect_timeout_s
    deadline = time.monotonic() + wait_s
    client = AIOKafkaClient(**client_kwargs(settings, bootstrap, "probe"),
                            request_timeout_ms=max(1_000, round(wait_s * 1000)))
    try:
        await asyncio.wait_for(client.bootstrap(), wait_s)
        while True:
            code = await asyncio.wait_for(_ask(client), max(0.1, deadline - time.monotonic()))
            verdict = verdict_for(code)
            if verdict is not None:
                return verdict
            if time.monotonic() + _RETRY_S > deadline:
                name = for_code(code or 0).__name__
                return IdempotenceVerdict(False, f"InitProducerId still answered {name} "
                                                 f"after {wait_s:g} s")
            await asyncio.sleep(_RETRY_S)
    finally:
        await client.close()


def _logged(verdict: IdempotenceVerdict, bootstrap: str, role: str) -> IdempotenceVerdict:
    log.info("%s producer on %s: idempotence %s (%s)", role, bootstrap,
             "on" if verdict.idempotent else "off", verdict.reason)
    return verdict


async def open_producer(settings: Settings, bootstrap: str, role: str) -> AIOKafkaProducer:
    """A started producer with the shared options, idempotent where the cluster grants it."""
    verdict = _logged(await probe_idempotence(settings, bootstrap), bootstrap, role)
    producer = AIOKafkaProducer(**client_kwargs(settings, bootstrap, role),
                                **producer_kwargs(settings, idempotent=verdict.idempotent))
    await producer.start()
    return producer


class ProbingKafkaBroker(KafkaBroker):
    """A FastStream KafkaBroker whose producer is idempotent where the cluster grants it.

    The probe runs when the broker connects (``start``), not when it is built: services are
    built before any broker is reachable, and FastStream's test broker never connects.
    ``verdict`` holds the decision once connected.
    """

    def __init__(self, settings: Settings, bootstrap: str, role: str, **kwargs: Any) -> None:
        super().__init__(bootstrap, **kwargs)
        self._probe_settings = settings
        self._bootstrap = bootstrap
        self._role = role
        self.verdict: IdempotenceVerdict | None = None

    async def _connect(self) -> Callable[..., aiokafka.AIOKafkaConsumer]:
        if self.verdict is None:
            self.verdict = _logged(await probe_idempotence(self._probe_settings, self._bootstrap),
                                   self._bootstrap, self._role)
        # FastStream builds its producer (and consumers) from these arguments on connect.
        self._connection_kwargs["enable_idempotence"] = self.verdict.idempotent
        self._connection_kwargs["acks"] = "all"
        return await super()._connect()
