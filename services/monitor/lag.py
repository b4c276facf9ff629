"""Consumer lag: committed offsets of every active consumer group against the end offsets.

`LagCheck` is pure: given lags per (group, topic) it reports each crossing of the threshold
(`consumer_lag_high` warning, `consumer_lag_ok` info) and, once per outage, that lag cannot be
read (`consumer_lag_unavailable` info). `LagProbe` reads the lags with aiokafka: ListGroups,
DescribeGroups (only groups with members count: an abandoned group's lag is no one's problem),
OffsetFetch for explicit partitions (the embedded broker does not answer an OffsetFetch for
"all partitions") and the end offsets (ListOffsets) through an unsubscribed consumer.

On the embedded broker a group whose consumers left still reads as "Stable" with its member,
so there abandoned groups are reported too (their lag grows as the topic does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.broker.clients import client_kwargs
from services.messages import Severity
from services.monitor.findings import (
    CONSUMER_LAG_HIGH,
    CONSUMER_LAG_OK,
    CONSUMER_LAG_UNAVAILABLE,
    Finding,
)
from services.settings import Settings

GroupTopic = tuple[str, str]
#: Group states with members; "Empty" and "Dead" groups are not consuming.
ACTIVE_STATES = frozenset({"Stable", "PreparingRebalance", "CompletingRebalance"})


class LagCheck:
    """Threshold crossings of consumer lag, and one notice while lag cannot be read."""

    def __init__(self, threshold_messages: int) -> None:
        self._threshold = threshold_messages
        self._high: set[GroupTopic] = set()
        self._unavailable = False

    def update(self, lags: Mapping[GroupTopic, int]) -> list[Finding]:
        """Findings for (group, topic) pairs that crossed the threshold since the last update."""
        self._unavailable = False
        out: list[Finding] = []
        for (group, topic), lag in sorted(lags.items()):
            details = {"group": group, "topic": topic, "lag_messages": lag,
                       "threshold_messages": self._threshold}
            if lag > self._threshold and (group, topic) not in self._high:
                self._high.add((group, topic))
                out.append(Finding(CONSUMER_LAG_HIGH, Severity.WARNING, details=details))
            elif lag <= self._threshold and (group, topic) in self._high:
                self._high.discard((group, topic))
                out.append(Finding(CONSUMER_LAG_OK, Severity.INFO, details=details))
        # A group that stopped consuming (or vanished) is no longer lagging.
        for pair in sorted(self._high - set(lags)):
            self._high.discard(pair)
            out.append(Finding(CONSUMER_LAG_OK, Severity.INFO, details={
                "group": pair[0], "topic": pair[1], "lag_messages": None,
                "threshold_messages": self._threshold, "reason": "group no longer active"}))
        return out

    def unavailable(self, error: BaseException) -> list[Finding]:
        """One finding per outage of the lag probe (the broker may lack the admin APIs)."""
        if self._unavailable:
            return []
        self._unavailable = True
        return [Finding(CONSUMER_LAG_UNAVAILABLE, Severity.INFO, details={
            "error_class": type(error).__name__, "error": str(error)[:500],
            "effect": "consumer lag is not measured until the probe succeeds again"})]


def lag_per_topic(committed: Mapping[TopicPartition, int],
                  end: Mapping[TopicPartition, int]) -> dict[str, int]:
    """Sum of (end − committed) per topic over the partitions with a commit (offset ≥ 0)."""
    out: dict[str, int] = {}
    for tp, offset in committed.items():
        if offset < 0 or tp not in end:
            continue
        out[tp.topic] = out.get(tp.topic, 0) + max(0, end[tp] - offset)
    return out


class LagProbe:
    """Reads the lag of every active group on the given topics (start / fetch / close)."""

    def __init__(self, settings: Settings, bootstrap: str, topics: Iterable[str]) -> None:
        self._topics = tuple(topics)
        kwargs = client_kwargs(settings, bootstrap, "monitor-lag")
        self._admin = AIOKafkaAdminClient(**kwargs, request_timeout_ms=5_000)
        self._consumer = AIOKafkaConsumer(**kwargs, group_id=None, enable_auto_commit=False,
                                          request_timeout_ms=5_000)
        self._started = False

    async def start(self) -> None:
        """Connect both clients."""
        await self._admin.start()
        await self._consumer.start()
        self._started = True

    async def close(self) -> None:
        """Disconnect; never raises (closing is best effort)."""
        with contextlib.suppress(Exception):
            await self._consumer.stop()
        with contextlib.suppress(Exception):
            await self._admin.close()

    async def fetch(self) -> dict[GroupTopic, int]:
        """(group, topic) → lag [messages] for every active group with commits on the topics."""
        if not self._started:
            await self.start()
        groups = [str(g[0]) for g in await self._admin.list_consumer_groups()]
        active = await self._active(groups)
        partitions = await self._partitions()
        if not active or not partitions:
            return {}
        end = await self._consumer.end_offsets(partitions)
        out: dict[GroupTopic, int] = {}
        for group in active:
            offsets = await self._admin.list_consumer_group_offsets(group, partitions=partitions)
            committed = {tp: int(meta.offset) for tp, meta in offsets.items()}
            for topic, lag in lag_per_topic(committed, end).items():
                out[(group, topic)] = lag
        return out

    async def _active(self, groups: list[str]) -> list[str]:
        active: list[str] = []
        # One group per DescribeGroups request: the embedded broker mis-encodes a reply that
        # describes several groups (the connection drops).
        for group in sorted(groups):
            try:
                responses = await self._admin.describe_consumer_groups([group])
            except KafkaError:
                active.append(group)  # cannot tell: report its lag rather than hide it
                continue
            for response in responses:
                for described in _groups_of(response):
                    # DescribeGroups rows: (error_code, group_id, state, protocol_type, …)
                    if described[0] == 0 and str(described[2]) in ACTIVE_STATES:
                        active.append(str(described[1]))
        return active

    async def _partitions(self) -> list[TopicPartition]:
        await self._consumer.topics()  # refreshes the metadata
        out: list[TopicPartition] = []
        for topic in self._topics:
            parts = self._consumer.partitions_for_topic(topic) or set()
            out.extend(TopicPartition(topic, p) for p in sorted(parts))
        return out


def _groups_of(response: Any) -> list[tuple[Any, ...]]:
    return [tuple(g) for g in getattr(response, "groups", [])]
