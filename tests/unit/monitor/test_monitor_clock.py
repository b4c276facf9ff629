"""The Monitor on the data's clock: healthy lockstep and real-time streams raise no alarm; a
stopped topic, a silent producer and a future stamp do, once each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from services.messages import ControlClock, ControlMode, Severity
from services.monitor.findings import (
    CLOCK_SKEW,
    LATENCY_BUDGET_EXCEEDED,
    TOPIC_ALIVE,
    TOPIC_STALE,
    Finding,
)
from services.monitor.metrics import MonitorMetrics
from services.monitor.monitor import Monitor
from services.monitor.settings import MonitorSettings
from services.runtime.delivery import Record
from tests.unit.monitor.helpers import StackStream, ns

YEAR_NS = 365 * 24 * 3600 * 1_000_000_000


class Loop:
    """Drives a Monitor as the service does: records on arrival, a tick every 100 ms (wall)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.wall_s = 0.0
        self.ticks = 0  # ticks so far: tick k runs at k × 100 ms of wall time
        self.found: list[Finding] = []
        self.offsets: Counter[str] = Counter()

    def wait(self, wall_s: float) -> None:
        end = self.wall_s + wall_s
        while (self.ticks + 1) * 0.1 <= end + 1e-9:
            self.ticks += 1
            self.wall_s = self.ticks * 0.1
            self.found += self.monitor.tick(ns(self.wall_s))
        self.wall_s = end

    def feed(self, records: list[Record]) -> list[Finding]:
        out = [f for r in records for f in self.monitor.observe(r, ns(self.wall_s))]
        self.found += out
        return out

    def stream(self, run_id: str, *, slow: float,
               clock: ControlClock = ControlClock.SOURCE) -> StackStream:
        """A run whose data clock starts now on the wall clock, as the simulator stamps it."""
        return StackStream(run_id, ns(self.wall_s), self.offsets, command_clock=clock)

    def run(self, stream: StackStream, seqs: range, *, wall_per_tick_s: float,
            skip: Callable[[int], tuple[str, ...]] = lambda seq: ()) -> None:
        for seq in seqs:
            self.feed(stream.records(seq, ns(self.wall_s), skip=skip(seq)))
            self.wait(wall_per_tick_s)


def loud(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.severity != Severity.INFO]


def kinds(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.type, f.details.get("topic", "")) for f in found]


def lockstep() -> Monitor:
    return Monitor(MonitorSettings(clock="simulation", lag_interval_s=0))


def realtime(registry: CollectorRegistry | None = None) -> Monitor:
    return Monitor(MonitorSettings(clock="wall", lag_interval_s=0),
                   metrics=MonitorMetrics(registry) if registry else None)


def test_a_healthy_lockstep_run_raises_no_event() -> None:
    loop = Loop(lockstep())
    for scenario in ("ccrs", "cut_in"):
        stream = loop.stream(scenario, slow=3.0)
        loop.wait(3.0)  # the first frame waits for the detector to warm up: nothing moves
        # 12 s of simulation time over 36 s of wall time (3 × slower); the first frame's capture
        # stamp was the wall clock, so perception's publish stamps run further and further ahead
        loop.run(stream, range(240), wall_per_tick_s=0.15)
        loop.feed([stream.finished(ns(loop.wall_s))])
        loop.wait(5.0)  # between scenarios
    assert loop.found == []


def test_a_healthy_real_time_run_that_announces_its_ends_raises_no_event() -> None:
    loop = Loop(realtime())
    for scenario in ("ccrs", "cut_in"):
        stream = loop.stream(scenario, slow=1.0, clock=ControlClock.WALL)
        loop.run(stream, range(200), wall_per_tick_s=0.05)
        loop.feed([stream.finished(ns(loop.wall_s))])
        # the gate goes on commanding its stop for a while: not judged after the end
        for seq in range(200, 210):
            loop.feed(stream.records(seq, ns(loop.wall_s), skip=StackStream.TOPICS[:5]))
            loop.wait(0.05)
        loop.wait(5.0)
    assert loop.found == []


def test_in_real_time_a_producer_that_dies_with_every_topic_is_stale_once_per_topic() -> None:
    loop = Loop(realtime())
    stream = loop.stream("run", slow=1.0, clock=ControlClock.WALL)
    loop.run(stream, range(100), wall_per_tick_s=0.05)
    loop.wait(1.9)
    assert loop.found == []
    loop.wait(10.0)  # no end was announced: an outage, on the wall clock
    assert sorted(kinds(loop.found)) == sorted((TOPIC_STALE, t) for t in StackStream.TOPICS)
    assert {f.details["clock"] for f in loop.found} == {"wall"}


def test_a_topic_stopping_mid_run_raises_one_stale_and_its_recovery_one_alive() -> None:
    loop = Loop(lockstep())
    stream = loop.stream("run", slow=3.0)

    def perception_down(seq: int) -> tuple[str, ...]:
        return ("perception.objects",) if 60 <= seq < 100 else ()

    loop.run(stream, range(60), wall_per_tick_s=0.15)
    loop.run(stream, range(60, 100), wall_per_tick_s=0.15, skip=perception_down)
    assert kinds(loop.found) == [(TOPIC_STALE, "perception.objects")]
    stale = loop.found[0]
    assert stale.severity == Severity.CRITICAL
    assert stale.details["clock"] == "data"
    assert stale.run_id == "run"
    loop.run(stream, range(100, 200), wall_per_tick_s=0.15)
    assert kinds(loop.found) == [(TOPIC_STALE, "perception.objects"),
                                 (TOPIC_ALIVE, "perception.objects")]
    assert loop.found[1].severity == Severity.INFO
    assert loop.found[1].details["silent_s"] == 2.05  # seq 59 → seq 100, in simulation time


def test_flapping_is_damped() -> None:
    loop = Loop(lockstep())
    stream = loop.stream("run", slow=3.0)

    def hiccups(seq: int) -> tuple[str, ...]:
        # perception misses 10 ticks in every 150: silent 0.55 s, just over its 0.5 s timeout
        # (from its third window on, so its rate over the last 100 messages stays above 90 %)
        return ("perception.objects",) if seq > 150 and 75 <= seq % 150 < 85 else ()

    loop.run(stream, range(800), wall_per_tick_s=0.15, skip=hiccups)
    # overdue for one tick of the simulation each time (0.15 s of wall time): under the hold
    assert loop.found == []


def test_a_future_stamped_frame_raises_one_clock_skew_and_does_not_move_the_clock() -> None:
    registry = CollectorRegistry()
    loop = Loop(realtime(registry))
    stream = loop.stream("run", slow=1.0, clock=ControlClock.WALL)
    loop.run(stream, range(40), wall_per_tick_s=0.05)
    before = loop.monitor.liveness.clocks.data_now("run")
    future = stream.stamp_ns(40) + 10 * YEAR_NS
    for _ in range(2):  # frames stamped ten years ahead, instead of the real ones
        loop.feed(stream.records(40, ns(loop.wall_s), stamp_ns=future)[:1])
    assert kinds(loop.found) == [(CLOCK_SKEW, "camera.frames")]  # once: rate-limited per topic
    skew = loop.found[0]
    assert skew.severity == Severity.WARNING
    assert skew.details["reference"] == "wall clock"
    assert skew.details["ahead_s"] > 9 * 365 * 24 * 3600
    assert loop.monitor.liveness.clocks.data_now("run") == before
    assert registry.get_sample_value("roadstream_monitor_clock_skew_messages_total",
                                     {"topic": "camera.frames"}) == 2.0
    # only future frames from now on: the camera counts as stale, the rest runs on
    loop.run(stream, range(41, 80), wall_per_tick_s=0.05, skip=lambda seq: ("camera.frames",))
    assert kinds(loop.found[1:]) == [(TOPIC_STALE, "camera.frames")]


def test_in_lockstep_a_stamp_far_ahead_of_its_run_is_skew() -> None:
    loop = Loop(lockstep())
    stream = loop.stream("run", slow=3.0)
    loop.run(stream, range(20), wall_per_tick_s=0.15)
    ahead = stream.stamp_ns(20) + 60 * 1_000_000_000  # a minute ahead of the simulation
    loop.feed(stream.records(20, ns(loop.wall_s), stamp_ns=ahead)[1:2])  # vehicle.state
    assert kinds(loop.found) == [(CLOCK_SKEW, "vehicle.state")]
    assert loop.found[0].details["reference"] == "run data clock"
    assert loop.monitor.liveness.clocks.data_now("run") == stream.stamp_ns(19)
    loop.run(stream, range(20, 60), wall_per_tick_s=0.15)
    assert len(loop.found) == 1  # the rest of the run is unharmed


def test_latency_across_clocks_is_not_judged_in_lockstep() -> None:
    # perception publishes on its wall clock, 90 s after the simulated capture
    for monitor, expected in ((lockstep(), []), (realtime(), [LATENCY_BUDGET_EXCEEDED])):
        loop = Loop(monitor)
        stream = loop.stream("run", slow=1.0)
        records = stream.records(0, ns(loop.wall_s) + 90 * 1_000_000_000)
        assert [f.type for f in loop.feed(records)] == expected
        if expected:
            assert loop.found[0].details["stage"] == "perception"


def test_stops_commanded_after_the_announced_end_are_not_judged() -> None:
    registry = CollectorRegistry()
    loop = Loop(realtime(registry))
    stream = loop.stream("run", slow=1.0, clock=ControlClock.WALL)
    loop.run(stream, range(20), wall_per_tick_s=0.05)
    loop.feed([stream.finished(ns(loop.wall_s))])
    stop = stream.records(20, ns(loop.wall_s))[-1]
    value = stop.value.replace(f'"mode":"{ControlMode.NORMAL.value}"'.encode(),
                               f'"mode":"{ControlMode.COMFORTABLE_STOP.value}"'.encode())
    assert value != stop.value
    assert loop.feed([stream.record("vehicle.control", "ego", value, (), ns(loop.wall_s))]) == []
    assert registry.get_sample_value("roadstream_monitor_after_end_messages_total",
                                     {"topic": "vehicle.control"}) == 1.0
