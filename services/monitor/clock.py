"""The data clock: each run's time is the newest stamp its messages carry.

A lockstep run is stamped in simulation time, which runs slower than the wall clock (frame
N+1 is rendered only after the control of frame N) and stops between scenarios; a real-time
run is stamped on the wall clock. Judging either on the monitor's wall clock made a healthy
lockstep run look silent most of the time. So time is per run (`run_id`; "" for messages that
name none): the run's data clock is the newest data stamp accepted from any of its messages,
and a key is judged by how far its last stamp is behind it. The clock never moves without
data, so a run that ends on every topic at once is never judged stale by it.

`RunClocks` keeps, per run, that clock, the wall time of its last message, whether it was live
(its data clock within `live_window_s` of the wall clock: real time, not a backlog or a
simulation) and whether it announced its end (`run_finished`). `ClockSkewCheck` refuses data
stamps further than a tolerance in the future, so one bad stamp cannot move a run's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.messages import Severity
from services.monitor.findings import CLOCK_SKEW, NS_PER_S, Finding, Observation


@dataclass
class RunClock:
    """What the monitor knows of one run's time."""

    now_ns: int  # the data clock: newest data stamp accepted [ns on the run's own clock]
    arrival_ns: int  # wall-clock time of its last message [ns]
    live: bool = False  # at its last message, the data clock was within the live window of the wall
    ended: bool = False  # it announced its end: later messages are not judged
    silent_reported: bool = False  # its silence on the wall clock was reported


class RunClocks:
    """Per-run data clocks, driven by messages (`advance`) and forgotten when long silent."""

    def __init__(self, *, live_window_s: float, forget_after_s: float) -> None:
        self._live_ns = int(live_window_s * NS_PER_S)
        self._forget_ns = int(forget_after_s * NS_PER_S)
        self._runs: dict[str, RunClock] = {}

    def get(self, run_id: str) -> RunClock | None:
        """The run's clock, or None when the run is unknown."""
        return self._runs.get(run_id)

    def data_now(self, run_id: str) -> int | None:
        """The run's data clock [ns], or None before its first stamped message."""
        run = self._runs.get(run_id)
        return None if run is None or run.now_ns <= 0 else run.now_ns

    def advance(self, run_id: str, stamp_ns: int | None, wall_ns: int) -> RunClock:
        """A message of the run arrived at `wall_ns`, stamped `stamp_ns` (None: no data stamp).

        The clock only moves forward; an ended run is returned unchanged.
        """
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = RunClock(now_ns=0, arrival_ns=wall_ns)
        if run.ended:
            return run
        run.arrival_ns = wall_ns
        run.silent_reported = False
        if stamp_ns is not None and stamp_ns > run.now_ns:
            run.now_ns = stamp_ns
        run.live = run.now_ns > 0 and wall_ns - run.now_ns <= self._live_ns
        return run

    def end(self, run_id: str, wall_ns: int) -> bool:
        """The run announced its end; True when it was not ended before.

        An unknown run is remembered as ended too: its messages may still be on their way.
        """
        run = self._runs.get(run_id)
        if run is None:
            self._runs[run_id] = RunClock(now_ns=0, arrival_ns=wall_ns, ended=True)
            return True
        if run.ended:
            return False
        run.ended, run.arrival_ns = True, wall_ns
        return True

    def silent(self, wall_ns: int, silence_s: float) -> list[str]:
        """Live runs, not ended, with no message for `silence_s` of wall time (each once)."""
        limit = int(silence_s * NS_PER_S)
        out: list[str] = []
        for run_id, run in self._runs.items():
            if (run.live and not run.ended and not run.silent_reported
                    and wall_ns - run.arrival_ns >= limit):
                run.silent_reported = True
                out.append(run_id)
        return out

    def prune(self, wall_ns: int) -> list[str]:
        """Forget runs without a message for `forget_after_s` of wall time; their ids."""
        gone = [r for r, run in self._runs.items() if wall_ns - run.arrival_ns > self._forget_ns]
        for run_id in gone:
            del self._runs[run_id]
        return gone


@dataclass
class _SkewWindow:
    last_event_ns: int
    since: int = 0


class ClockSkewCheck:
    """Data stamps further than `tolerance_s` ahead of the reference clock are refused.

    One `clock_skew` warning per topic per `window_s` (wall clock); the next one says how many
    skewed messages came in between.
    """

    def __init__(self, *, tolerance_s: float, window_s: float) -> None:
        self.tolerance_ns = int(tolerance_s * NS_PER_S)
        self._window_ns = int(window_s * NS_PER_S)
        self._windows: dict[str, _SkewWindow] = {}

    def skewed(self, stamp_ns: int, reference_ns: int | None) -> bool:
        """True when the stamp is beyond the reference plus the tolerance."""
        return reference_ns is not None and stamp_ns - reference_ns > self.tolerance_ns

    def finding(self, obs: Observation, reference_ns: int, reference: str,
                wall_ns: int) -> list[Finding]:
        """The rate-limited event for a skewed message (empty inside the topic's window)."""
        win = self._windows.get(obs.topic)
        if win is not None and wall_ns - win.last_event_ns < self._window_ns:
            win.since += 1
            return []
        details: dict[str, object] = {
            "topic": obs.topic, "key": obs.key, "stamp_ns": obs.stamp_ns,
            "reference_ns": reference_ns, "reference": reference,
            "ahead_s": round((obs.stamp_ns - reference_ns) / NS_PER_S, 3),
            "tolerance_s": self.tolerance_ns / NS_PER_S, "window_s": self._window_ns / NS_PER_S,
            "effect": "the message does not count as fresh and does not move the run's clock"}
        if win is not None:
            details["skewed_since_last_event"] = win.since
        self._windows[obs.topic] = _SkewWindow(wall_ns)
        return [Finding(CLOCK_SKEW, Severity.WARNING, obs.vehicle_id, details=details,
                        refs=obs.refs(), run_id=obs.run_id)]
