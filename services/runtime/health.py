"""Readiness facts `/healthz` cannot compute in a request: is the broker reachable, is a
consumer stuck.

A health request must answer at once, and the facts need broker round trips, so a watch
task gathers them in the background and the health document reads what it found:

- broker reachable: FastStream's ``broker.ping`` (a metadata request through its admin
  client, a real round trip) every ``broker_timeout_s / 3``; the broker counts as unreachable
  when none has succeeded for ``broker_timeout_s``;
- stuck consumer: every ``stall_s / 3`` each held partition's committed offset (aiokafka's
  ``committed``; its ``position`` before the group's first commit) and end (``highwater``,
  from the last fetch). A partition is stuck when its committed offset has not moved for
  ``stall_s`` while records wait behind it (`StallTracker`).

Neither stops the service: `/healthz` answers 503 with the reasons, so an orchestrator stops
routing to it (readiness) while it keeps retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError

log = logging.getLogger(__name__)

#: A consumer of one group (`group id`, the aiokafka consumer).
GroupConsumer = tuple[str, AIOKafkaConsumer]


@dataclass
class _Progress:
    offset: int
    end: int | None
    since_s: float  # when the offset last moved, or the partition last had nothing waiting


class StallTracker:
    """Finds partitions whose committed offset has not moved for `stall_s` while behind.

    Feed it `observe` per partition (seconds on one monotonic clock); `stalled` lists the
    partitions that are stuck now.
    """

    def __init__(self, stall_s: float) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        self.stall_s = stall_s
        self._seen: dict[tuple[str, str, int], _Progress] = {}

    def observe(self, group: str, topic: str, partition: int, offset: int, end: int | None,
                now_s: float) -> None:
        """One reading: the committed `offset` and the partition's `end` (None: unknown)."""
        key = (group, topic, partition)
        seen = self._seen.get(key)
        if seen is None or seen.offset != offset or end is None or end <= offset:
            # new, moved, or nothing waiting: a stall, if any, starts from here
            self._seen[key] = _Progress(offset, end, now_s)
        else:
            if seen.end is None or seen.end <= seen.offset:
                seen.since_s = now_s  # nothing waited at the last reading: it starts now
            seen.end = end

    def keep_only(self, keys: set[tuple[str, str, int]]) -> None:
        """Forget the partitions not held any more (after a rebalance)."""
        for key in set(self._seen) - keys:
            del self._seen[key]

    def stalled(self, now_s: float) -> list[dict[str, Any]]:
        """The stuck partitions: group, topic, partition, committed, end, lag, stalled_s."""
        found = []
        for (group, topic, partition), p in sorted(self._seen.items()):
            if p.end is not None and p.end > p.offset and now_s - p.since_s >= self.stall_s:
                found.append({"group": group, "topic": topic, "partition": partition,
                              "committed": p.offset, "end": p.end, "lag": p.end - p.offset,
                              "stalled_s": round(now_s - p.since_s, 1)})
        return found


class HealthWatch:
    """Gathers broker reachability and consumer progress in the background.

    `ping(timeout_s)` is True when the broker answered; `consumers()` lists the consumers to
    watch. Until `start`, it has no findings (a service that never connected, under
    FastStream's test broker).
    """

    def __init__(self, ping: Callable[[float], Awaitable[bool]],
                 consumers: Callable[[], list[GroupConsumer]], *, broker_timeout_s: float,
                 stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.broker_timeout_s = broker_timeout_s
        self.probe_interval_s = broker_timeout_s / 3
        self.offsets_interval_s = stall_s / 3
        self.tracker = StallTracker(stall_s)
        self._ping = ping
        self._consumers = consumers
        self._clock = clock
        #: When the broker last answered (monotonic s); None before `start`.
        self.broker_ok_s: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start watching (the broker has just been reached: it counts as an answer)."""
        self.broker_ok_s = self._clock()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop watching."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        tick_s = min(self.probe_interval_s, self.offsets_interval_s)
        broker_due_s = offsets_due_s = self._clock()
        while True:
            await asyncio.sleep(tick_s)
            if self._clock() >= broker_due_s:
                await self.probe_broker()
                broker_due_s = self._clock() + self.probe_interval_s
            if self._clock() >= offsets_due_s:
                await self.probe_offsets()
                offsets_due_s = self._clock() + self.offsets_interval_s

    async def probe_broker(self) -> None:
        """Ask the broker once (for up to one probe interval); note when it answers."""
        try:
            answered = await self._ping(self.probe_interval_s)
        except Exception as exc:  # a probe failing is a finding, never a dead watch
            log.debug("broker ping failed: %s: %s", type(exc).__name__, exc)
            answered = False
        if answered:
            self.broker_ok_s = self._clock()

    async def probe_offsets(self) -> None:
        """Read each held partition's committed offset and end into the tracker."""
        held: set[tuple[str, str, int]] = set()
        for group, consumer in self._consumers():
            for tp in list(consumer.assignment()):
                reading = await self._read(consumer, tp)
                if reading is not None:
                    self.tracker.observe(group, tp.topic, tp.partition, *reading,
                                         now_s=self._clock())
                    held.add((group, tp.topic, tp.partition))
        self.tracker.keep_only(held)

    async def _read(self, consumer: AIOKafkaConsumer,
                    tp: TopicPartition) -> tuple[int, int | None] | None:
        try:
            committed = await asyncio.wait_for(consumer.committed(tp), self.probe_interval_s)
            if committed is None:  # no commit in this group yet: where it reads from
                committed = await asyncio.wait_for(consumer.position(tp), self.probe_interval_s)
            return int(committed), consumer.highwater(tp)
        except (KafkaError, IllegalOperation, TimeoutError, AssertionError) as exc:
            # broker down (the broker check says so) or the partition moved away meanwhile
            log.debug("offsets of %s not read: %s: %s", tp, type(exc).__name__, exc)
            return None

    def findings(self) -> dict[str, Any]:
        """``reasons`` (empty when ready), ``broker`` and ``stalled`` for the health document."""
        if self.broker_ok_s is None:
            return {"reasons": []}
        now = self._clock()
        age_s = now - self.broker_ok_s
        reachable = age_s <= self.broker_timeout_s
        stalled = self.tracker.stalled(now)
        reasons = [] if reachable else [
            f"broker unreachable: no answer for {age_s:.1f} s (limit "
            f"{self.broker_timeout_s:g} s)"]
        reasons += [f"consumer stuck: {s['topic']}[{s['partition']}] (group {s['group']}) "
                    f"committed {s['committed']} for {s['stalled_s']:g} s with {s['lag']} "
                    f"waiting" for s in stalled]
        return {"reasons": reasons,
                "broker": {"reachable": reachable, "last_answer_age_s": round(age_s, 3)},
                "stalled": stalled}
