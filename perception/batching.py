"""Micro-batching with deadlines, and the latency budget; pure, the clock is injected.

The async perception service adds frames from all cameras as they arrive, sleeps until
``next_deadline_ns()``, and runs whatever ``poll()`` releases as one batch. A batch is released
when ``max_batch_size`` items wait, or when the oldest has waited ``max_wait_ms``. Before
inference, ``LatencyBudget.split`` removes frames whose capture is older than the budget; every
drop is counted by camera and reason so it can be reported, never silent.

Two clocks are involved: the batcher's (``clock``, monotonic, measures waiting) and the frames'
capture stamps (``capture_ns``, the producer's epoch clock), which only ``LatencyBudget``
compares against its own ``clock`` (epoch).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

DROP_SUPERSEDED = "superseded"  # a newer frame of the same camera replaced it while queued
DROP_OVERFLOW = "overflow"  # the queue was full; the oldest frame made room
DROP_STALE = "stale"  # older than the latency budget


@dataclass(frozen=True)
class Pending(Generic[T]):
    """A queued item: ``capture_ns`` from the frame, ``arrival_ns`` from the batcher's clock."""

    camera_id: str
    item: T
    capture_ns: int
    arrival_ns: int


class DropCounter:
    """Counts of dropped items by ``(camera_id, reason)``."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, camera_id: str, reason: str, n: int = 1) -> None:
        """Count ``n`` drops."""
        self._counts[(camera_id, reason)] += n

    def total(self, reason: str | None = None) -> int:
        """All drops, or those of one reason."""
        return sum(n for (_, r), n in self._counts.items() if reason is None or r == reason)

    def by_camera(self, camera_id: str) -> dict[str, int]:
        """``{reason: count}`` for one camera."""
        return {r: n for (c, r), n in self._counts.items() if c == camera_id}

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{camera_id: {reason: count}}``."""
        out: dict[str, dict[str, int]] = {}
        for (c, r), n in sorted(self._counts.items()):
            out.setdefault(c, {})[r] = n
        return out


class MicroBatcher(Generic[T]):
    """Accumulates items from several cameras into batches.

    Args:
        max_batch_size: release as soon as this many items wait.
        max_wait_ms: release when the oldest item has waited this long (≥ 0).
        clock: monotonic time [ns] (injected for tests and replay).
        latest_only: keep only the newest queued frame per camera (drops counted as
            ``superseded``): under load a stream should skip, not lag.
        max_pending: bound on queued items; beyond it the oldest is dropped (``overflow``).
    """

    def __init__(
        self,
        *,
        max_batch_size: int = 4,
        max_wait_ms: float = 10.0,
        clock: Callable[[], int] = time.monotonic_ns,
        latest_only: bool = False,
        max_pending: int = 256,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if max_pending < max_batch_size:
            raise ValueError("max_pending must be >= max_batch_size")
        self.max_batch_size = max_batch_size
        self.max_wait_ns = int(max_wait_ms * 1e6)
        self.clock = clock
        self.latest_only = latest_only
        self.max_pending = max_pending
        self.drops = DropCounter()
        self._queue: deque[Pending[T]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, camera_id: str, item: T, capture_ns: int) -> None:
        """Queue one item that arrived now."""
        if self.latest_only:
            before = len(self._queue)
            self._queue = deque(p for p in self._queue if p.camera_id != camera_id)
            if len(self._queue) < before:
                self.drops.add(camera_id, DROP_SUPERSEDED, before - len(self._queue))
        if len(self._queue) >= self.max_pending:
            oldest = self._queue.popleft()
            self.drops.add(oldest.camera_id, DROP_OVERFLOW)
        self._queue.append(Pending(camera_id, item, capture_ns, self.clock()))

    def next_deadline_ns(self) -> int | None:
        """Clock time at which the oldest item's wait runs out; ``None`` when empty."""
        if not self._queue:
            return None
        return self._queue[0].arrival_ns + self.max_wait_ns

    def time_to_deadline_s(self) -> float | None:
        """Seconds until ``poll`` will release a batch by deadline (≤ 0: now); ``None`` if empty."""
        deadline = self.next_deadline_ns()
        return None if deadline is None else (deadline - self.clock()) * 1e-9

    def ready(self) -> bool:
        """Whether ``poll`` would release a batch now."""
        if len(self._queue) >= self.max_batch_size:
            return True
        deadline = self.next_deadline_ns()
        return deadline is not None and self.clock() >= deadline

    def poll(self) -> list[Pending[T]]:
        """Release the oldest ``max_batch_size`` items if a trigger fired, else ``[]``."""
        if not self.ready():
            return []
        n = min(self.max_batch_size, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]

    def flush(self) -> list[Pending[T]]:
        """Release everything queued (shutdown), oldest first."""
        items = list(self._queue)
        self._queue.clear()
        return items


class LatencyBudget:
    """Drops frames whose capture is older than ``budget_ms`` and counts them.

    ``clock`` gives now in the capture stamps' clock [ns since the epoch].
    """

    def __init__(
        self,
        budget_ms: float,
        *,
        clock: Callable[[], int] = time.time_ns,
        drops: DropCounter | None = None,
    ) -> None:
        if budget_ms <= 0:
            raise ValueError("budget_ms must be > 0")
        self.budget_ns = int(budget_ms * 1e6)
        self.clock = clock
        self.drops = drops if drops is not None else DropCounter()

    def age_ms(self, capture_ns: int, now_ns: int | None = None) -> float:
        """Age of a frame [ms]."""
        now = self.clock() if now_ns is None else now_ns
        return (now - capture_ns) * 1e-6

    def is_stale(self, capture_ns: int, now_ns: int | None = None) -> bool:
        """Whether a frame captured at ``capture_ns`` is over budget."""
        now = self.clock() if now_ns is None else now_ns
        return now - capture_ns > self.budget_ns

    def split(
        self, items: Iterable[Pending[T]], now_ns: int | None = None
    ) -> tuple[list[Pending[T]], list[Pending[T]]]:
        """``(fresh, stale)``; stale ones are counted as ``stale`` drops of their camera."""
        now = self.clock() if now_ns is None else now_ns
        fresh: list[Pending[T]] = []
        stale: list[Pending[T]] = []
        for p in items:
            if self.is_stale(p.capture_ns, now):
                stale.append(p)
                self.drops.add(p.camera_id, DROP_STALE)
            else:
                fresh.append(p)
        return fresh, stale


def newest_per_stream(
    items: Sequence[T], stream: Callable[[T], Hashable], capture_ns: Callable[[T], int]
) -> tuple[list[T], list[T]]:
    """``(kept, superseded)``: of several items of one stream, only the newest capture is kept.

    A service behind its input serves each camera's latest frame instead of working through
    the backlog in order (a stream should skip, not lag); ``kept`` keeps the input order.
    Ties keep the later item.
    """
    newest: dict[Hashable, int] = {}
    for i, item in enumerate(items):
        key = stream(item)
        j = newest.get(key)
        if j is None or capture_ns(item) >= capture_ns(items[j]):
            newest[key] = i
    chosen = set(newest.values())
    kept = [item for i, item in enumerate(items) if i in chosen]
    superseded = [item for i, item in enumerate(items) if i not in chosen]
    return kept, superseded
