"""Which frames a stream behind its input serves: each camera's newest."""

from __future__ import annotations

from perception.batching import newest_per_stream


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
