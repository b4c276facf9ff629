"""The health watch: broker reachability and stuck consumers, on an injected clock."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from services.runtime.health import HealthWatch, StallTracker


def test_a_partition_behind_whose_offset_does_not_move_is_stuck_after_stall_s() -> None:
    tracker = StallTracker(stall_s=30)
    tracker.observe("g", "camera.frames", 0, offset=10, end=15, now_s=0)
    tracker.observe("g", "camera.frames", 0, offset=10, end=20, now_s=29)
    assert tracker.stalled(29) == []
    tracker.observe("g", "camera.frames", 0, offset=10, end=25, now_s=30)
    [stuck] = tracker.stalled(30)
    assert stuck == {"group": "g", "topic": "camera.frames", "partition": 0, "committed": 10,
                     "end": 25, "lag": 15, "stalled_s": 30}


def test_a_moving_or_caught_up_partition_is_not_stuck() -> None:
    tracker = StallTracker(stall_s=30)
    for t in range(0, 100, 10):
        tracker.observe("g", "t", 0, offset=t, end=t + 5, now_s=t)  # slow but moving
        tracker.observe("g", "t", 1, offset=7, end=7, now_s=t)  # idle: nothing waits
        tracker.observe("g", "t", 2, offset=7, end=None, now_s=t)  # end not known yet
    assert tracker.stalled(100) == []


def test_the_stall_counts_from_when_records_began_to_wait() -> None:
    tracker = StallTracker(stall_s=30)
    tracker.observe("g", "t", 0, offset=7, end=7, now_s=0)  # idle for a long time
    tracker.observe("g", "t", 0, offset=7, end=8, now_s=100)  # then a record arrives
    assert tracker.stalled(129) == []
    assert len(tracker.stalled(130)) == 1


def test_partitions_given_away_are_forgotten() -> None:
    tracker = StallTracker(stall_s=1)
    tracker.observe("g", "t", 0, offset=1, end=9, now_s=0)
    tracker.keep_only(set())
    assert tracker.stalled(10) == []


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class Consumer:
    """Stands in for an aiokafka consumer: one partition, offsets set by the test."""

    def __init__(self) -> None:
        self.tp = TopicPartition("camera.frames", 0)
        self.committed_offset: int | None = 5
        self.end = 9
        self.down = False

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    async def committed(self, tp: TopicPartition) -> int | None:
        if self.down:
            raise KafkaConnectionError("Unable to connect")
        return self.committed_offset

    async def position(self, tp: TopicPartition) -> int:
        return 3

    def highwater(self, tp: TopicPartition) -> int:
        return self.end


def watch(clock: Clock, answers: list[bool], consumer: Consumer) -> HealthWatch:
    async def ping(timeout_s: float) -> bool:
        if not answers.pop(0):
            raise KafkaConnectionError("Unable to bootstrap")  # a failing ping, not only False
        return True

    return HealthWatch(ping, lambda: [("g", cast(Any, consumer))], broker_timeout_s=10,
                       stall_s=30, clock=clock)


async def test_the_broker_is_unreachable_once_it_has_not_answered_for_the_timeout() -> None:
    clock, consumer = Clock(), Consumer()
    health = watch(clock, [True, False, False, False, True], consumer)
    assert health.findings() == {"reasons": []}  # not started: nothing known, nothing said
    health.broker_ok_s = clock()  # as `start` does: the broker was just reached
    await health.probe_broker()
    for _ in range(3):
        clock.now_s += 4
        await health.probe_broker()
    findings = health.findings()
    assert findings["broker"] == {"reachable": False, "last_answer_age_s": 12.0}
    assert findings["reasons"] == ["broker unreachable: no answer for 12.0 s (limit 10 s)"]
    await health.probe_broker()  # it answers again
    assert health.findings()["reasons"] == []
    assert health.findings()["broker"]["reachable"] is True


async def test_a_stuck_consumer_is_a_reason_and_a_commit_clears_it() -> None:
    clock, consumer = Clock(), Consumer()
    health = watch(clock, [], consumer)
    health.broker_ok_s = clock()
    await health.probe_offsets()
    clock.now_s = 31
    health.broker_ok_s = clock()
    await health.probe_offsets()
    findings = health.findings()
    assert findings["stalled"][0]["lag"] == 4
    assert findings["reasons"] == ["consumer stuck: camera.frames[0] (group g) committed 5 "
                                   "for 31 s with 4 waiting"]
    consumer.committed_offset = 9
    await health.probe_offsets()
    assert health.findings()["reasons"] == []


async def test_before_the_first_commit_the_position_stands_in() -> None:
    clock, consumer = Clock(), Consumer()
    consumer.committed_offset = None
    health = watch(clock, [], consumer)
    health.broker_ok_s = clock()
    await health.probe_offsets()
    clock.now_s = 40
    health.broker_ok_s = clock()
    await health.probe_offsets()
    assert health.findings()["stalled"][0]["committed"] == 3


async def test_offsets_unreadable_in_an_outage_are_skipped_not_fatal() -> None:
    clock, consumer = Clock(), Consumer()
    consumer.down = True
    health = watch(clock, [], consumer)
    health.broker_ok_s = clock()
    await health.probe_offsets()
    assert health.findings()["stalled"] == []


def test_a_stall_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_s"):
        StallTracker(0)
