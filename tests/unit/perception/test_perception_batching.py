"""Micro-batching triggers and the latency budget, on an injected clock."""

from __future__ import annotations

import pytest

from perception.batching import (
    DROP_OVERFLOW,
    DROP_STALE,
    DROP_SUPERSEDED,
    LatencyBudget,
    MicroBatcher,
    newest_per_stream,
)

MS = 1_000_000


class FakeClock:
    def __init__(self, start_ns: int = 1_000 * MS) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * MS)


def test_size_trigger_releases_a_full_batch_at_once() -> None:
    clock = FakeClock()
    batcher: MicroBatcher[str] = MicroBatcher(max_batch_size=3, max_wait_ms=50, clock=clock)
    batcher.add("front", "f0", 0)
    batcher.add("front", "f1", 1)
    assert batcher.poll() == []
    batcher.add("front", "f2", 2)
    batch = batcher.poll()
    assert [p.item for p in batch] == ["f0", "f1", "f2"]
    assert len(batcher) == 0


def test_size_trigger_takes_the_oldest_and_leaves_the_rest() -> None:
    clock = FakeClock()
    batcher: MicroBatcher[int] = MicroBatcher(max_batch_size=2, max_wait_ms=50, clock=clock)
    for i in range(5):
        batcher.add("front", i, i)
    assert [p.item for p in batcher.poll()] == [0, 1]
    assert [p.item for p in batcher.poll()] == [2, 3]
    assert batcher.poll() == []  # one left, its deadline not reached
    assert len(batcher) == 1


def test_deadline_trigger_releases_a_partial_batch() -> None:
    clock = FakeClock()
    batcher: MicroBatcher[str] = MicroBatcher(max_batch_size=8, max_wait_ms=10, clock=clock)
    assert batcher.next_deadline_ns() is None
    batcher.add("front", "a", 0)
    clock.advance_ms(4)
    batcher.add("front", "b", 0)
    assert batcher.next_deadline_ns() == clock.now - 4 * MS + 10 * MS
    assert batcher.time_to_deadline_s() == pytest.approx(0.006)
    clock.advance_ms(5.9)
    assert not batcher.ready()
    assert batcher.poll() == []
    clock.advance_ms(0.1)
    assert [p.item for p in batcher.poll()] == ["a", "b"]
    assert batcher.next_deadline_ns() is None


def test_deadline_follows_the_oldest_remaining_item() -> None:
    clock = FakeClock()
    batcher: MicroBatcher[str] = MicroBatcher(max_batch_size=2, max_wait_ms=10, clock=clock)
    batcher.add("a", "a0", 0)
    clock.advance_ms(3)
    batcher.add("b", "b0", 0)
    clock.advance_ms(3)
    batcher.add("c", "c0", 0)
    assert [p.item for p in batcher.poll()] == ["a0", "b0"]
    assert batcher.next_deadline_ns() == clock.now + 10 * MS


def test_multi_camera_batches_mix_cameras_in_arrival_order() -> None:
    clock = FakeClock()
    batcher: MicroBatcher[str] = MicroBatcher(max_batch_size=4, max_wait_ms=20, clock=clock)
    for k in range(2):
        for cam in ("front", "left", "right"):
            batcher.add(cam, f"{cam}{k}", k)
            clock.advance_ms(1)
    batch = batcher.poll()
    assert [p.camera_id for p in batch] == ["front", "left", "right", "front"]
    assert [p.arrival_ns for p in batch] == sorted(p.arrival_ns for p in batch)
    clock.advance_ms(20)
    assert [p.item for p in batcher.poll()] == ["left1", "right1"]


def test_latest_only_keeps_the_newest_frame_per_camera_and_counts_drops() -> None:
    clock = FakeClock()
    batcher: MicroBatcher[str] = MicroBatcher(
        max_batch_size=4, max_wait_ms=20, clock=clock, latest_only=True
    )
    batcher.add("front", "f0", 0)
    batcher.add("left", "l0", 0)
    batcher.add("front", "f1", 1)
    batcher.add("front", "f2", 2)
    assert len(batcher) == 2
    assert batcher.drops.by_camera("front") == {DROP_SUPERSEDED: 2}
    clock.advance_ms(20)
    assert [p.item for p in batcher.poll()] == ["l0", "f2"]


def test_overflow_drops_the_oldest() -> None:
    batcher: MicroBatcher[int] = MicroBatcher(
        max_batch_size=2, max_wait_ms=5, clock=FakeClock(), max_pending=3
    )
    for i in range(5):
        batcher.add("front" if i % 2 else "rear", i, i)
    assert [p.item for p in batcher.flush()] == [2, 3, 4]
    assert batcher.drops.total(DROP_OVERFLOW) == 2
    assert batcher.drops.as_dict() == {"front": {DROP_OVERFLOW: 1}, "rear": {DROP_OVERFLOW: 1}}


@pytest.mark.parametrize(
    "kwargs", [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_batch_size": 4, "max_pending": 2}]
)
def test_bad_settings_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(**kwargs)  # type: ignore[arg-type]


def test_latency_budget_drops_and_counts_stale_frames() -> None:
    wall = FakeClock(start_ns=1_790_000_000_000 * MS)
    budget = LatencyBudget(100, clock=wall)
    batcher: MicroBatcher[str] = MicroBatcher(max_batch_size=3, max_wait_ms=5, clock=FakeClock())
    batcher.add("front", "old", wall.now - 150 * MS)
    batcher.add("left", "edge", wall.now - 100 * MS)  # exactly on budget: kept
    batcher.add("front", "new", wall.now - 10 * MS)
    fresh, stale = budget.split(batcher.poll())
    assert [p.item for p in fresh] == ["edge", "new"]
    assert [p.item for p in stale] == ["old"]
    assert budget.drops.by_camera("front") == {DROP_STALE: 1}
    assert budget.drops.total() == 1
    assert budget.age_ms(wall.now - 150 * MS) == pytest.approx(150.0)
    wall.advance_ms(1)
    assert budget.is_stale(wall.now - 101 * MS)


def test_budget_can_share_a_drop_counter_with_the_batcher() -> None:
    batcher: MicroBatcher[str] = MicroBatcher(clock=FakeClock(), latest_only=True)
    budget = LatencyBudget(50, clock=lambda: 100 * MS, drops=batcher.drops)
    batcher.add("front", "a", 0)
    batcher.add("front", "b", 0)
    budget.split(batcher.flush())
    assert batcher.drops.by_camera("front") == {DROP_SUPERSEDED: 1, DROP_STALE: 1}


def test_newest_per_stream_keeps_each_streams_latest_in_input_order() -> None:
    # (stream, capture) items as a batch fetched behind its input holds them
    items = [("front", 10), ("rear", 11), ("front", 20), ("front", 15), ("rear", 21), ("side", 5)]
    kept, superseded = newest_per_stream(items, stream=lambda i: i[0], capture_ns=lambda i: i[1])
    assert kept == [("front", 20), ("rear", 21), ("side", 5)]
    assert superseded == [("front", 10), ("rear", 11), ("front", 15)]


def test_newest_per_stream_keeps_a_batch_of_distinct_streams_whole() -> None:
    items = [("front", 30), ("rear", 10)]
    assert newest_per_stream(items, stream=lambda i: i[0], capture_ns=lambda i: i[1]) == (items, [])
    assert newest_per_stream([], stream=lambda i: i, capture_ns=lambda i: 0) == ([], [])
