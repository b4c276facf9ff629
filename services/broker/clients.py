"""Kafka client options that work on Apache Kafka and on the embedded broker alike.

Producers use `acks="all"` and no transactional id. Idempotence is on where the cluster grants
it (Apache Kafka) and off where it does not (the embedded broker has no working
InitProducerId): `services.broker.producers` asks the cluster and passes the answer to
`producer_kwargs`. Delivery is at-least-once either way and consumers remove duplicates by ids;
idempotence only spares them the duplicates of producer retries.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from services.messages.registry import ALL_TOPICS, TopicSpec
from services.settings import Settings


class BrokerUnavailableError(RuntimeError):
    """The configured brokers did not answer within the bounded retry."""


def security_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka security arguments (PLAINTEXT, SSL, SASL_SSL with SCRAM) from the settings."""
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in {"SSL", "SASL_SSL"}:
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        if settings.ssl_certfile and settings.ssl_keyfile:
            context.load_cert_chain(str(settings.ssl_certfile), str(settings.ssl_keyfile))
        kwargs["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return kwargs


def producer_kwargs(settings: Settings, *, idempotent: bool = False) -> dict[str, Any]:
    """Producer options: acks=all, large messages (camera frames), idempotence as given.

    `idempotent` must come from the cluster (`services.broker.producers.probe_idempotence`):
    a producer with idempotence on does not start on a broker that refuses InitProducerId.
    """
    return {
        "acks": "all",
        "enable_idempotence": idempotent,
        "max_request_size": settings.max_message_bytes,
        "linger_ms": 0,
        "request_timeout_ms": 30_000,
    }


def consumer_kwargs(settings: Settings, *, watcher: bool = False) -> dict[str, Any]:
    """Consumer options: manual commits (after publishing), fetch sizes fit large frames.

    ``watcher``: a consumer off the control path (monitor, audit, recorder). Its fetches wait
    up to ``watch_fetch_wait_ms`` instead of ``fetch_wait_ms``. A broker that does not answer a
    waiting fetch early when data arrives (the embedded one) is otherwise polled every few ms
    by each such consumer — the monitor alone has one per topic — and answering those polls
    is what the embedded broker spends its time on (docs/benchmarks.md, closed loop).
    """
    return {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_bytes": max(settings.max_message_bytes * 2, 52_428_800),
        "max_partition_fetch_bytes": settings.max_message_bytes,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 3_000,
        # Low latency over batching on the control path: a frame must not wait in a fetch.
        "fetch_max_wait_ms": settings.watch_fetch_wait_ms if watcher else settings.fetch_wait_ms,
    }


def client_kwargs(settings: Settings, bootstrap: str, role: str) -> dict[str, Any]:
    """Connection arguments shared by every aiokafka client of one role."""
    return {
        "bootstrap_servers": bootstrap,
        "client_id": f"{settings.client_id}-{role}",
        **security_kwargs(settings),
    }


async def wait_for_brokers(settings: Settings, bootstrap: str, *, timeout_s: float | None = None,
                           ) -> None:
    """Return once the brokers answer a metadata request; BrokerUnavailableError after timeout.

    Retries with a short back-off instead of hanging on an address that never answers.
    """
    deadline = time.monotonic() + (timeout_s or settings.connect_timeout_s)
    last: Exception | None = None
    delay = 0.1
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**client_kwargs(settings, bootstrap, "probe"),
                                    request_timeout_ms=3_000)
        try:
            await asyncio.wait_for(admin.start(), timeout=max(0.5, deadline - time.monotonic()))
            await admin.close()
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            last = exc
            await _close_quietly(admin)
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)
    waited = timeout_s or settings.connect_timeout_s
    raise BrokerUnavailableError(
        f"Kafka at {bootstrap} did not answer within {waited:g} s "
        f"({type(last).__name__ if last else 'timeout'}: {last}). Check "
        "ROADSTREAM_BOOTSTRAP_SERVERS, the network and the security settings, or unset "
        "ROADSTREAM_BOOTSTRAP_SERVERS to use the embedded broker."
    )


async def _close_quietly(admin: AIOKafkaAdminClient) -> None:
    try:
        await admin.close()
    except Exception:
        return


def topic_configs(settings: Settings) -> dict[str, str]:
    """Per-topic configuration of the topics roadstream creates."""
    configs = {"max.message.bytes": str(settings.max_message_bytes)}
    if settings.topic_min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
    return configs


async def ensure_topics(settings: Settings, bootstrap: str,
                        topics: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[str]:
    """Create missing topics with the configured partitions; return the names created.

    Replication and (when set) `min.insync.replicas` come from the settings; existing topics
    are left as they are.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(settings, bootstrap, "admin"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(t.name, num_partitions=settings.topic_partitions,
                     replication_factor=settings.topic_replication,
                     topic_configs=topic_configs(settings))
            for t in topics if t.name not in existing
        ]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()

