"""A run's recording split by scenario into the time series the report draws.

The main job runs scenario i of run R under the scenario run id `R-ii`; every payload carries it
(`run_id`), camera frames carry it in the `run-id` header. Monitor events about a topic as a
whole carry no run id; they go to the scenario whose wall-clock window holds them.

Time: `t_s` is simulation time since the scenario's first tick, from the payload stamps (the
simulator stamps tick N at start + N·dt, also in lockstep, where the wall clock runs slower).
Wall-clock quantities (latency, monitor events) use the Kafka timestamps [ms] and are mapped
onto `t_s` through the camera frames, which carry both clocks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from common.in_path import PATH_HALF_WIDTH_M
from evaluation.safety import in_path_ttc
from evaluation.scorecard import RunSummary, ScenarioScore
from services.messages import (
    CAMERA_FRAMES,
    PERCEPTION_OBJECTS,
    PLANNING_TRAJECTORY,
    SAFETY_EVENTS,
    VEHICLE_CONTROL,
    VEHICLE_STATE,
    FrameMeta,
    MessageError,
    PerceptionObjects,
    PlanningTrajectory,
    SafetyEvent,
    VehicleControl,
    VehicleState,
)
from services.recording.envelope import KafkaRecord

#: Topics the report reads from a recording.
REPORT_TOPICS = (CAMERA_FRAMES.name, VEHICLE_STATE.name, PERCEPTION_OBJECTS.name,
                 PLANNING_TRAJECTORY.name, VEHICLE_CONTROL.name, SAFETY_EVENTS.name)


@dataclass(frozen=True)
class EventMark:
    """One safety event placed on the scenario's time axis."""

    t_s: float  # simulation time [s]
    type: str
    severity: str  # info / warning / critical
    source: str
    text: str  # one line for a caption or an overlay


@dataclass(frozen=True)
class VideoFrame:
    """One recorded camera image with what is needed to annotate it."""

    seq: int
    t_s: float
    capture_ns: int
    meta: FrameMeta
    image: bytes  # encoded (JPEG or PNG) as recorded


@dataclass
class ScenarioSeries:
    """Everything the report shows of one scenario; arrays are aligned per group of fields."""

    name: str
    run_id: str  # the scenario's run id (`<run>-<ii>`)
    vehicle_id: str
    row: ScenarioScore  # its scorecard row from summary.json
    t0_ns: int = 0
    # measured state (vehicle.state)
    state_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    speed_mps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    accel_mps2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    steer_rad: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # commands (vehicle.control), at their source frame's time
    command_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    target_speed_mps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    command_accel_mps2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    command_steer_rad: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # min TTC over the objects of each frame on a collision course (all cameras); NaN where
    # nothing is on one
    ttc_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    min_ttc_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # frame published → its control published (Kafka timestamps), per frame
    latency_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    events: list[EventMark] = field(default_factory=list)
    collision_t_s: float | None = None
    # the video camera (the one with most frames) and what annotates its frames
    camera_id: str | None = None
    frames: list[VideoFrame] = field(default_factory=list)
    objects: dict[int, PerceptionObjects] = field(default_factory=dict)  # by frame seq
    controls: dict[int, VehicleControl] = field(default_factory=dict)  # by source frame seq
    states: dict[int, VehicleState] = field(default_factory=dict)  # by stamp_ns
    trajectories: dict[int, PlanningTrajectory] = field(default_factory=dict)  # by stamp_ns

    def t_of(self, stamp_ns: int) -> float:
        """Simulation time [s] of a payload stamp of this scenario."""
        return (stamp_ns - self.t0_ns) / 1e9


def scenario_run_ids(run_id: str, records: Sequence[KafkaRecord]) -> list[str]:
    """The scenario run ids (`<run_id>-<ii>`) present in the records, in scenario order."""
    prefix = run_id + "-"
    found = {rid for rec in records if (rid := record_run_id(rec)).startswith(prefix)}
    return sorted(found, key=lambda rid: (len(rid), rid))


def record_run_id(record: KafkaRecord) -> str:
    """The run id a record carries (payload field or the `run-id` frame header), or ''."""
    if record.topic == CAMERA_FRAMES.name:
        for name, value in record.headers:
            if name == "run-id" and value is not None:
                return value.decode("utf-8", "replace")
        return ""
    try:
        value = json.loads(record.value)
    except ValueError:
        return ""
    return str(value.get("run_id", "")) if isinstance(value, dict) else ""


def split_scenarios(summary: RunSummary, records: Sequence[KafkaRecord], *,
                    path_half_width_m: float = PATH_HALF_WIDTH_M) -> list[ScenarioSeries]:
    """One ScenarioSeries per scorecard row, in scorecard order.

    Row i is matched to the i-th scenario run id found in the records (the main job runs one
    vehicle per scenario); a row without recorded data gets empty series.
    """
    rows = summary.scenarios
    run_ids = scenario_run_ids(summary.run_id, records)
    by_run: dict[str, list[KafkaRecord]] = {rid: [] for rid in run_ids}
    unassigned: list[KafkaRecord] = []
    for rec in records:
        rid = record_run_id(rec)
        if rid in by_run:
            by_run[rid].append(rec)
        elif rec.topic == SAFETY_EVENTS.name and not rid:
            unassigned.append(rec)
    windows = [_wall_window(by_run[rid]) for rid in run_ids]
    for rec in unassigned:
        if windows:
            by_run[run_ids[_window_index(windows, rec.timestamp_ms)]].append(rec)
    out = []
    for i, row in enumerate(rows):
        rid = run_ids[i] if i < len(run_ids) else ""
        out.append(scenario_series(row, rid, by_run.get(rid, []),
                                   path_half_width_m=path_half_width_m))
    return out


def _wall_window(records: Sequence[KafkaRecord]) -> tuple[float, float]:
    """First and last Kafka timestamp [ms] of a scenario's data; empty: a window holding nothing."""
    stamps = [r.timestamp_ms for r in records if r.topic != SAFETY_EVENTS.name]
    return (min(stamps), max(stamps)) if stamps else (math.inf, -math.inf)


def _window_index(windows: Sequence[tuple[float, float]], wall_ms: int) -> int:
    """The window holding `wall_ms`, else the last one started before it, else the first."""
    best = 0
    for i, (start, end) in enumerate(windows):
        if start <= wall_ms <= end:
            return i
        if start <= wall_ms:
            best = i
    return best


def scenario_series(row: ScenarioScore, run_id: str, records: Sequence[KafkaRecord], *,
                    path_half_width_m: float = PATH_HALF_WIDTH_M) -> ScenarioSeries:
    """The time series of one scenario from its records (any order, duplicates allowed).

    The TTC series counts objects on a collision course only, as the monitor's
    `collision_risk` does (`evaluation.safety.in_path_ttc`).
    """
    vehicle = row.vehicle_id
    s = ScenarioSeries(name=row.name, run_id=run_id, vehicle_id=vehicle, row=row)
    frames: list[tuple[FrameMeta, KafkaRecord]] = []
    events: list[tuple[SafetyEvent, KafkaRecord]] = []
    objects: dict[tuple[str, int], PerceptionObjects] = {}
    control_wall: dict[int, int] = {}  # source frame seq → Kafka timestamp [ms] of its control
    for rec in records:
        try:
            if rec.topic == CAMERA_FRAMES.name:
                meta = FrameMeta.from_headers((n, v) for n, v in rec.headers if v is not None)
                if meta.vehicle_id == vehicle:
                    frames.append((meta, rec))
            elif rec.topic == VEHICLE_STATE.name:
                st = VehicleState.decode(rec.value)
                if st.vehicle_id == vehicle:
                    s.states.setdefault(st.stamp_ns, st)
            elif rec.topic == VEHICLE_CONTROL.name:
                ctl = VehicleControl.decode(rec.value)
                if ctl.vehicle_id == vehicle and ctl.source is not None \
                        and ctl.source.seq not in s.controls:
                    s.controls[ctl.source.seq] = ctl
                    control_wall[ctl.source.seq] = rec.timestamp_ms
            elif rec.topic == PERCEPTION_OBJECTS.name:
                po = PerceptionObjects.decode(rec.value)
                if po.vehicle_id == vehicle:
                    objects.setdefault((po.camera_id, po.source.seq), po)
            elif rec.topic == PLANNING_TRAJECTORY.name:
                tr = PlanningTrajectory.decode(rec.value)
                if tr.vehicle_id == vehicle:
                    s.trajectories.setdefault(tr.stamp_ns, tr)
            elif rec.topic == SAFETY_EVENTS.name:
                ev = SafetyEvent.decode(rec.value)
                if ev.vehicle_id in ("", vehicle):
                    events.append((ev, rec))
        except MessageError:
            continue  # a malformed record went to a DLQ in the run; the report skips it too
    stamps = [m.capture_ns for m, _ in frames] + list(s.states)
    s.t0_ns = min(stamps) if stamps else 0
    _fill_state(s)
    _fill_commands(s)
    _fill_ttc(s, objects, path_half_width_m)
    frame_wall = _fill_latency(s, frames, control_wall)
    _fill_events(s, events, frames, frame_wall)
    _fill_video(s, frames, objects)
    s.collision_t_s = row.collision_t_s if row.collision else None
    return s


def _fill_state(s: ScenarioSeries) -> None:
    states = [s.states[k] for k in sorted(s.states)]
    s.state_t_s = np.array([s.t_of(st.stamp_ns) for st in states])
    s.speed_mps = np.array([st.speed_mps for st in states])
    s.accel_mps2 = np.array([st.accel_mps2 for st in states])
    s.steer_rad = np.array([st.steer_rad for st in states])


def _fill_commands(s: ScenarioSeries) -> None:
    controls = [s.controls[k] for k in sorted(s.controls)]
    s.command_t_s = np.array([s.t_of(c.source.stamp_ns if c.source else c.stamp_ns)
                              for c in controls])
    s.target_speed_mps = np.array([c.target_speed_mps for c in controls])
    s.command_accel_mps2 = np.array([c.accel_mps2 for c in controls])
    s.command_steer_rad = np.array([c.steering_tire_angle_rad for c in controls])


def _fill_ttc(s: ScenarioSeries, objects: dict[tuple[str, int], PerceptionObjects],
              path_half_width_m: float) -> None:
    per_seq: dict[int, tuple[int, float]] = {}  # seq → (stamp_ns, min TTC)
    for (_, seq), po in objects.items():
        ttcs = [t for t in (in_path_ttc(o, path_half_width_m) for o in po.objects)
                if t is not None]
        low = min(ttcs) if ttcs else math.nan
        prev = per_seq.get(seq)
        if prev is None or (not math.isnan(low) and not low >= prev[1]):
            per_seq[seq] = (po.source.stamp_ns, low)
    ordered = [per_seq[k] for k in sorted(per_seq)]
    s.ttc_t_s = np.array([s.t_of(stamp) for stamp, _ in ordered])
    s.min_ttc_s = np.array([v for _, v in ordered])


def _fill_latency(s: ScenarioSeries, frames: Sequence[tuple[FrameMeta, KafkaRecord]],
                  control_wall: dict[int, int]) -> dict[int, int]:
    """Per-frame latency; returns frame seq → its first Kafka timestamp [ms]."""
    frame_wall: dict[int, int] = {}
    for meta, rec in frames:
        frame_wall[meta.seq] = min(frame_wall.get(meta.seq, rec.timestamp_ms), rec.timestamp_ms)
    pairs = sorted((seq, control_wall[seq] - frame_wall[seq])
                   for seq in control_wall if seq in frame_wall)
    s.latency_t_s = np.array([s.t_of(s.controls[seq].source.stamp_ns)  # type: ignore[union-attr]
                              for seq, _ in pairs])
    s.latency_ms = np.array([float(ms) for _, ms in pairs])
    return frame_wall


def _fill_events(s: ScenarioSeries, events: Sequence[tuple[SafetyEvent, KafkaRecord]],
                 frames: Sequence[tuple[FrameMeta, KafkaRecord]],
                 frame_wall: dict[int, int]) -> None:
    seq_t = {meta.seq: s.t_of(meta.capture_ns) for meta, _ in frames}
    walls = sorted((wall, seq_t[seq]) for seq, wall in frame_wall.items())
    wall_ms = np.array([w for w, _ in walls], dtype=np.float64)
    wall_t = np.array([t for _, t in walls], dtype=np.float64)
    seen: set[str] = set()
    marks = []
    for ev, rec in events:
        if str(ev.event_id) in seen:
            continue
        seen.add(str(ev.event_id))
        ref = ev.references.frame_seq
        if ev.run_id == s.run_id and ref is not None and ref in seq_t:
            t = seq_t[ref]
        elif len(wall_ms):
            t = float(np.interp(rec.timestamp_ms, wall_ms, wall_t))
        else:
            t = 0.0
        marks.append(EventMark(t, ev.type, ev.severity.value, ev.source, describe_event(ev)))
    s.events = sorted(marks, key=lambda m: m.t_s)


def describe_event(ev: SafetyEvent) -> str:
    """A one-line description of a safety event: its type and the details that matter."""
    d = ev.details
    if ev.type == "collision_risk" and "ttc_s" in d:
        return f"{ev.type}: {d.get('class', '?')} #{d.get('track_id', '?')} TTC {float(d['ttc_s']):.2f} s"
    if "latency_ms" in d and "budget_ms" in d:
        return (f"{ev.type}: {d.get('stage', '')} {float(d['latency_ms']):.0f} ms "
                f"> {float(d['budget_ms']):.0f} ms")
    if "rate_hz" in d:
        return f"{ev.type}: {d.get('topic', '')} {float(d['rate_hz']):.1f} Hz"
    if "topic" in d:
        return f"{ev.type}: {d['topic']}"
    return ev.type


def _fill_video(s: ScenarioSeries, frames: Sequence[tuple[FrameMeta, KafkaRecord]],
                objects: dict[tuple[str, int], PerceptionObjects]) -> None:
    counts: dict[str, int] = {}
    for meta, _ in frames:
        counts[meta.camera_id] = counts.get(meta.camera_id, 0) + 1
    if not counts:
        return
    s.camera_id = max(sorted(counts), key=lambda c: counts[c])
    kept: dict[int, VideoFrame] = {}
    for meta, rec in frames:
        if meta.camera_id == s.camera_id and meta.seq not in kept:
            kept[meta.seq] = VideoFrame(meta.seq, s.t_of(meta.capture_ns), meta.capture_ns, meta,
                                        rec.value)
    s.frames = [kept[k] for k in sorted(kept)]
    s.objects = {seq: po for (cam, seq), po in objects.items() if cam == s.camera_id}
