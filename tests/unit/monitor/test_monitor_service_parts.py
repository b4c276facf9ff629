"""The service's pieces that need no broker: partition release and the event outbox."""

from __future__ import annotations

from typing import cast

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry

from services.messages import SafetyEvent, Severity
from services.messages.examples import vehicle_state
from services.monitor.findings import Finding
from services.monitor.metrics import MonitorMetrics
from services.monitor.monitor import Monitor
from services.monitor.service import _Publisher, _Release
from services.monitor.settings import MonitorSettings
from services.runtime.delivery import Record
from services.runtime.service import ServiceRuntime
from tests.unit.monitor.helpers import T0, ns


def state_record(key: str, partition: int, offset: int, at_s: float) -> Record:
    value = vehicle_state().model_copy(update={"vehicle_id": key, "stamp_ns": ns(at_s),
                                               "run_id": "r"}).encode()
    return Record(topic="vehicle.state", partition=partition, offset=offset, key=key.encode(),
                  value=value, timestamp_ms=(T0 + int(at_s * 1e9)) // 1_000_000)


async def test_only_partitions_not_assigned_back_are_released() -> None:
    monitor = Monitor(MonitorSettings())
    monitor.observe(state_record("a", 0, 0, 0.0), ns(0.0))
    monitor.observe(state_record("b", 1, 0, 0.0), ns(0.0))
    listener = _Release(monitor, "vehicle.state")
    # an eager rebalance revokes everything, then gives partition 0 back
    await listener.on_partitions_revoked({TopicPartition("vehicle.state", 0),
                                          TopicPartition("vehicle.state", 1)})
    await listener.on_partitions_assigned({TopicPartition("vehicle.state", 0)})
    assert monitor.liveness.is_alive("vehicle.state", "a", "r") is True
    assert monitor.liveness.is_alive("vehicle.state", "b", "r") is None  # another replica's now
    # the run falls silent on the wall clock: a is stale, b is not watched here any more
    assert [f.details["key"] for f in monitor.tick(ns(5.0))] == ["a"]
    # if partition 1 comes back, its next message is accepted and the key watched again
    assert monitor.observe(state_record("b", 1, 1, 5.0), ns(5.0)) == []
    assert monitor.liveness.is_alive("vehicle.state", "b", "r") is True


class FlakyFrame:
    """Stands in for ServiceRuntime.emit: fails while `down`."""

    run_id = ""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[SafetyEvent] = []

    async def emit(self, event: SafetyEvent) -> None:
        if self.down:
            raise KafkaConnectionError("broker unreachable")
        self.sent.append(event)


def finding(n: int) -> Finding:
    return Finding("topic_stale", Severity.WARNING, "ego", details={"n": n})


async def test_events_of_a_failed_publish_wait_and_go_out_in_order() -> None:
    frame = FlakyFrame()
    registry = CollectorRegistry()
    publisher = _Publisher(cast(ServiceRuntime, frame), MonitorMetrics(registry))
    await publisher.publish([finding(0)])
    frame.down = True
    with pytest.raises(KafkaConnectionError):
        await publisher.publish([finding(1), finding(2)])  # the record will not be committed
    publisher.queue([finding(3)])
    await publisher.flush()  # still down: kept
    assert [e.details["n"] for e in frame.sent] == [0]
    frame.down = False
    await publisher.flush()
    assert [e.details["n"] for e in frame.sent] == [0, 1, 2, 3]
    assert all(e.source == "monitor" for e in frame.sent)
    assert registry.get_sample_value("roadstream_monitor_events_total",
                                     {"type": "topic_stale", "severity": "warning"}) == 4.0
