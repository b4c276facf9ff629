"""Which queued frames a stream serves when it is behind its input; pure.

The perception service takes camera frames from Kafka in micro-batches (the service runtime's
batched subscription) and, behind its input, serves each camera's newest frame rather than its
backlog (``newest_per_stream``). Every frame it drops on purpose is counted and reported under
one of the reasons below, never silently.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")

DROP_SUPERSEDED = "superseded"  # a newer frame of the same camera came in the same fetch
DROP_STALE = "stale"  # older than the latency budget


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
