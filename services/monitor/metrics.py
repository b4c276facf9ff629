"""Prometheus metrics of the monitor (base units, `_total` on counters), on the service registry."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0)


class MonitorMetrics:
    """Counters and gauges the monitor keeps; `registry` is the ServiceRuntime's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter("roadstream_monitor_messages_total", "Messages watched",
                                ["topic"], registry=registry)
        self.redelivered = Counter("roadstream_monitor_redelivered_messages_total",
                                   "Messages seen again (at-least-once redelivery), ignored",
                                   ["topic"], registry=registry)
        self.unparsed = Counter("roadstream_monitor_unparsed_messages_total",
                                "Values the monitor could not parse (content checks skipped; "
                                "the owning consumer dead-letters them)", ["topic"],
                                registry=registry)
        self.clock_skew = Counter("roadstream_monitor_clock_skew_messages_total",
                                  "Messages stamped too far in the future, refused",
                                  ["topic"], registry=registry)
        self.after_end = Counter("roadstream_monitor_after_end_messages_total",
                                 "Messages of a run after its announced end, not judged",
                                 ["topic"], registry=registry)
        self.keys = Gauge("roadstream_monitor_keys", "Keys per topic by liveness state",
                          ["topic", "state"], registry=registry)
        self.rate_ratio = Gauge("roadstream_monitor_rate_ratio",
                                "Lowest measured/expected rate among a topic's keys",
                                ["topic"], registry=registry)
        self.stage_latency = Histogram("roadstream_monitor_stage_latency_seconds",
                                       "Stage latency read from message stamps", ["stage"],
                                       buckets=LATENCY_BUCKETS_S, registry=registry)
        self.over_budget = Counter("roadstream_monitor_latency_budget_exceeded_total",
                                   "Messages whose stage latency exceeded its budget", ["stage"],
                                   registry=registry)
        self.dlq = Counter("roadstream_monitor_dlq_messages_total", "Messages seen on DLQ topics",
                           ["topic"], registry=registry)
        self.events = Counter("roadstream_monitor_events_total", "Safety events the monitor raised",
                              ["type", "severity"], registry=registry)
        self.seen_events = Counter("roadstream_monitor_safety_events_seen_total",
                                   "Safety events seen on safety.events (any source)",
                                   ["type", "severity"], registry=registry)
        self.lag = Gauge("roadstream_consumer_lag_messages",
                         "Committed-offset lag of an active consumer group on a topic",
                         ["group", "topic"], registry=registry)
        self.lag_up = Gauge("roadstream_monitor_lag_probe_up",
                            "1 when the last consumer-lag probe succeeded", registry=registry)
        self.drift_p = Gauge("roadstream_monitor_detection_drift_p_value",
                             "Last KS-test p-value of a detection feature",
                             ["model_version", "feature"], registry=registry)
        self._lag_labels: set[tuple[str, str]] = set()

    def set_keys(self, counts: Mapping[str, tuple[int, int]]) -> None:
        """Alive / stale key counts per topic."""
        for topic, (alive, stale) in counts.items():
            self.keys.labels(topic, "alive").set(alive)
            self.keys.labels(topic, "stale").set(stale)

    def set_lag(self, lags: Mapping[tuple[str, str], int]) -> None:
        """Replace the lag gauges (label sets of groups no longer active are removed)."""
        for labels in self._lag_labels - set(lags):
            self.lag.remove(*labels)
        for (group, topic), lag in lags.items():
            self.lag.labels(group, topic).set(lag)
        self._lag_labels = set(lags)
