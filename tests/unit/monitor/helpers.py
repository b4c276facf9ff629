"""Builders shared by the monitor unit tests."""

from __future__ import annotations

from services.monitor.findings import NS_PER_S, Observation, vehicle_of

T0 = 1_790_000_000 * NS_PER_S  # an arbitrary epoch instant [ns]


def ns(seconds: float) -> int:
    """T0 + seconds, in ns."""
    return T0 + round(seconds * NS_PER_S)


def obs(topic: str, key: str, at_s: float, offset: int = 0, partition: int = 0) -> Observation:
    """An observation of `topic`/`key` stamped T0 + at_s."""
    return Observation(topic, key, vehicle_of(key), ns(at_s), partition, offset)
