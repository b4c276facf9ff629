"""What the checks see (`Observation`) and what they report (`Finding`), plus the event types.

A Finding becomes one `safety.events` SafetyEvent (source `monitor`); the checks stay free of
uuids, wall clocks and Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from services.messages import EventRefs, Severity

# Event types the monitor publishes (the `type` field of SafetyEvent).
TOPIC_STALE: Final = "topic_stale"
TOPIC_ALIVE: Final = "topic_alive"
FREQUENCY_LOW: Final = "frequency_low"
FREQUENCY_OK: Final = "frequency_ok"
LATENCY_BUDGET_EXCEEDED: Final = "latency_budget_exceeded"
CONSUMER_LAG_HIGH: Final = "consumer_lag_high"
CONSUMER_LAG_OK: Final = "consumer_lag_ok"
CONSUMER_LAG_UNAVAILABLE: Final = "consumer_lag_unavailable"
DLQ_MESSAGE: Final = "dlq_message"
COLLISION_RISK: Final = "collision_risk"
EMERGENCY_STOP: Final = "emergency_stop"
MINIMAL_RISK_STOP: Final = "minimal_risk_stop"
CONTROL_RESUMED: Final = "control_resumed"
DETECTION_DRIFT: Final = "detection_drift"
DETECTION_DRIFT_CLEARED: Final = "detection_drift_cleared"
CLOCK_SKEW: Final = "clock_skew"

NS_PER_S: Final = 1_000_000_000


@dataclass(frozen=True)
class Observation:
    """One consumed message as the checks see it.

    `stamp_ns` is the message's time on its run's data clock (`services.monitor.clock`): the
    data stamp it carries (capture time of a frame, stamp of a state, plan or command, capture
    time of the frame a perception result answers); `key` is the Kafka key as text ("" if none).
    """

    topic: str
    key: str
    vehicle_id: str
    stamp_ns: int
    partition: int
    offset: int
    run_id: str = ""

    def refs(self, *, frame_seq: int | None = None, command_seq: int | None = None) -> EventRefs:
        """References to this message (and the frame / command it concerns, when known)."""
        return EventRefs(topic=self.topic, partition=self.partition, offset=self.offset,
                         frame_seq=frame_seq, command_seq=command_seq)


@dataclass(frozen=True)
class Finding:
    """A check's verdict, to be published as one safety event."""

    type: str
    severity: Severity
    vehicle_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    refs: EventRefs = field(default_factory=EventRefs)
    run_id: str = ""


def vehicle_of(key: str) -> str:
    """The vehicle id of a `vehicle_id` or `vehicle_id/camera_id` key."""
    return key.split("/", 1)[0]
