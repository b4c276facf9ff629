"""Liveness on the runs' data clocks: one event per real transition, with hysteresis."""

from __future__ import annotations

from services.messages import Severity
from services.monitor.findings import TOPIC_ALIVE, TOPIC_STALE, Finding
from services.monitor.liveness import LivenessCheck
from tests.unit.monitor.helpers import ns, obs

RATES = {"vehicle.state": 20.0, "sim.ground_truth": 10.0}  # stale after 0.5 s / 1.0 s of data
STATE, TRUTH = ("vehicle.state", "ego"), ("sim.ground_truth", "ego/front")


def make(*, run_silence_s: float | None = None) -> LivenessCheck:
    return LivenessCheck(RATES, stale_periods=10, critical_topics=["vehicle.state"],
                         forget_after_s=60, hold_s=0.5, alive_after_messages=3,
                         run_silence_s=run_silence_s)


class Drive:
    """Feeds a check: data time runs `slow` times slower than the wall clock (lockstep-like);
    the check ticks every 100 ms of wall time. Wall and data seconds are both from T0."""

    def __init__(self, check: LivenessCheck, *, slow: float = 3.0, run_id: str = "r1") -> None:
        self.check, self.slow, self.run_id = check, slow, run_id
        self.wall_s = 0.0
        self.offset = 0
        self.found: list[Finding] = []

    def wait(self, wall_s: float) -> None:
        """Let wall time pass, ticking at every multiple of 100 ms."""
        end = self.wall_s + wall_s
        tick_s = (int(self.wall_s * 10 + 1e-6) + 1) / 10
        while tick_s <= end + 1e-9:
            self.found += self.check.tick(ns(tick_s))
            tick_s += 0.1
        self.wall_s = end

    def send(self, topic_key: tuple[str, str], data_s: float) -> list[Finding]:
        """One message stamped `data_s`, arriving now."""
        self.offset += 1
        out = self.check.observe(obs(*topic_key, data_s, offset=self.offset, run_id=self.run_id),
                                 ns(self.wall_s))
        self.found += out
        return out

    def run(self, data_from_s: float, data_to_s: float, *, truth: bool = True,
            state: bool = True) -> None:
        """The 20 Hz state and the 10 Hz ground truth over [from, to) of data time."""
        for i in range(round((data_to_s - data_from_s) / 0.05)):
            t = data_from_s + i * 0.05
            if state:
                self.send(STATE, t)
            if truth and round(t / 0.05) % 2 == 0:
                self.send(TRUTH, t)
            self.wait(0.05 * self.slow)


def kinds(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.type, f.details["topic"]) for f in found]


def test_a_healthy_stream_slower_than_the_wall_clock_raises_nothing() -> None:
    drive = Drive(make())
    drive.run(0.0, 10.0)  # 10 s of simulation time over 30 s of wall time
    assert drive.found == []  # the first messages are not announced either
    assert drive.check.is_alive(*STATE, run_id="r1") is True
    assert drive.check.counts()["sim.ground_truth"] == (1, 0)


def test_a_topic_stopping_mid_run_is_stale_once_after_its_timeout_and_the_hold() -> None:
    drive = Drive(make())
    drive.run(0.0, 2.0)  # the last ground truth is stamped 1.9 s
    stopped_wall_s = drive.wall_s
    drive.run(2.0, 2.8, truth=False)  # data clock 2.75 s: 0.85 s behind, under 1 s
    assert drive.found == []
    drive.run(2.8, 3.0, truth=False)  # overdue from data 2.9 s, for 0.3 s of wall time
    assert drive.found == []
    drive.run(3.0, 3.2, truth=False)  # the hold is 0.5 s of wall time
    assert kinds(drive.found) == [(TOPIC_STALE, "sim.ground_truth")]
    stale = drive.found[0]
    assert stale.severity == Severity.WARNING  # not one of the critical topics
    assert stale.run_id == "r1"
    assert stale.details["clock"] == "data"
    assert stale.details["timeout_s"] == 1.0
    assert 1.0 <= stale.details["silent_s"] <= 1.25  # data time
    assert drive.wall_s - stopped_wall_s > 3.0  # judged on data time, not on the wall clock
    drive.run(3.3, 8.0, truth=False)  # a long silence is one event
    assert len(drive.found) == 1


def test_recovery_needs_fresh_messages_in_a_row_and_raises_one_alive() -> None:
    drive = Drive(make())
    drive.run(0.0, 2.0)
    drive.run(2.0, 4.0, truth=False)
    assert kinds(drive.found) == [(TOPIC_STALE, "sim.ground_truth")]
    drive.send(STATE, 4.0)
    assert drive.send(TRUTH, 4.0) == []  # 1 of 3
    drive.send(STATE, 4.05)
    drive.send(STATE, 4.1)
    assert drive.send(TRUTH, 4.1) == []  # 2 of 3
    drive.send(STATE, 4.15)
    drive.send(STATE, 4.2)
    back = drive.send(TRUTH, 4.2)
    assert kinds(back) == [(TOPIC_ALIVE, "sim.ground_truth")]
    assert back[0].severity == Severity.INFO
    assert back[0].details["silent_s"] == 2.1  # 1.9 → 4.0 s of data time
    drive.run(4.25, 8.0)
    assert kinds(drive.found) == [(TOPIC_STALE, "sim.ground_truth"), (TOPIC_ALIVE, "sim.ground_truth")]


def test_flapping_is_damped() -> None:
    drive = Drive(make())
    drive.run(0.0, 1.0)  # the last ground truth is stamped 0.9 s
    # Ground truth every 1.05 s, just over its 1 s timeout, again and again: overdue for one
    # tick of the state (0.05 s of data, 0.15 s of wall time) each time, under the hold.
    truth_s, t = 0.9, 1.0
    for _ in range(5):
        truth_s = round(truth_s + 1.05, 2)
        while t < truth_s - 1e-9:
            drive.send(STATE, t)
            drive.wait(0.15)
            t = round(t + 0.05, 2)
        drive.send(STATE, t)
        drive.send(TRUTH, truth_s)
        drive.wait(0.15)
        t = round(t + 0.05, 2)
    assert drive.found == []
    # Stale for real, then single messages between long silences: one stale, no alive, no repeat.
    for _ in range(5):
        drive.run(t, t + 2.0, truth=False)
        drive.send(TRUTH, t + 1.95)
        t += 2.0
    assert kinds(drive.found) == [(TOPIC_STALE, "sim.ground_truth")]


def test_a_topic_queued_behind_another_is_not_stale() -> None:
    drive = Drive(make(), slow=0.25)  # faster than the wall clock
    drive.run(0.0, 1.0)
    # The state consumer runs 1.2 s of data ahead within 0.3 s of wall time; the ground truth
    # of the same ticks arrives just after (a consumer behind another one, no gap in the data).
    drive.run(1.0, 2.2, truth=False)
    for i in range(12):
        drive.send(TRUTH, 1.0 + 0.1 * i)
    drive.run(2.2, 4.0)
    assert drive.found == []


def test_a_run_that_stops_on_every_topic_is_no_outage_on_the_simulation_clock() -> None:
    drive = Drive(make())
    drive.run(0.0, 3.0)
    drive.wait(59.0)  # the simulation clock stops with the data: nothing is behind it
    assert drive.found == []
    drive.wait(2.0)
    drive.check.prune(ns(drive.wall_s))  # forgotten after 60 s of wall time without a message
    assert drive.check.is_alive(*STATE, run_id="r1") is None


def test_on_the_wall_clock_a_run_silent_on_every_topic_is_stale_unless_it_ended() -> None:
    drive = Drive(make(run_silence_s=2.0), slow=1.0)
    drive.run(0.0, 3.0)  # real time: the data clock is the wall clock
    drive.wait(1.9)
    assert drive.found == []
    drive.wait(0.2)
    assert sorted(kinds(drive.found)) == [(TOPIC_STALE, "sim.ground_truth"),
                                          (TOPIC_STALE, "vehicle.state")]
    assert {f.details["clock"] for f in drive.found} == {"wall"}
    assert next(f for f in drive.found if f.details["topic"] == "vehicle.state").severity \
        == Severity.CRITICAL
    drive.wait(10.0)
    assert len(drive.found) == 2  # once
    # The next run announces its end: its silence is no outage, and stragglers are ignored.
    ended = Drive(make(run_silence_s=2.0), slow=1.0, run_id="r2")
    ended.run(0.0, 3.0)
    assert ended.check.end_run("r2", ns(ended.wall_s)) != []
    ended.send(STATE, 3.0)
    ended.wait(10.0)
    assert ended.found == []
    assert ended.check.is_alive(*STATE, run_id="r2") is None


def test_the_wall_clock_rule_ignores_a_backlog() -> None:
    drive = Drive(make(run_silence_s=2.0), slow=1.0)
    drive.wall_s = 100.0  # the data is 100 s old when it arrives: a backlog, not a live run
    for i in range(40):
        drive.send(STATE, 0.05 * i)
    drive.wait(10.0)
    assert drive.found == []


def test_a_key_first_seen_behind_its_run_starts_stale_and_revives_silently() -> None:
    drive = Drive(make())
    drive.run(0.0, 3.0, truth=False)
    assert drive.send(TRUTH, 1.0) == []  # 2 s behind the run's clock
    assert drive.check.is_alive(*TRUTH, run_id="r1") is False
    for t in (3.0, 3.1, 3.2):
        drive.send(STATE, t)
        drive.send(TRUTH, t)
    assert drive.check.is_alive(*TRUTH, run_id="r1") is True
    assert drive.found == []  # never reported stale: no alive either


def test_runs_have_their_own_clocks_and_keys() -> None:
    check = make()
    first, second = Drive(check, run_id="a"), Drive(check, run_id="b")
    first.run(0.0, 2.0)
    second.wall_s = first.wall_s
    second.run(500.0, 510.0)  # the next scenario: a new run, its clock far ahead
    assert first.found == second.found == []


def test_event_driven_topics_have_no_liveness() -> None:
    check = make()
    assert check.observe(obs("safety.events", "ego", 0.0), ns(0.0)) == []
    assert check.tick(ns(1000.0)) == []
    assert not check.watches("safety.events")


def test_released_partitions_forget_their_keys() -> None:
    drive = Drive(make())
    drive.run(0.0, 1.0)
    assert drive.check.release("vehicle.state", [0]) == [("r1", "vehicle.state", "ego")]
    assert drive.check.is_alive(*STATE, run_id="r1") is None
    drive.run(1.0, 3.0, state=False)
    assert drive.found == []
