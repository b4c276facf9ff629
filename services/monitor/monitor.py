"""`Monitor`: routes consumed records to the checks and ticks them; pure, the clock is injected.

`now_ns` is always the wall clock; time for liveness, rate and latency is each run's data clock
(`services.monitor.clock`), read from the data stamps the messages carry (`data_stamp_ns`).
The monitor never rejects a message: a value it cannot parse is counted and only its content
checks are skipped (liveness and rate come from the record itself), because the consumer that
owns the topic already dead-letters it. Camera frames are never decoded; their headers suffice.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.messages import (
    ALL_TOPICS,
    CAMERA_FRAMES,
    PERCEPTION_OBJECTS,
    PLANNING_TRAJECTORY,
    SAFETY_EVENTS,
    SIM_GROUND_TRUTH,
    VEHICLE_CONTROL,
    VEHICLE_STATE,
    GroundTruth,
    MessageError,
    PerceptionObjects,
    PlanningTrajectory,
    SafetyEvent,
    Severity,
    TopicSpec,
    VehicleControl,
    VehicleState,
)
from services.messages.frames import HEADER_FIELDS
from services.monitor.clock import ClockSkewCheck
from services.monitor.drift import DriftCheck, DriftReference
from services.monitor.findings import (
    DLQ_MESSAGE,
    TOPIC_ALIVE,
    Finding,
    Observation,
    vehicle_of,
)
from services.monitor.frequency import FrequencyCheck
from services.monitor.lag import LagCheck
from services.monitor.latency import LatencyCheck, stage_latencies_s
from services.monitor.liveness import LivenessCheck
from services.monitor.metrics import MonitorMetrics
from services.monitor.risk import CollisionRiskCheck, ControlModeCheck
from services.monitor.settings import MonitorSettings
from services.runtime.delivery import Record
from services.runtime.events import RUN_FINISHED

Parsed = (PerceptionObjects | PlanningTrajectory | VehicleControl | SafetyEvent | VehicleState
          | GroundTruth)
#: Topics whose values the monitor parses, and the payload it expects.
PARSED: dict[str, type[Parsed]] = {
    PERCEPTION_OBJECTS.name: PerceptionObjects, PLANNING_TRAJECTORY.name: PlanningTrajectory,
    VEHICLE_CONTROL.name: VehicleControl, SAFETY_EVENTS.name: SafetyEvent,
    VEHICLE_STATE.name: VehicleState, SIM_GROUND_TRUTH.name: GroundTruth}
CAPTURE_HEADER = {field: header for header, field in HEADER_FIELDS.items()}["capture_ns"]


def data_stamp_ns(record: Record, payload: Parsed | None) -> int | None:
    """The record's time on its run's data clock [ns], or None when it carries none readable.

    A frame's capture time (header); a perception result's source frame capture time (its own
    `stamp_ns` is perception's wall clock); the `stamp_ns` of a state, ground truth, plan or
    command (on the inputs' clock in lockstep).
    """
    if record.topic == CAMERA_FRAMES.name:
        try:
            stamp = int(record.header(CAPTURE_HEADER) or "")
        except ValueError:
            return None
        return stamp if stamp > 0 else None
    if isinstance(payload, PerceptionObjects):
        return payload.source.stamp_ns
    if isinstance(payload, VehicleState | GroundTruth | PlanningTrajectory | VehicleControl):
        return payload.stamp_ns
    return None


class Monitor:
    """Every check of the safety monitor behind two calls: `observe(record)` and `tick()`."""

    def __init__(self, options: MonitorSettings, *, topics: Iterable[TopicSpec] = ALL_TOPICS,
                 reference: DriftReference | None = None,
                 metrics: MonitorMetrics | None = None) -> None:
        self.options = options
        self.specs = {t.name: t for t in topics}
        rates = {t.name: options.rates_hz.get(t.name, t.rate_hz) for t in self.specs.values()
                 if t.rate_hz}
        self.metrics = metrics
        self.simulation = options.clock == "simulation"
        self.liveness = LivenessCheck(rates, stale_periods=options.stale_periods,
                                      critical_topics=options.critical_topics,
                                      forget_after_s=options.forget_after_s,
                                      hold_s=options.stale_hold_s,
                                      alive_after_messages=options.alive_after_messages,
                                      run_silence_s=None if self.simulation
                                      else options.run_silence_s)
        self.skew = ClockSkewCheck(tolerance_s=options.clock_skew_tolerance_s,
                                   window_s=options.clock_skew_event_window_s)
        self.frequency = FrequencyCheck(rates, window=options.frequency_window,
                                        min_messages=options.frequency_min_messages,
                                        min_ratio=options.frequency_min_ratio,
                                        hysteresis=options.frequency_hysteresis)
        self.latency = LatencyCheck(options.latency_budgets_ms,
                                    window_s=options.latency_event_window_s)
        self.risk = CollisionRiskCheck(warning_s=options.ttc_warning_s,
                                       critical_s=options.ttc_critical_s,
                                       forget_s=options.track_forget_s,
                                       half_width_m=options.risk_path_half_width_m)
        self.control = ControlModeCheck()
        self.drift = DriftCheck(reference, reference_frames=options.drift_reference_frames,
                                window_frames=options.drift_window_frames,
                                every_frames=options.drift_every_frames,
                                p_value=options.drift_p_value, max_scores=options.drift_max_scores)
        self.lag = LagCheck(options.lag_threshold_messages)
        self._offsets: dict[tuple[str, int], int] = {}

    def observe(self, record: Record, now_ns: int) -> list[Finding]:
        """Findings raised by one record consumed at wall time `now_ns` (never raises for a bad
        value)."""
        spec = self.specs.get(record.topic)
        if spec is None:
            return []
        seen = self._offsets.get((record.topic, record.partition))
        if seen is not None and record.offset <= seen:
            if self.metrics:
                self.metrics.redelivered.labels(record.topic).inc()
            return []
        self._offsets[(record.topic, record.partition)] = record.offset
        if self.metrics:
            self.metrics.messages.labels(record.topic).inc()
        payload = self._parse(record)
        obs, stamped = self.observation(record, now_ns, payload)
        if isinstance(payload, SafetyEvent) and payload.type == RUN_FINISHED and payload.run_id:
            self.end_run(payload.run_id, now_ns)
        run = self.liveness.clocks.get(obs.run_id)
        if run is not None and run.ended and self.liveness.watches(obs.topic):
            # A finished run's stragglers (late frames, the gate's stop after its inputs ended)
            # are not judged: the end was announced.
            if self.metrics:
                self.metrics.after_end.labels(record.topic).inc()
            return []
        out: list[Finding] = []
        if self.liveness.watches(obs.topic):
            out += self._timing(obs, stamped, now_ns)
        if spec.dead_letter:
            out.append(self._dlq(obs, record))
        if payload is not None:
            out += self._content(obs, payload, now_ns)
        return out

    def end_run(self, run_id: str, now_ns: int) -> None:
        """A run announced its end: stop judging it (its keys are dropped without events)."""
        for run, topic, key in self.liveness.end_run(run_id, now_ns):
            self.frequency.forget(topic, key, run)

    def tick(self, now_ns: int) -> list[Finding]:
        """Findings due to the passing of time (silence); prunes old state and sets gauges."""
        out = self.liveness.tick(now_ns)
        for run, topic, key in self.liveness.prune(now_ns):
            self.frequency.forget(topic, key, run)
        self.latency.prune(now_ns, self.options.forget_after_s)
        self.risk.prune(now_ns)
        if self.metrics:
            self.metrics.set_keys(self.liveness.counts())
            for topic, ratio in self.frequency.min_ratios().items():
                self.metrics.rate_ratio.labels(topic).set(ratio)
        return out

    def release(self, topic: str, partitions: Iterable[int]) -> None:
        """Partitions of a topic went to another replica: forget what was tracked through them."""
        parts = set(partitions)
        for run, _, key in self.liveness.release(topic, parts):
            self.frequency.forget(topic, key, run)
        for partition in parts:
            self._offsets.pop((topic, partition), None)

    def observation(self, record: Record, now_ns: int,
                    payload: Parsed | None = None) -> tuple[Observation, bool]:
        """The checks' view of a record (key, vehicle, run, its data stamp), and whether it
        carries a data stamp; without one its time is its run's current data time (or `now_ns`
        for a run not seen yet)."""
        key = (record.key or b"").decode(errors="replace")
        headers = record.header_map()
        vehicle = vehicle_of(key) or headers.get("vehicle-id", "") or getattr(payload, "vehicle_id", "")
        run_id = getattr(payload, "run_id", "") or headers.get("run-id", "")
        stamp_ns = data_stamp_ns(record, payload)
        stamped = stamp_ns is not None
        if stamp_ns is None:
            stamp_ns = self.liveness.clocks.data_now(run_id) or now_ns
        return Observation(record.topic, key, vehicle, stamp_ns, record.partition, record.offset,
                           run_id), stamped

    def _timing(self, obs: Observation, stamped: bool, now_ns: int) -> list[Finding]:
        """Clock skew, liveness and rate of a message of a watched topic."""
        if self.simulation:  # simulation time has no relation to the wall clock
            reference, name = self.liveness.clocks.data_now(obs.run_id), "run data clock"
        else:
            reference, name = now_ns, "wall clock"
        if stamped and reference is not None and self.skew.skewed(obs.stamp_ns, reference):
            if self.metrics:
                self.metrics.clock_skew.labels(obs.topic).inc()
            return self.skew.finding(obs, reference, name, now_ns)
        out = self.liveness.observe(obs, now_ns, stamped=stamped)
        if any(f.type == TOPIC_ALIVE for f in out):
            self.frequency.restart(obs.topic, obs.key, obs.run_id)  # the silence is not a rate
        if stamped and self.liveness.is_alive(obs.topic, obs.key, obs.run_id):
            out += self.frequency.observe(obs)
        return out

    def _parse(self, record: Record) -> Parsed | None:
        model = PARSED.get(record.topic)
        if model is None:
            return None
        try:
            return model.decode(record.value, source=f"{record.topic}@{record.offset}")
        except MessageError:
            if self.metrics:
                self.metrics.unparsed.labels(record.topic).inc()
            return None

    def _content(self, obs: Observation, payload: Parsed, now_ns: int) -> list[Finding]:
        if isinstance(payload, SafetyEvent):
            # Counted only (but `run_finished`): reacting to events would let the monitor feed on
            # its own output.
            if self.metrics:
                self.metrics.seen_events.labels(payload.type, payload.severity.value).inc()
            return []
        if isinstance(payload, VehicleState | GroundTruth):
            return []  # read for their stamps only
        latencies = stage_latencies_s(payload, simulation=self.simulation)
        if self.metrics:
            for stage, seconds in latencies.items():
                self.metrics.stage_latency.labels(stage).observe(seconds)
                budget = self.latency.budget_s(stage)
                if budget is not None and seconds > budget:
                    self.metrics.over_budget.labels(stage).inc()
        frame_seq = getattr(getattr(payload, "source", None), "seq", None)
        command_seq = payload.seq if isinstance(payload, VehicleControl) else None
        out = self.latency.observe(obs, latencies, now_ns,
                                   refs=obs.refs(frame_seq=frame_seq, command_seq=command_seq))
        if isinstance(payload, PerceptionObjects):
            out += self.risk.observe(obs, payload, now_ns)
            out += self.drift.observe(obs, payload)
            if self.metrics:
                for feature in ("counts", "scores"):
                    p = self.drift.last_result(payload.model_version).get(f"{feature}_p_value")
                    if p is not None:
                        self.metrics.drift_p.labels(payload.model_version, feature).set(p)
        elif isinstance(payload, VehicleControl):
            out += self.control.observe(obs, payload)
        return out

    def _dlq(self, obs: Observation, record: Record) -> Finding:
        if self.metrics:
            self.metrics.dlq.labels(record.topic).inc()
        headers = {k.removeprefix("dlq-").replace("-", "_"): v
                   for k, v in record.header_map().items() if k.startswith("dlq-")}
        return Finding(DLQ_MESSAGE, Severity.WARNING, obs.vehicle_id,
                       details={"dlq_topic": record.topic, "bytes": len(record.value), **headers},
                       refs=obs.refs(), run_id=obs.run_id)
