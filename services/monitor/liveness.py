"""Liveness: a (topic, key) is alive while its last message is younger than N expected periods.

Each transition is one finding: alive→stale (`topic_stale`, critical for the topics the gate
acts on) and stale→alive (`topic_alive`). The first message of a key that is fresh is announced
as `topic_alive` with `first_seen`; a key first seen through an old message (a backlog) is
silently stale, since it was never alive while watched. Topics without a rate are event-driven
and have no liveness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.messages import EventRefs, Severity
from services.monitor.findings import NS_PER_S, TOPIC_ALIVE, TOPIC_STALE, Finding, Observation


@dataclass
class _KeyState:
    last_ns: int
    alive: bool
    vehicle_id: str
    run_id: str
    partition: int
    offset: int


class LivenessCheck:
    """Per (topic, key) alive/stale state machine driven by messages and by a ticking clock."""

    def __init__(self, rates_hz: Mapping[str, float], *, stale_periods: float = 10.0,
                 critical_topics: Iterable[str] = (), forget_after_s: float = 300.0) -> None:
        self._timeout_ns = {t: int(stale_periods * NS_PER_S / r) for t, r in rates_hz.items() if r}
        self._rates = dict(rates_hz)
        self._critical = frozenset(critical_topics)
        self._forget_ns = int(forget_after_s * NS_PER_S)
        self._keys: dict[tuple[str, str], _KeyState] = {}

    def watches(self, topic: str) -> bool:
        """True when the topic has an expected rate (so liveness applies)."""
        return topic in self._timeout_ns

    def timeout_s(self, topic: str) -> float:
        """Silence after which a key of this topic is stale [s]."""
        return self._timeout_ns[topic] / NS_PER_S

    def observe(self, obs: Observation, now_ns: int) -> list[Finding]:
        """Record a message; a finding when it revives (or first announces) its key."""
        timeout = self._timeout_ns.get(obs.topic)
        if timeout is None:
            return []
        state = self._keys.get((obs.topic, obs.key))
        fresh = now_ns - obs.stamp_ns < timeout
        if state is None:
            self._keys[(obs.topic, obs.key)] = _KeyState(obs.stamp_ns, fresh, obs.vehicle_id,
                                                         obs.run_id, obs.partition, obs.offset)
            return [self._alive(obs, None, first_seen=True)] if fresh else []
        out: list[Finding] = []
        if state.alive and obs.stamp_ns - state.last_ns >= timeout:
            # A gap the ticking clock did not see (the loop was busy): report it after the fact.
            out.append(self._stale(obs.topic, obs.key, state, age_ns=obs.stamp_ns - state.last_ns))
            state.alive = False
        gap_ns = obs.stamp_ns - state.last_ns
        if obs.stamp_ns >= state.last_ns:
            state.last_ns = obs.stamp_ns
            state.partition, state.offset = obs.partition, obs.offset
        state.run_id = obs.run_id or state.run_id
        if not state.alive and fresh:
            state.alive = True
            out.append(self._alive(obs, gap_ns, first_seen=False))
        return out

    def tick(self, now_ns: int) -> list[Finding]:
        """Findings for keys that went silent; forget keys silent for very long."""
        out: list[Finding] = []
        for (topic, key), state in list(self._keys.items()):
            age_ns = now_ns - state.last_ns
            if state.alive and age_ns >= self._timeout_ns[topic]:
                state.alive = False
                out.append(self._stale(topic, key, state, age_ns=age_ns))
            elif not state.alive and age_ns > self._forget_ns:
                del self._keys[(topic, key)]
        return out

    def release(self, topic: str, partitions: Iterable[int]) -> list[str]:
        """Forget the keys last seen on these partitions (another replica watches them now).

        Without this, a rebalance would make the previous owner report them stale.
        Returns the keys forgotten.
        """
        parts = set(partitions)
        keys = [k for (t, k), s in self._keys.items() if t == topic and s.partition in parts]
        for key in keys:
            del self._keys[(topic, key)]
        return keys

    def is_alive(self, topic: str, key: str) -> bool | None:
        """Current state of a key; None when it is not tracked."""
        state = self._keys.get((topic, key))
        return None if state is None else state.alive

    def counts(self) -> dict[str, tuple[int, int]]:
        """topic → (alive keys, stale keys) for every watched topic."""
        out = dict.fromkeys(self._timeout_ns, (0, 0))
        for (topic, _), state in self._keys.items():
            alive, stale = out[topic]
            out[topic] = (alive + 1, stale) if state.alive else (alive, stale + 1)
        return out

    def _stale(self, topic: str, key: str, state: _KeyState, *, age_ns: int) -> Finding:
        severity = Severity.CRITICAL if topic in self._critical else Severity.WARNING
        return Finding(TOPIC_STALE, severity, state.vehicle_id, details={
            "topic": topic, "key": key, "silent_s": round(age_ns / NS_PER_S, 3),
            "timeout_s": self.timeout_s(topic), "expected_rate_hz": self._rates[topic]},
            refs=EventRefs(topic=topic, partition=state.partition, offset=state.offset),
            run_id=state.run_id)

    def _alive(self, obs: Observation, gap_ns: int | None, *, first_seen: bool) -> Finding:
        details: dict[str, object] = {"topic": obs.topic, "key": obs.key, "first_seen": first_seen,
                                      "expected_rate_hz": self._rates[obs.topic]}
        if gap_ns is not None:
            details["silent_s"] = round(gap_ns / NS_PER_S, 3)
        return Finding(TOPIC_ALIVE, Severity.INFO, obs.vehicle_id, details=details,
                       refs=obs.refs(), run_id=obs.run_id)
