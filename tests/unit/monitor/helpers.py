"""Builders shared by the monitor unit tests."""

from __future__ import annotations

from collections import Counter

from services.messages import ControlClock, FrameRef, SafetyEvent, Severity
from services.messages.examples import (
    frame_meta,
    ground_truth,
    perception_objects,
    planning_trajectory,
    safety_event,
    vehicle_control,
    vehicle_state,
)
from services.monitor.findings import NS_PER_S, Observation, vehicle_of
from services.runtime.delivery import Record
from services.runtime.events import RUN_FINISHED

T0 = 1_790_000_000 * NS_PER_S  # an arbitrary epoch instant [ns]
TICK_NS = 50_000_000  # the simulator's tick: 20 Hz [ns]


def ns(seconds: float) -> int:
    """T0 + seconds, in ns."""
    return T0 + round(seconds * NS_PER_S)


def obs(topic: str, key: str, at_s: float, offset: int = 0, partition: int = 0,
        run_id: str = "") -> Observation:
    """An observation of `topic`/`key` stamped T0 + at_s."""
    return Observation(topic, key, vehicle_of(key), ns(at_s), partition, offset, run_id)


class StackStream:
    """The records one tick of the closed loop publishes, for one run of vehicle `ego`.

    Every watched topic once per tick, stamped on the run's data clock `start_ns + seq × 50 ms`
    (as the simulator does, in lockstep and in real time alike); perception's own publish stamp
    is `wall_ns`, as perception stamps it. Offsets are shared by all streams of a test (one
    partition per topic), so the monitor never takes a record for a redelivery.
    """

    TOPICS = ("camera.frames", "vehicle.state", "sim.ground_truth", "perception.objects",
              "planning.trajectory", "vehicle.control")

    def __init__(self, run_id: str, start_ns: int, offsets: Counter[str], *,
                 command_clock: ControlClock = ControlClock.SOURCE) -> None:
        self.run_id = run_id
        self.start_ns = start_ns
        self.offsets = offsets
        self.command_clock = command_clock

    def stamp_ns(self, seq: int) -> int:
        """Data time of tick `seq`."""
        return self.start_ns + seq * TICK_NS

    def records(self, seq: int, wall_ns: int, *, skip: tuple[str, ...] = (),
                stamp_ns: int | None = None) -> list[Record]:
        """The tick's records (`skip`: topics that publish nothing; `stamp_ns`: another stamp)."""
        stamp = self.stamp_ns(seq) if stamp_ns is None else stamp_ns
        frame = FrameRef(seq=seq, stamp_ns=stamp)
        meta = frame_meta(seq, run_id=self.run_id).model_copy(update={"capture_ns": stamp})
        values: dict[str, tuple[str, bytes, tuple[tuple[str, bytes], ...]]] = {
            "camera.frames": ("ego/front", b"\xff\xd8 jpeg", tuple(meta.to_headers())),
            "vehicle.state": ("ego", vehicle_state().model_copy(update={
                "stamp_ns": stamp, "run_id": self.run_id}).encode(), ()),
            "sim.ground_truth": ("ego/front", ground_truth().model_copy(update={
                "seq": seq, "stamp_ns": stamp, "run_id": self.run_id}).encode(), ()),
            "perception.objects": ("ego/front", perception_objects().model_copy(update={
                "objects": [], "source": frame, "stamp_ns": wall_ns,
                "run_id": self.run_id}).encode(), ()),
            "planning.trajectory": ("ego", planning_trajectory().model_copy(update={
                "stamp_ns": stamp, "perception_stamp_ns": wall_ns, "state_stamp_ns": stamp,
                "run_id": self.run_id}).encode(), ()),
            "vehicle.control": ("ego", vehicle_control().model_copy(update={
                "stamp_ns": stamp, "seq": seq, "valid_until_ns": stamp + 4 * TICK_NS,
                "source": frame, "clock": self.command_clock, "run_id": self.run_id}).encode(),
                ()),
        }
        out = []
        for topic in self.TOPICS:
            if topic in skip:
                continue
            key, value, headers = values[topic]
            out.append(self.record(topic, key, value, headers, wall_ns))
        return out

    def finished(self, wall_ns: int) -> Record:
        """The simulator's `run_finished` event for this run."""
        event: SafetyEvent = safety_event().model_copy(update={
            "type": RUN_FINISHED, "source": "simulator", "severity": Severity.INFO,
            "run_id": self.run_id, "stamp_ns": wall_ns, "details": {"reason": "completed"}})
        return self.record("safety.events", "ego", event.encode(), (), wall_ns)

    def record(self, topic: str, key: str, value: bytes, headers: tuple[tuple[str, bytes], ...],
               wall_ns: int) -> Record:
        """One record at the next offset of its topic."""
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        return Record(topic=topic, partition=0, offset=offset, key=key.encode(), value=value,
                      headers=headers, timestamp_ms=wall_ns // 1_000_000)
