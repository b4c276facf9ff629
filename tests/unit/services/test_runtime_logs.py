"""Rate-limited logging: one line per kind and interval, with the count of those held back."""

from __future__ import annotations

import logging

import pytest

from services.runtime.logs import (
    RateLimitedLog,
    RateLimiter,
    RateLimitFilter,
    kafka_client_loggers,
    rate_limit_loggers,
)


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_one_per_key_and_interval_and_the_next_tells_how_many_were_held() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, clock)
    assert limiter.allow("KafkaConnectionError") == 0
    assert [limiter.allow("KafkaConnectionError") for _ in range(70)] == [None] * 70
    assert limiter.allow("MessageSizeTooLargeError") == 0  # another kind has its own line
    clock.now_s = 10.0
    assert limiter.allow("KafkaConnectionError") == 70


def test_our_own_lines_carry_the_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    out = RateLimitedLog(logging.getLogger("test.ratelimited"), 10.0, clock)
    with caplog.at_level(logging.WARNING, "test.ratelimited"):
        for i in range(30):
            out.log(logging.WARNING, "outage", "retrying record %d", i)
            clock.now_s += 1.0
    assert [r.getMessage() for r in caplog.records] == [
        "retrying record 0",
        "retrying record 10 (9 more like this in the last 10 s not logged)",
        "retrying record 20 (9 more like this in the last 10 s not logged)"]


def test_a_librarys_flood_is_filtered_by_template_and_info_passes(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("test.flood")
    limit = RateLimitFilter(5.0, clock=clock)
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.INFO, "test.flood"):
            for attempt in range(70):  # a second of aiokafka reconnect attempts
                logger.error("Unable connect to node with id %s: %s", 1, f"attempt {attempt}")
                logger.info("fetched %d", attempt)
            clock.now_s = 5.0
            logger.error("Unable connect to node with id %s: %s", 1, "attempt 70")
    finally:
        logger.removeFilter(limit)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["Unable connect to node with id 1: attempt 0",
                      "Unable connect to node with id 1: attempt 70 (69 more like this in the "
                      "last 5 s not logged)"]
    assert sum(r.levelno == logging.INFO for r in caplog.records) == 70


def test_the_kafka_client_loggers_get_one_filter_each() -> None:
    import aiokafka  # noqa: F401  (its modules create their loggers on import)

    names = kafka_client_loggers()
    assert "aiokafka.conn" in names
    rate_limit_loggers(names)
    rate_limit_loggers(names)  # again: nothing added
    filters = logging.getLogger("aiokafka.conn").filters
    assert sum(isinstance(f, RateLimitFilter) for f in filters) == 1


def test_hostile_traceparents_do_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """A producer can put an oversized traceparent on every frame: our extraction refuses it
    without a word, and OpenTelemetry's own warning (FastStream's consumer-side extraction) is
    rate-limited on every service runtime."""
    from services.runtime.service import ServiceRuntime
    from services.runtime.tracing import PROPAGATION_LOGGER, context_from
    from services.settings import Settings

    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            assert not context_from("00-" + "a" * 10_000)
    assert not caplog.records
    ServiceRuntime("perception", Settings(), "127.0.0.1:9092")
    filters = logging.getLogger(PROPAGATION_LOGGER).filters
    assert sum(isinstance(f, RateLimitFilter) for f in filters) == 1
