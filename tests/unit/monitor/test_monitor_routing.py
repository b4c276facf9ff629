"""The Monitor behind `observe(record)` / `tick()`: routing, tolerance of bad values, metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.messages import ControlMode, Severity
from services.messages.examples import (
    frame_meta,
    perception_objects,
    safety_event,
    vehicle_control,
    vehicle_state,
)
from services.monitor.findings import (
    COLLISION_RISK,
    DLQ_MESSAGE,
    EMERGENCY_STOP,
    LATENCY_BUDGET_EXCEEDED,
    TOPIC_STALE,
    Finding,
)
from services.monitor.metrics import MonitorMetrics
from services.monitor.monitor import Monitor
from services.monitor.settings import MonitorSettings, load_monitor_settings
from services.runtime.delivery import Record
from services.settings import SettingsError
from tests.unit.monitor.helpers import T0, ns

MS = 1_000_000


def record(topic: str, value: bytes, *, key: str = "ego", offset: int = 0, at_s: float = 0.0,
           headers: tuple[tuple[str, bytes], ...] = (), partition: int = 0) -> Record:
    return Record(topic=topic, partition=partition, offset=offset, key=key.encode(), value=value,
                  headers=headers, timestamp_ms=(T0 + int(at_s * 1e9)) // MS)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def monitor(registry: CollectorRegistry) -> Monitor:
    return Monitor(MonitorSettings(lag_interval_s=0), metrics=MonitorMetrics(registry))


def types(found: list[Finding]) -> list[str]:
    return [f.type for f in found]


def state(at_s: float, run_id: str = "example") -> bytes:
    """A vehicle.state value stamped T0 + at_s."""
    return vehicle_state().model_copy(update={"stamp_ns": ns(at_s), "run_id": run_id}).encode()


def test_camera_frames_are_watched_from_headers_without_decoding(monitor: Monitor) -> None:
    headers = tuple(frame_meta().to_headers())  # captured at T0, run "example"
    found = monitor.observe(record("camera.frames", b"\xff\xd8 not a real jpeg", key="ego/front",
                                   headers=headers), ns(0.0))
    assert found == []  # a key seen for the first time is not announced
    assert monitor.liveness.is_alive("camera.frames", "ego/front", "example") is True
    # the run's clock moves on with its vehicle state; the frame's capture time does not
    monitor.observe(record("vehicle.state", state(0.5), offset=1), ns(0.5))
    assert monitor.tick(ns(0.5)) == []  # overdue: 10 periods of 50 ms behind the run's clock
    stale = monitor.tick(ns(1.0))  # … for the hold, 0.5 s of wall time
    assert types(stale) == [TOPIC_STALE]
    assert stale[0].severity == Severity.CRITICAL
    assert stale[0].vehicle_id == "ego"
    assert stale[0].run_id == "example"  # from the run-id header
    assert stale[0].details["clock"] == "data"


def test_bad_values_are_counted_never_raised(monitor: Monitor, registry: CollectorRegistry) -> None:
    monitor.observe(record("vehicle.state", state(0.0), key="ego"), ns(0.0))
    found = monitor.observe(record("perception.objects", b"\x00garbage", key="ego/front"), ns(0.0))
    assert found == []
    found = monitor.observe(record("vehicle.control", b'{"mode": "warp"}', offset=0), ns(0.0))
    assert found == []
    assert registry.get_sample_value("roadstream_monitor_unparsed_messages_total",
                                     {"topic": "perception.objects"}) == 1.0
    assert registry.get_sample_value("roadstream_monitor_unparsed_messages_total",
                                     {"topic": "vehicle.control"}) == 1.0


def test_redelivered_records_are_ignored(monitor: Monitor, registry: CollectorRegistry) -> None:
    estop = vehicle_control().model_copy(update={"mode": ControlMode.EMERGENCY_STOP}).encode()
    first = monitor.observe(record("vehicle.control", estop, offset=5), ns(0.0))
    assert EMERGENCY_STOP in types(first)
    assert monitor.observe(record("vehicle.control", estop, offset=5), ns(0.01)) == []
    assert registry.get_sample_value("roadstream_monitor_redelivered_messages_total",
                                     {"topic": "vehicle.control"}) == 1.0


def test_dlq_messages_are_warnings_with_their_headers(monitor: Monitor) -> None:
    headers = (("dlq-source-topic", b"vehicle.state"), ("dlq-source-partition", b"2"),
               ("dlq-source-offset", b"118"), ("dlq-error-class", b"MessageError"),
               ("dlq-error-message", b"speed_mps: not a number"), ("dlq-service", b"planning"),
               ("origin", b"kept"))
    found = monitor.observe(record("vehicle.state.dlq", b"{bad", offset=3, headers=headers),
                            ns(0.0))
    assert types(found) == [DLQ_MESSAGE]
    event = found[0]
    assert event.severity == Severity.WARNING
    assert event.vehicle_id == "ego"
    assert event.details["source_topic"] == "vehicle.state"
    assert event.details["source_offset"] == "118"
    assert event.details["error_class"] == "MessageError"
    assert event.details["service"] == "planning"
    assert "origin" not in event.details
    assert (event.refs.topic, event.refs.offset) == ("vehicle.state.dlq", 3)


def test_perception_objects_feed_latency_risk_and_metrics(monitor: Monitor,
                                                          registry: CollectorRegistry) -> None:
    objects = perception_objects()
    car = objects.objects[0].model_copy(update={"ttc_s": 1.0})
    slow = objects.model_copy(update={"objects": [car],
                                      "stamp_ns": objects.source.stamp_ns + 400 * MS})
    found = monitor.observe(record("perception.objects", slow.encode(), key="ego/front"), ns(0.0))
    assert sorted(types(found)) == [COLLISION_RISK, LATENCY_BUDGET_EXCEEDED]
    latency = next(f for f in found if f.type == LATENCY_BUDGET_EXCEEDED)
    assert latency.refs.frame_seq == objects.source.seq
    assert latency.details["latency_ms"] == pytest.approx(400.0)
    assert registry.get_sample_value("roadstream_monitor_stage_latency_seconds_count",
                                     {"stage": "perception"}) == 1.0
    assert registry.get_sample_value("roadstream_monitor_latency_budget_exceeded_total",
                                     {"stage": "perception"}) == 1.0


def test_safety_events_are_counted_not_reacted_to(monitor: Monitor,
                                                  registry: CollectorRegistry) -> None:
    assert monitor.observe(record("safety.events", safety_event().encode()), ns(0.0)) == []
    assert registry.get_sample_value("roadstream_monitor_safety_events_seen_total",
                                     {"type": "dlq", "severity": "warning"}) == 1.0


def test_tick_sets_key_gauges(monitor: Monitor, registry: CollectorRegistry) -> None:
    monitor.observe(record("vehicle.state", state(0.0), key="a"), ns(0.0))
    monitor.observe(record("vehicle.state", state(0.0), key="b", offset=1), ns(0.0))
    monitor.tick(ns(0.1))
    assert registry.get_sample_value("roadstream_monitor_keys",
                                     {"topic": "vehicle.state", "state": "alive"}) == 2.0


def test_the_data_stamp_is_the_time_not_the_kafka_timestamp() -> None:
    monitor = Monitor(MonitorSettings(clock="simulation"))
    # Kafka timestamps (the producer's wall clock) 100 s apart; the data stamps 50 ms apart.
    monitor.observe(record("vehicle.state", state(0.0), at_s=0.0), ns(0.0))
    monitor.observe(record("vehicle.state", state(0.05), offset=1, at_s=100.0), ns(100.0))
    assert monitor.liveness.clocks.data_now("example") == ns(0.05)
    assert monitor.liveness.is_alive("vehicle.state", "ego", "example") is True


def test_clock_values_of_the_kafka_timestamp_era_are_refused() -> None:
    with pytest.raises(SettingsError, match=r"ROADSTREAM_MONITOR_CLOCK.*wall.*simulation"):
        load_monitor_settings(clock="record")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADSTREAM_MONITOR_TTC_WARNING_S", "4")
    monkeypatch.setenv("ROADSTREAM_MONITOR_LATENCY_BUDGETS_MS", '{"perception": 120}')
    options = load_monitor_settings()
    assert options.ttc_warning_s == 4.0
    assert options.latency_budgets_ms == {"perception": 120.0}


@pytest.mark.parametrize(("env", "value", "message"), [
    ("TTC_CRITICAL_S", "5", "ttc_critical_s must be below ttc_warning_s"),
    ("CRITICAL_TOPICS", '["camera.frame"]', "unknown topic"),
    ("DRIFT_REFERENCE", "/nonexistent/ref.json", "does not exist"),
    ("FREQUENCY_MIN_RATIO", "0", "ROADSTREAM_MONITOR_FREQUENCY_MIN_RATIO"),
])
def test_invalid_settings_are_one_line(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                       message: str) -> None:
    monkeypatch.setenv(f"ROADSTREAM_MONITOR_{env}", value)
    with pytest.raises(SettingsError, match=message):
        load_monitor_settings()


def test_a_rate_override_sets_the_stale_timeout_of_that_topic() -> None:
    headers = tuple(frame_meta().to_headers())
    frame = record("camera.frames", b"\xff\xd8", key="ego/front", headers=headers)
    # 20 Hz: stale 0.5 s behind the run's clock (after the 0.5 s hold)
    registry_rate = Monitor(MonitorSettings(clock="simulation", stale_hold_s=0))
    ten_hz = Monitor(MonitorSettings(clock="simulation", stale_hold_s=0,
                                     rates_hz={"camera.frames": 10.0}))
    for m in (registry_rate, ten_hz):
        m.observe(frame, ns(0.0))
        m.observe(record("vehicle.state", state(0.6), offset=1), ns(0.6))
    assert types(registry_rate.tick(ns(0.6))) == [TOPIC_STALE]
    assert ten_hz.tick(ns(0.6)) == []  # 10 periods of 100 ms
    ten_hz.observe(record("vehicle.state", state(1.1), offset=2), ns(1.1))
    assert types(ten_hz.tick(ns(1.1))) == [TOPIC_STALE]


def test_a_rate_for_an_unknown_topic_or_below_zero_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"RATES_HZ.*camera\.frame"):
        load_monitor_settings(rates_hz={"camera.frame": 10.0})
    with pytest.raises(SettingsError, match=r"RATES_HZ.*> 0 Hz"):
        load_monitor_settings(rates_hz={"camera.frames": 0.0})
