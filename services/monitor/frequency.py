"""Frequency: a (run, topic, key) is OK while its average rate is at least a fraction of the
expected.

The rate is the average over the last `window` messages, from their own data stamps:
(n − 1) / (last − first), a rate in the data's time (simulation time in lockstep). With fewer
than `min_messages` there is no verdict. Each transition is one finding (`frequency_low`
warning, `frequency_ok` info); the way back to OK needs `min_ratio + hysteresis` so a stream
hovering at the threshold does not flood the events. After a silence the window restarts (the
gap is liveness' business, not a low rate).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.messages import Severity
from services.monitor.findings import FREQUENCY_LOW, FREQUENCY_OK, NS_PER_S, Finding, Observation


@dataclass
class _Window:
    stamps_ns: deque[int]
    ok: bool | None = None
    last_ratio: float | None = field(default=None)


class FrequencyCheck:
    """Per (run, topic, key) rolling average rate against the registry's expected rate."""

    def __init__(self, rates_hz: Mapping[str, float], *, window: int = 100, min_messages: int = 20,
                 min_ratio: float = 0.9, hysteresis: float = 0.02) -> None:
        if not 2 <= min_messages <= window:
            raise ValueError("need 2 <= min_messages <= window")
        self._rates = {t: r for t, r in rates_hz.items() if r}
        self._size = window
        self._min = min_messages
        self._low = min_ratio
        self._ok = min_ratio + hysteresis
        self._keys: dict[tuple[str, str, str], _Window] = {}  # (run id, topic, key)

    def observe(self, obs: Observation) -> list[Finding]:
        """Add a message; a finding when the key's verdict changes."""
        expected = self._rates.get(obs.topic)
        if expected is None:
            return []
        win = self._keys.setdefault((obs.run_id, obs.topic, obs.key),
                                    _Window(deque(maxlen=self._size)))
        win.stamps_ns.append(obs.stamp_ns)
        rate = self.rate_hz(obs.topic, obs.key, obs.run_id)
        if rate is None:
            return []
        ratio = rate / expected
        win.last_ratio = ratio
        if win.ok is not False and ratio < self._low:
            win.ok = False
            return [self._finding(FREQUENCY_LOW, Severity.WARNING, obs, rate, expected, win)]
        if win.ok is None:
            win.ok = True  # the first verdict is OK: nothing to report
        elif win.ok is False and ratio >= self._ok:
            win.ok = True
            return [self._finding(FREQUENCY_OK, Severity.INFO, obs, rate, expected, win)]
        return []

    def rate_hz(self, topic: str, key: str, run_id: str = "") -> float | None:
        """The key's current average rate [Hz], or None without enough messages."""
        win = self._keys.get((run_id, topic, key))
        if win is None or len(win.stamps_ns) < self._min:
            return None
        span_ns = max(win.stamps_ns) - min(win.stamps_ns)
        if span_ns <= 0:
            return None
        return (len(win.stamps_ns) - 1) * NS_PER_S / span_ns

    def restart(self, topic: str, key: str, run_id: str = "") -> None:
        """Drop the key's samples (after a silence); its verdict is kept."""
        win = self._keys.get((run_id, topic, key))
        if win is not None:
            win.stamps_ns.clear()

    def forget(self, topic: str, key: str, run_id: str = "") -> None:
        """Drop a key entirely (samples and verdict): its run ended or was forgotten."""
        self._keys.pop((run_id, topic, key), None)

    def min_ratios(self) -> dict[str, float]:
        """topic → the lowest rate / expected among its keys with a verdict."""
        out: dict[str, float] = {}
        for (_, topic, _), win in self._keys.items():
            if win.last_ratio is not None:
                out[topic] = min(out.get(topic, win.last_ratio), win.last_ratio)
        return out

    def _finding(self, type_: str, severity: Severity, obs: Observation, rate: float,
                 expected: float, win: _Window) -> Finding:
        return Finding(type_, severity, obs.vehicle_id, details={
            "topic": obs.topic, "key": obs.key, "rate_hz": round(rate, 3),
            "expected_rate_hz": expected, "ratio": round(rate / expected, 4),
            "min_ratio": self._low, "messages": len(win.stamps_ns)},
            refs=obs.refs(), run_id=obs.run_id)
