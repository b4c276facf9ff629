"""Consumer lag: per-topic sums and threshold crossings."""

from __future__ import annotations

from aiokafka import TopicPartition

from services.messages import Severity
from services.monitor.findings import CONSUMER_LAG_HIGH, CONSUMER_LAG_OK, CONSUMER_LAG_UNAVAILABLE
from services.monitor.lag import LagCheck, lag_per_topic


def test_lag_sums_partitions_with_commits_only() -> None:
    end = {TopicPartition("a", 0): 10, TopicPartition("a", 1): 5, TopicPartition("b", 0): 7}
    committed = {TopicPartition("a", 0): 4, TopicPartition("a", 1): 5, TopicPartition("b", 0): -1}
    assert lag_per_topic(committed, end) == {"a": 6}


def test_threshold_crossings_are_one_event_each() -> None:
    check = LagCheck(100)
    assert check.update({("g", "t"): 50}) == []
    high = check.update({("g", "t"): 150})
    assert [(f.type, f.severity) for f in high] == [(CONSUMER_LAG_HIGH, Severity.WARNING)]
    assert high[0].details == {"group": "g", "topic": "t", "lag_messages": 150,
                               "threshold_messages": 100}
    assert check.update({("g", "t"): 500}) == []
    assert [f.type for f in check.update({("g", "t"): 20})] == [CONSUMER_LAG_OK]


def test_a_lagging_group_that_stops_is_cleared() -> None:
    check = LagCheck(10)
    check.update({("g", "t"): 50})
    gone = check.update({})
    assert [(f.type, f.details["reason"]) for f in gone] == [(CONSUMER_LAG_OK, "group no longer active")]


def test_unavailable_is_reported_once_per_outage() -> None:
    check = LagCheck(10)
    first = check.unavailable(NotImplementedError("no OffsetFetch"))
    assert [(f.type, f.severity) for f in first] == [(CONSUMER_LAG_UNAVAILABLE, Severity.INFO)]
    assert first[0].details["error_class"] == "NotImplementedError"
    assert check.unavailable(NotImplementedError("again")) == []
    check.update({})
    assert len(check.unavailable(RuntimeError("down"))) == 1
