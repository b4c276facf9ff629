"""The metrics every service has, on the service's own registry (served by `runtime.http`).

Names are part of the operators' contract (dashboards and alerts in deploy/): keep them.
FastStream's Prometheus middleware adds its own `roadstream_*` message metrics beside these.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ServiceMetrics:
    """Messages handled, dead letters, skipped records, Kafka retries and handler time,
    labelled by service and topic."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.handled = Counter("roadstream_messages_handled_total", "Messages handled",
                               ["service", "topic"], registry=registry)
        self.dead_letters = Counter("roadstream_dead_letters_total",
                                    "Messages sent to a dead-letter topic",
                                    ["service", "topic", "error"], registry=registry)
        self.skipped = Counter("roadstream_records_skipped_total",
                               "Records skipped because not even a truncated copy could be "
                               "dead-lettered", ["service", "topic", "error"], registry=registry)
        self.retries = Counter("roadstream_kafka_retries_total",
                               "Deliveries retried after Kafka could not be reached",
                               ["service", "topic", "error"], registry=registry)
        self.handler_seconds = Histogram("roadstream_handler_duration_seconds",
                                         "Time in a message handler", ["service", "topic"],
                                         registry=registry)
