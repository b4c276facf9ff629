"""Frequency: the rolling average over the last messages against 90 % of the expected rate."""

from __future__ import annotations

import pytest

from services.messages import Severity
from services.monitor.findings import FREQUENCY_LOW, FREQUENCY_OK, Finding
from services.monitor.frequency import FrequencyCheck
from tests.unit.monitor.helpers import obs


def stream(check: FrequencyCheck, start_s: float, seconds: float, rate_hz: float,
           first_offset: int = 0, key: str = "ego") -> tuple[list[Finding], float, int]:
    out: list[Finding] = []
    n = round(seconds * rate_hz)
    for i in range(n):
        out += check.observe(obs("vehicle.state", key, start_s + i / rate_hz, first_offset + i))
    return out, start_s + n / rate_hz, first_offset + n


def make(hysteresis: float = 0.02) -> FrequencyCheck:
    return FrequencyCheck({"vehicle.state": 20.0}, window=100, min_messages=10,
                          hysteresis=hysteresis)


def test_full_rate_is_silent_and_measured() -> None:
    check = make()
    out, _, _ = stream(check, 0.0, 6.0, 20.0)
    assert out == []
    assert check.rate_hz("vehicle.state", "ego") == pytest.approx(20.0)


def test_drop_to_80_percent_is_one_low_event_and_recovery_one_ok_event() -> None:
    check = make()
    _, t, i = stream(check, 0.0, 5.0, 20.0)
    low, t, i = stream(check, t, 10.0, 16.0, i)
    assert [(f.type, f.severity) for f in low] == [(FREQUENCY_LOW, Severity.WARNING)]
    details = low[0].details
    assert details["rate_hz"] < 18.0
    assert details["expected_rate_hz"] == 20.0
    assert details["topic"] == "vehicle.state"
    assert low[0].vehicle_id == "ego"
    ok, _, _ = stream(check, t, 10.0, 20.0, i)
    assert [(f.type, f.severity) for f in ok] == [(FREQUENCY_OK, Severity.INFO)]


def test_95_percent_is_still_ok() -> None:
    check = make()
    out, _, _ = stream(check, 0.0, 20.0, 19.0)
    assert out == []


def test_a_key_slow_from_the_start_is_reported_once() -> None:
    check = make()
    out, _, _ = stream(check, 0.0, 10.0, 10.0)
    assert [f.type for f in out] == [FREQUENCY_LOW]
    assert out[0].details["messages"] == 10  # the first verdict, at min_messages


def test_no_verdict_below_min_messages() -> None:
    check = make()
    out, _, _ = stream(check, 0.0, 0.45, 2.0)  # 1 message
    assert out == []
    assert check.rate_hz("vehicle.state", "ego") is None


def test_hysteresis_needs_min_ratio_plus_margin_to_recover() -> None:
    check = make(hysteresis=0.05)
    _, t, i = stream(check, 0.0, 5.0, 20.0)
    low, t, i = stream(check, t, 10.0, 16.0, i)
    assert [f.type for f in low] == [FREQUENCY_LOW]
    hover, t, i = stream(check, t, 10.0, 18.4, i)  # 92 %: above 90 % but below 95 %
    assert hover == []
    ok, _, _ = stream(check, t, 10.0, 20.0, i)
    assert [f.type for f in ok] == [FREQUENCY_OK]


def test_restart_forgets_the_gap() -> None:
    check = make()
    _, t, i = stream(check, 0.0, 5.0, 20.0)
    check.restart("vehicle.state", "ego")
    out, _, _ = stream(check, t + 30.0, 5.0, 20.0, i)  # 30 s silence, then full rate
    assert out == []


def test_keys_are_independent() -> None:
    check = make()
    a, _, _ = stream(check, 0.0, 10.0, 20.0, key="a")
    b, _, _ = stream(check, 0.0, 10.0, 12.0, key="b")
    assert a == []
    assert [f.details["key"] for f in b] == ["b"]
    assert check.min_ratios()["vehicle.state"] == pytest.approx(0.6, abs=0.01)


def test_bad_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_messages"):
        FrequencyCheck({"x": 1.0}, window=5, min_messages=10)
