"""Liveness: one event per transition, driven by an injected clock."""

from __future__ import annotations

from services.messages import Severity
from services.monitor.findings import TOPIC_ALIVE, TOPIC_STALE
from services.monitor.liveness import LivenessCheck
from tests.unit.monitor.helpers import ns, obs

RATES = {"vehicle.state": 20.0, "sim.ground_truth": 10.0}


def make() -> LivenessCheck:
    return LivenessCheck(RATES, stale_periods=10, critical_topics=["vehicle.state"],
                         forget_after_s=60)


def feed(check: LivenessCheck, topic: str, key: str, start_s: float, stop_s: float,
         rate_hz: float) -> list[str]:
    """Messages at rate_hz in [start, stop), each observed on arrival, ticking every 10 ms."""
    types: list[str] = []
    t, i = start_s, 0
    while t < stop_s:
        types += [f.type for f in check.observe(obs(topic, key, t, offset=i), ns(t))]
        types += [f.type for f in check.tick(ns(t + 0.01))]
        i += 1
        t = start_s + i / rate_hz
    return types


def test_first_fresh_message_announces_the_key_then_steady_traffic_is_silent() -> None:
    check = make()
    first = check.observe(obs("vehicle.state", "ego", 0.0), ns(0.0))
    assert [f.type for f in first] == [TOPIC_ALIVE]
    assert first[0].details["first_seen"] is True
    assert first[0].severity == Severity.INFO
    assert feed(check, "vehicle.state", "ego", 0.05, 3.0, 20.0) == []
    assert check.is_alive("vehicle.state", "ego") is True


def test_stale_exactly_after_ten_periods_once_then_alive_once() -> None:
    check = make()
    feed(check, "vehicle.state", "ego", 0.0, 1.0, 20.0)  # last message at 0.95 s
    assert check.tick(ns(0.95 + 0.49)) == []  # 9.8 periods: still alive
    stale = check.tick(ns(0.95 + 0.5))  # 10 periods of 50 ms
    assert [f.type for f in stale] == [TOPIC_STALE]
    assert stale[0].severity == Severity.CRITICAL  # vehicle.state is critical
    assert stale[0].vehicle_id == "ego"
    assert stale[0].details["timeout_s"] == 0.5
    assert stale[0].refs.topic == "vehicle.state"
    assert stale[0].refs.offset == 19
    for k in range(1, 50):  # a long silence is one event, not one per tick
        assert check.tick(ns(1.45 + 0.1 * k)) == []
    back = check.observe(obs("vehicle.state", "ego", 7.0, offset=20), ns(7.0))
    assert [f.type for f in back] == [TOPIC_ALIVE]
    assert back[0].details["first_seen"] is False
    assert back[0].details["silent_s"] == 6.05


def test_keys_are_independent_and_non_critical_topics_warn() -> None:
    check = make()
    check.observe(obs("sim.ground_truth", "a/front", 0.0), ns(0.0))
    check.observe(obs("sim.ground_truth", "b/front", 0.0), ns(0.0))
    # b keeps publishing at 10 Hz, a stops
    out = []
    for i in range(1, 15):
        t = 0.1 * i
        check.observe(obs("sim.ground_truth", "b/front", t, offset=i), ns(t))
        out += check.tick(ns(t))
    assert [(f.type, f.details["key"], f.severity) for f in out] == [
        (TOPIC_STALE, "a/front", Severity.WARNING)]
    assert check.counts()["sim.ground_truth"] == (1, 1)


def test_event_driven_topics_have_no_liveness() -> None:
    check = make()
    assert check.observe(obs("safety.events", "ego", 0.0), ns(0.0)) == []
    assert check.tick(ns(1000.0)) == []
    assert not check.watches("safety.events")


def test_backlog_message_is_silently_stale_and_only_live_traffic_announces() -> None:
    check = make()
    assert check.observe(obs("vehicle.state", "old", 0.0), ns(100.0)) == []  # 100 s old
    assert check.is_alive("vehicle.state", "old") is False
    assert check.tick(ns(100.1)) == []
    out = check.observe(obs("vehicle.state", "old", 100.2, offset=1), ns(100.2))
    assert [f.type for f in out] == [TOPIC_ALIVE]


def test_a_gap_the_ticks_missed_is_reported_when_the_next_message_arrives() -> None:
    check = make()
    check.observe(obs("vehicle.state", "ego", 0.0), ns(0.0))
    # no tick ran for 2 s (a blocked loop); the next message reveals the gap
    out = check.observe(obs("vehicle.state", "ego", 2.0, offset=1), ns(2.0))
    assert [f.type for f in out] == [TOPIC_STALE, TOPIC_ALIVE]


def test_silent_keys_are_forgotten_after_the_forget_time() -> None:
    check = make()
    check.observe(obs("vehicle.state", "ego", 0.0), ns(0.0))
    check.tick(ns(1.0))
    assert check.is_alive("vehicle.state", "ego") is False
    check.tick(ns(61.0))
    assert check.is_alive("vehicle.state", "ego") is None
