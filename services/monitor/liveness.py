"""Liveness on the data clock: a (run, topic, key) is stale when it falls behind its run's clock.

Time is the run's data clock (`services.monitor.clock`): the newest data stamp of the run. The
rules, in the order they apply:

- **Data rule.** A key is overdue when its run's clock is `stale_periods` expected periods past
  the key's last stamp (the other topics of the run went on, this one did not). It turns stale
  (`topic_stale`, critical for the topics the gate acts on) once it has stayed overdue for
  `hold_s` of wall time: until then its messages may only be queued behind another topic's in
  the monitor's own consumers.
- **Run rule** (wall clock, real time only: `run_silence_s` set). The data clock stops when all
  the data stops, so a producer that dies with every topic would never be overdue. A live run
  (its clock near the wall clock) with no message on any topic for `run_silence_s`, and no
  announced end, has every alive key turn stale. In lockstep there is no such rule: simulation
  time does not pass without data, and a stalled loop is not a wall-clock deadline.
- **End.** A run that announced its end (`end_run`) is dropped without an event, and its later
  messages are ignored: a scenario that finished is not an outage.
- **Hysteresis.** A stale key is alive again after `alive_after_messages` fresh messages in a
  row (fresh: within the timeout of its run's clock; a tick that finds it overdue again starts
  the count anew). `topic_alive` (info) is raised only then,
  and only after a reported `topic_stale`; a key seen for the first time is not announced. A key
  first seen behind its run's clock (a backlog) starts stale, silently.

Topics without a rate are event-driven and have no liveness.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from services.messages import EventRefs, Severity
from services.monitor.clock import RunClocks
from services.monitor.findings import NS_PER_S, TOPIC_ALIVE, TOPIC_STALE, Finding, Observation

#: (run id, topic, key)
KeyId = tuple[str, str, str]


@dataclass
class _KeyState:
    last_ns: int  # newest data stamp of the key
    alive: bool
    vehicle_id: str
    partition: int
    offset: int
    overdue_since_ns: int | None = None  # wall time it was first found overdue
    reported_stale: bool = False
    stale_from_ns: int = 0  # its last stamp when it turned stale
    fresh_in_row: int = 0
    first_fresh_ns: int = 0  # stamp of the first of those fresh messages


class LivenessCheck:
    """Per (run, topic, key) alive/stale state machine on the runs' data clocks."""

    def __init__(self, rates_hz: Mapping[str, float], *, stale_periods: float = 10.0,
                 critical_topics: Iterable[str] = (), forget_after_s: float = 300.0,
                 hold_s: float = 0.5, alive_after_messages: int = 5,
                 run_silence_s: float | None = None) -> None:
        if alive_after_messages < 1:
            raise ValueError("alive_after_messages must be at least 1")
        self._timeout_ns = {t: int(stale_periods * NS_PER_S / r) for t, r in rates_hz.items() if r}
        self._rates = dict(rates_hz)
        self._critical = frozenset(critical_topics)
        self._hold_ns = int(hold_s * NS_PER_S)
        self._alive_after = alive_after_messages
        self._run_silence_s = run_silence_s
        #: The runs' data clocks (the Monitor reads them too: skew reference, unstamped messages).
        self.clocks = RunClocks(live_window_s=run_silence_s or 0.0, forget_after_s=forget_after_s)
        self._keys: dict[KeyId, _KeyState] = {}

    def watches(self, topic: str) -> bool:
        """True when the topic has an expected rate (so liveness applies)."""
        return topic in self._timeout_ns

    def timeout_s(self, topic: str) -> float:
        """Data-clock silence after which a key of this topic is overdue [s]."""
        return self._timeout_ns[topic] / NS_PER_S

    def observe(self, obs: Observation, wall_ns: int, *, stamped: bool = True) -> list[Finding]:
        """Record a message arrived at `wall_ns`; a finding when it revives a stale key.

        `stamped` False: the message carries no readable data stamp; it shows its producer is
        alive at the run's current time and does not move the run's clock.
        """
        timeout = self._timeout_ns.get(obs.topic)
        if timeout is None:
            return []
        run = self.clocks.advance(obs.run_id, obs.stamp_ns if stamped else None, wall_ns)
        if run.ended or run.now_ns <= 0:
            return []
        stamp_ns = obs.stamp_ns if stamped else run.now_ns
        fresh = run.now_ns - stamp_ns < timeout
        key_id = (obs.run_id, obs.topic, obs.key)
        state = self._keys.get(key_id)
        if state is None:
            self._keys[key_id] = _KeyState(stamp_ns, fresh, obs.vehicle_id, obs.partition,
                                           obs.offset)
            return []
        if stamp_ns >= state.last_ns:
            state.last_ns = stamp_ns
            state.partition, state.offset = obs.partition, obs.offset
        if state.alive:
            if run.now_ns - state.last_ns < timeout:
                state.overdue_since_ns = None
            return []
        if not fresh:
            state.fresh_in_row = 0
            return []
        state.fresh_in_row += 1
        if state.fresh_in_row == 1:
            state.first_fresh_ns = stamp_ns
        if state.fresh_in_row < self._alive_after:
            return []
        state.alive, state.fresh_in_row, state.overdue_since_ns = True, 0, None
        if not state.reported_stale:
            return []  # it was never reported stale: nothing to take back
        state.reported_stale = False
        return [self._alive(obs, silent_ns=state.first_fresh_ns - state.stale_from_ns)]

    def tick(self, wall_ns: int) -> list[Finding]:
        """Findings for keys that fell behind their run's clock, and for silent live runs."""
        out: list[Finding] = []
        if self._run_silence_s is not None:
            for run_id in self.clocks.silent(wall_ns, self._run_silence_s):
                run = self.clocks.get(run_id)
                silent_ns = wall_ns - run.arrival_ns if run is not None else 0
                for (r, topic, key), state in self._keys.items():
                    if r == run_id and state.alive:
                        out.append(self._stale(r, topic, key, state, silent_ns, clock="wall"))
        for (run_id, topic, key), state in self._keys.items():
            run = self.clocks.get(run_id)
            if run is None or run.ended:
                continue
            age_ns = run.now_ns - state.last_ns
            if not state.alive:
                if age_ns >= self._timeout_ns[topic]:
                    state.fresh_in_row = 0  # silent again: the fresh messages were not "in a row"
                continue
            if age_ns < self._timeout_ns[topic]:
                state.overdue_since_ns = None
                continue
            if state.overdue_since_ns is None:
                state.overdue_since_ns = wall_ns
            if wall_ns - state.overdue_since_ns >= self._hold_ns:
                out.append(self._stale(run_id, topic, key, state, age_ns, clock="data"))
        return out

    def end_run(self, run_id: str, wall_ns: int) -> list[KeyId]:
        """The run announced its end: drop its keys silently; the keys dropped."""
        self.clocks.end(run_id, wall_ns)
        return self._drop(lambda key_id, _: key_id[0] == run_id)

    def prune(self, wall_ns: int) -> list[KeyId]:
        """Forget runs silent for `forget_after_s` of wall time, with their keys."""
        gone = set(self.clocks.prune(wall_ns))
        return self._drop(lambda key_id, _: key_id[0] in gone) if gone else []

    def release(self, topic: str, partitions: Iterable[int]) -> list[KeyId]:
        """Forget the keys last seen on these partitions (another replica watches them now).

        Without this, a rebalance would make the previous owner report them stale.
        """
        parts = set(partitions)
        return self._drop(lambda key_id, s: key_id[1] == topic and s.partition in parts)

    def is_alive(self, topic: str, key: str, run_id: str = "") -> bool | None:
        """Current state of a key of a run; None when it is not tracked."""
        state = self._keys.get((run_id, topic, key))
        return None if state is None else state.alive

    def counts(self) -> dict[str, tuple[int, int]]:
        """topic → (alive keys, stale keys) for every watched topic, over all runs."""
        out = dict.fromkeys(self._timeout_ns, (0, 0))
        for (_, topic, _), state in self._keys.items():
            alive, stale = out[topic]
            out[topic] = (alive + 1, stale) if state.alive else (alive, stale + 1)
        return out

    def _drop(self, match: Callable[[KeyId, _KeyState], bool]) -> list[KeyId]:
        gone = [k for k, s in self._keys.items() if match(k, s)]
        for key_id in gone:
            del self._keys[key_id]
        return gone

    def _stale(self, run_id: str, topic: str, key: str, state: _KeyState, silent_ns: int, *,
               clock: str) -> Finding:
        state.alive, state.reported_stale, state.stale_from_ns = False, True, state.last_ns
        state.fresh_in_row, state.overdue_since_ns = 0, None
        severity = Severity.CRITICAL if topic in self._critical else Severity.WARNING
        return Finding(TOPIC_STALE, severity, state.vehicle_id, details={
            "topic": topic, "key": key, "silent_s": round(silent_ns / NS_PER_S, 3),
            "timeout_s": self.timeout_s(topic), "expected_rate_hz": self._rates[topic],
            "clock": clock},
            refs=EventRefs(topic=topic, partition=state.partition, offset=state.offset),
            run_id=run_id)

    def _alive(self, obs: Observation, *, silent_ns: int) -> Finding:
        return Finding(TOPIC_ALIVE, Severity.INFO, obs.vehicle_id, details={
            "topic": obs.topic, "key": obs.key, "expected_rate_hz": self._rates[obs.topic],
            "silent_s": round(silent_ns / NS_PER_S, 3),
            "fresh_messages": self._alive_after}, refs=obs.refs(), run_id=obs.run_id)
