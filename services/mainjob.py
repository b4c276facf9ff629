"""The main job: every service plus the simulator in closed loop over the scenario library.

simulator → camera.frames → perception → perception.objects → planning → gate →
vehicle.control → simulator, with the monitor and the audit trail alongside and every topic
recorded to MCAP. Lockstep runs are deterministic: the simulator renders frame N+1 only after
the control for frame N, and the gate runs on the inputs' clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel

from common.device import resolve_device
from evaluation.scorecard import PerceptionStats, RunFiles, RunSummary, ScenarioScore, Totals
from perception.eval_run import DEFAULT_INT8_PACKAGE
from services import catalog
from services.audit.settings import AuditSettings
from services.broker.embedded import kafka
from services.control.settings import ControlSettings, load_control_settings
from services.messages import (
    CAMERA_FRAMES,
    PERCEPTION_OBJECTS,
    PLANNING_TRAJECTORY,
    SIM_GROUND_TRUTH,
    TOPICS,
)
from services.monitor.settings import load_monitor_settings
from services.perception.settings import PerceptionSettings, usable_cores
from services.planning.settings import PlanningSettings
from services.recording.mcap_io import RecordingWriter, read_recording
from services.recording.recorder import Recorder
from services.runtime.event_signing import with_run_events_key
from services.runtime.process import ServiceProcess, freeze_heap
from services.runtime.service import BuiltService
from services.settings import Settings
from services.simulator.service import Simulator
from services.simulator.settings import SimulatorSettings

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]

#: Topics that run at the camera's rate (one message per frame).
FRAME_RATE_TOPICS = (CAMERA_FRAMES, SIM_GROUND_TRUTH, PERCEPTION_OBJECTS, PLANNING_TRAJECTORY)
#: Camera rate of `roadstream run --clock realtime` on a machine of fewer than 4 cores [Hz].
SMALL_MACHINE_CAMERA_HZ = 10.0


def default_perception_weights(clock: str, settings: Settings,
                               configured: PerceptionSettings) -> Path | None:
    """The model `roadstream run` has perception serve unless told: None (the configured one,
    by default the shipped checkpoint) except in real time with no CUDA device and no
    ``ROADSTREAM_PERCEPTION_WEIGHTS``, where it is the shipped ONNX Runtime int8 package of
    that checkpoint (`DEFAULT_INT8_PACKAGE`).

    Why: on a 2-core CPU the checkpoint's 40-70 ms a frame starves the rest of the stack in
    real time; the int8 package serves in about a third of that, with the same held-out mAP
    (0.916; night 0.808 against 0.798). With it the library ran 33 of 34 scenarios without
    collision, and the audit held no critical event but collision risks and real stops; with
    the checkpoint, 32 of 34 and 8 `topic_stale` from starvation (docs/monitor.md). Lockstep is
    not paced, so it keeps the checkpoint: its scorecards stay comparable with every earlier
    run. On a GPU the checkpoint runs in fp16 and needs no package.
    """
    if clock != "realtime" or "weights" in configured.model_fields_set:
        return None
    if resolve_device(settings.device).type == "cuda":
        return None
    return DEFAULT_INT8_PACKAGE


def default_camera_rate(clock: str) -> float | None:
    """The camera rate `roadstream run` uses unless told: None (the scenarios' own, 20 Hz)
    except in real time on fewer than 4 cores, where it is `SMALL_MACHINE_CAMERA_HZ`.

    Why: on 2 cores, 20 frames/s of rendering, detection (27-40 ms a frame on one thread),
    planning and Kafka need more than the two cores; perception fell 220-590 ms behind, past
    the gate's timeout, and the gate held a minimal-risk stop (docs/benchmarks.md). Vehicle
    state, planning ticks and control stay at 20 Hz; the perception timeout and the monitor's
    expected rates follow the camera. Lockstep is not paced, so it keeps the scenario's rate.
    """
    return SMALL_MACHINE_CAMERA_HZ if clock == "realtime" and usable_cores() < 4 else None


#: Scenarios per embedded broker in `run_library`: the embedded broker keeps every message in
#: memory and its fetch cost grows with that log (docs/benchmarks.md), so a long run restarts it.
#: Three: in real time the end-to-end latency p50 stayed 115-180 ms through each segment, where
#: segments of six let it grow to 580 ms by their end; the restarts cost about a minute a run.
EMBEDDED_SEGMENT_SCENARIOS = 3
#: Largest camera rate a run may ask for [Hz] (the simulator's own limit).
MAX_CAMERA_RATE_HZ = 240.0

Clock = Literal["lockstep", "realtime"]


@dataclass(frozen=True)
class RunOptions:
    """What one run of the main job does.

    `scenarios`: names or files, driven in order, scenario ``i`` as ``<run_id>-<i>``.
    `out_dir`: where the summary, recording, audit trail and service logs go. `clock`:
    lockstep (deterministic: frame N+1 after the control for frame N) or realtime, paced at
    `speed` × the wall clock. `record`: write recording.mcap (and the report). `duration_s`:
    cut each scenario to this long (smoke runs). `segment_scenarios`: scenarios per embedded
    broker (None: `EMBEDDED_SEGMENT_SCENARIOS`). `camera_rate_hz`: cap the cameras' rate
    (None: the scenarios' own). `progress(scenario, fraction)`: told as scenarios advance.

    Raises ValueError naming the option when one is out of range.
    """

    scenarios: tuple[str, ...]
    run_id: str
    out_dir: Path
    clock: Clock = "lockstep"
    speed: float = 1.0
    record: bool = True
    duration_s: float | None = None
    segment_scenarios: int | None = None
    camera_rate_hz: float | None = None
    #: The model perception serves (a checkpoint or a package); None: the configured one.
    perception_weights: Path | None = None
    progress: Progress | None = field(default=None, compare=False)
    #: The gate's keyring, handed to planning and to the simulated vehicle; None: the
    #: configured one (``ROADSTREAM_CONTROL_*``) or, when none is, a key made for this run.
    control: ControlSettings | None = field(default=None, compare=False, repr=False)
    #: Told each broker address the run uses (one per segment on the embedded broker): what a
    #: vehicle client or `roadstream control tail` connects to.
    on_broker: Callable[[str], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.scenarios, str | bytes):
            raise ValueError(f"RunOptions.scenarios must be a sequence of names, not the "
                             f"string {self.scenarios!r}")
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        problems = [
            (not self.run_id, f"run_id must not be empty, not {self.run_id!r}"),
            (self.clock not in ("lockstep", "realtime"),
             f"clock must be 'lockstep' or 'realtime', not {self.clock!r}"),
            (not self.speed > 0, f"speed must be above 0, not {self.speed:g}"),
            (self.duration_s is not None and not self.duration_s > 0,
             f"duration_s must be above 0 s, not {self.duration_s}"),
            (self.segment_scenarios is not None and self.segment_scenarios < 1,
             f"segment_scenarios must be at least 1, not {self.segment_scenarios}"),
            (self.camera_rate_hz is not None
             and not 0 < self.camera_rate_hz <= MAX_CAMERA_RATE_HZ,
             f"camera_rate_hz must be in (0, {MAX_CAMERA_RATE_HZ:g}] Hz, "
             f"not {self.camera_rate_hz}"),
        ]
        for bad, message in problems:
            if bad:
                raise ValueError(f"RunOptions.{message}")


async def run_library(settings: Settings, options: RunOptions) -> RunSummary:
    """The main job over any number of scenarios, starting the broker (`kafka`) itself.

    On the embedded broker the scenarios run in segments of ``options.segment_scenarios``
    (default `EMBEDDED_SEGMENT_SCENARIOS`), each on a broker of its own with services of their
    own; the run is still one run: one summary, one audit trail, one recording (the segments'
    parts are joined in order) and one report. A configured cluster runs them all in one
    segment.
    """
    options = with_run_key(options)
    settings = with_run_events_key(settings)  # one events key for every segment of the run
    scenarios = list(options.scenarios)
    out_dir = options.out_dir
    size = len(scenarios) or 1
    if settings.embedded:
        size = options.segment_scenarios or EMBEDDED_SEGMENT_SCENARIOS
    segments = [scenarios[i:i + size] for i in range(0, len(scenarios), size)] or [[]]
    recording = out_dir / "recording.mcap"
    parts = [recording] if len(segments) == 1 else [
        out_dir / f"recording.part-{n:02d}.mcap" for n in range(len(segments))]
    drives: list[Drive] = []
    for n, (segment, part) in enumerate(zip(segments, parts, strict=True)):
        async with kafka(settings) as bootstrap:
            if options.on_broker is not None:
                options.on_broker(bootstrap)
            drives.append(await drive_scenarios(
                settings, bootstrap, options, scenarios=segment, first_index=n * size,
                recording=part if options.record else None))
    if options.record and len(parts) > 1:
        await asyncio.to_thread(join_recordings, parts, recording)
    return await finish_run(Drive.join(drives), clock=options.clock, run_id=options.run_id,
                            out_dir=out_dir, record=options.record,
                            camera_rate_hz=options.camera_rate_hz, progress=options.progress)


#: The run's keyring, beside its summary (0600), when the run made its own key: what a vehicle
#: client or `roadstream control tail --verify` needs to verify the run's commands.
CONTROL_KEYS_FILE = "control.keys.json"


def with_run_key(options: RunOptions) -> RunOptions:
    """``options`` with the gate's keyring settled: the given one, the configured one, or a
    key made for this run only (written to ``out_dir/control.keys.json``, mode 0600)."""
    if options.control is not None:
        return options
    configured = load_control_settings()
    if configured.keys is not None or configured.dev_key:
        return replace(options, control=configured)
    control = ControlSettings.ephemeral()
    assert control.keys is not None
    options.out_dir.mkdir(parents=True, exist_ok=True)
    path = options.out_dir / CONTROL_KEYS_FILE
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(control.keys.get_secret_value() + "\n", encoding="utf-8")
    return replace(options, control=control)


def join_recordings(parts: list[Path], out: Path) -> Path:
    """Join MCAP recordings written one after the other into `out`; the parts are removed."""
    with RecordingWriter(out, TOPICS, metadata={"joined_parts": str(len(parts))}) as writer:
        for part in parts:
            for record in read_recording(part):
                writer.write(record)
    for part in parts:
        part.unlink()
    return out


@dataclass(frozen=True)
class Drive:
    """What driving some scenarios gave: scorecard rows and the perception service's counts."""

    rows: list[ScenarioScore]
    model_version: str
    frames_dropped: dict[str, int]  # by reason (stale, superseded)
    batch_sizes: list[int]

    @classmethod
    def join(cls, drives: list[Drive]) -> Drive:
        """The drives of a run's segments, in order."""
        dropped: dict[str, int] = {}
        for d in drives:
            for reason, n in d.frames_dropped.items():
                dropped[reason] = dropped.get(reason, 0) + n
        return cls([r for d in drives for r in d.rows], drives[0].model_version, dropped,
                   [b for d in drives for b in d.batch_sizes])


async def run_main_job(settings: Settings, bootstrap: str, options: RunOptions) -> RunSummary:
    """Run every scenario in closed loop through Kafka at `bootstrap` (one segment, whatever
    ``options.segment_scenarios`` says); return the summary."""
    options = with_run_key(options)
    settings = with_run_events_key(settings)
    recording = options.out_dir / "recording.mcap" if options.record else None
    drive = await drive_scenarios(settings, bootstrap, options, scenarios=list(options.scenarios),
                                  first_index=0, recording=recording)
    return await finish_run(drive, clock=options.clock, run_id=options.run_id,
                            out_dir=options.out_dir, record=options.record,
                            camera_rate_hz=options.camera_rate_hz, progress=options.progress)


async def finish_run(drive: Drive, *, clock: str, run_id: str, out_dir: Path, record: bool,
                     progress: Progress | None,
                     camera_rate_hz: float | None = None) -> RunSummary:
    """The run's summary (and its report, when recorded)."""
    rows = drive.rows
    summary = RunSummary(
        run_id=run_id, clock=clock, closed_loop=True, camera_rate_hz=camera_rate_hz,
        scenarios=rows, totals=Totals.of(rows), created_ns=time.time_ns(),
        perception=PerceptionStats.of(drive.model_version, drive.frames_dropped,
                                      drive.batch_sizes),
        files=RunFiles(recording="recording.mcap" if record else None,
                       perception_log="perception.log", planning_log="planning.log"))
    if record:
        await write_run_report(out_dir, summary, progress)
    return summary


#: In-process services the main job waits for before driving: they start at the topics'
#: ends and must not miss the run's first messages. The monitor subscribes to every topic in
#: the background from its own configured start; waiting for its groups would hold the start.
AWAIT_ASSIGNED = ("audit", "simulator")


def job_services(options: RunOptions) -> dict[str, tuple[BaseModel, dict[str, Any]]]:
    """The services of the process table the main job runs, in start order: each with its
    options and, for one built in this process, its builder's other keywords.

    Not the recorder service: the run records every topic to one file of its own.
    """
    lockstep = options.clock == "lockstep"
    camera_hz = options.camera_rate_hz
    # This run's consumer groups are new: they start at the topics' ends, not at the history
    # of earlier runs on the same cluster, which they would otherwise work through first
    # (the services in processes of their own always do).
    fresh: dict[str, Any] = {"start_from": "latest"}
    rates = {t.name: camera_hz for t in FRAME_RATE_TOPICS} if camera_hz else {}
    defaults = PerceptionSettings()
    # Lockstep: one frame per model run. Which frames of two cameras share a batch depends on
    # timing, and a batched convolution's floats differ from a single one's, so batching made
    # multi-camera replays differ (cut_in: min distance 29.45 vs 29.62 m in two runs).
    # Lockstep also serves every frame (none is ever behind another of its camera there); in
    # real time a camera behind its input skips to its newest frame.
    perception = defaults.model_copy(update={
        "weights": options.perception_weights or defaults.weights,
        "latency_budget_ms": None if lockstep else defaults.latency_budget_ms,
        "max_batch_size": 1 if lockstep else defaults.max_batch_size,
        "newest_per_camera": not lockstep})
    audit_db = (options.out_dir / "audit.db").resolve()
    return {
        "perception": (perception, {}),
        "planning": (PlanningSettings(clock="source" if lockstep else "wall",
                                      perception_rate_hz=camera_hz), {}),
        # The monitor judges time on the data's clock: simulation time in lockstep (and in a
        # real-time run paced faster or slower than the wall clock).
        "monitor": (load_monitor_settings(
            rates_hz=rates,
            clock="wall" if options.clock == "realtime" and options.speed == 1 else "simulation"),
            {}),
        "audit": (AuditSettings(url=f"sqlite:///{audit_db}"), fresh),
        # The main job drives the scenarios itself (`Simulator.drive`), each closed loop.
        "simulator": (SimulatorSettings(loop="closed"),
                      {**fresh, "repeat": False, "run_id": options.run_id,
                       "control": options.control}),
    }


async def drive_scenarios(settings: Settings, bootstrap: str, options: RunOptions, *,
                          scenarios: list[str], first_index: int,
                          recording: Path | None) -> Drive:
    """Start every service on `bootstrap`, drive `scenarios` in closed loop, stop them.

    Each service starts as the process table says: in a process of its own (its log in
    ``out_dir/<service>.log``) or in this one. Scenario ``i`` of the list runs as
    ``<run_id>-<first_index + i>``; the audit trail goes to ``out_dir/audit.db`` (continued
    when it exists) and, with ``recording``, every topic to that MCAP file. The planner's
    perception timeout and the monitor's expected rates follow ``options.camera_rate_hz``.
    """
    out_dir, run_id, lockstep = options.out_dir, options.run_id, options.clock == "lockstep"
    out_dir.mkdir(parents=True, exist_ok=True)
    # One torch thread for the planner and one for the detector (each in its process) leave the
    # second core to the renderer and Kafka, and keep OpenMP threads from spinning against each
    # other (seconds per frame).
    # Every service, in this process or its own, signs its safety events with the run's
    # events key (settings travel to the service processes), and the audit verifies them.
    run_settings = with_run_events_key(settings).model_copy(update={
        "group_prefix": f"{settings.group_prefix}.{run_id}",
        "torch_threads": settings.torch_threads or 1})
    torch.set_num_threads(run_settings.torch_threads)
    wanted = job_services(options)
    # The gate (planning, in its own process) signs with the run's keyring.
    control_env = options.control.environment() if options.control is not None else None
    own = {name for name in wanted if catalog.entry(name).own_process}
    processes = {name: ServiceProcess(name, out_dir / f"{name}.log") for name in wanted
                 if name in own}
    built: dict[str, BuiltService[Any]] = {
        name: catalog.build(name, run_settings, bootstrap, options=opts, **kwargs)
        for name, (opts, kwargs) in wanted.items() if name not in own}
    simulator: Simulator = built["simulator"].service
    stop_recording = asyncio.Event()
    recorder_task = None
    ready = asyncio.Event()
    if recording is not None:
        recorder = Recorder(run_settings, bootstrap, TOPICS, recording, from_beginning=False)
        recorder_task = asyncio.create_task(recorder.run(stop_recording, on_ready=ready.set))
    counts: dict[str, dict[str, Any]] = {}
    try:
        facts = await asyncio.gather(
            *(proc.start(run_settings, wanted[name][0], bootstrap, env=control_env)
              for name, proc in processes.items()),
            *(b.runtime.start() for b in built.values()))
        started = dict(zip(processes, facts[:len(processes)], strict=True))
        assigned = await asyncio.gather(*(built[name].runtime.wait_assigned(60)
                                          for name in AWAIT_ASSIGNED))
        if not all(assigned):
            log.warning("main job: some consumers got no partitions within 60 s; going on")
        if recorder_task is not None:
            await asyncio.wait_for(ready.wait(), timeout=60)
        # This process renders and hosts the monitor and the audit: a full collection over
        # everything the start left (about 455 000 objects) stops all three for some 200 ms.
        # Unfrozen when the segment's services go.
        freeze_heap()
        results = []
        for i, name in enumerate(scenarios):
            scenario = SimulatorSettings(
                scenario=name, loop="closed", clock="lockstep" if lockstep else "realtime",
                speed=options.speed, lockstep_timeout_s=10.0, duration_s=options.duration_s,
                camera_rate_hz=options.camera_rate_hz)
            results.append(await simulator.drive(scenario, run_id=f"{run_id}-{first_index + i:02d}",
                                                 progress=options.progress))
    finally:
        gc.unfreeze()
        for service in reversed(built.values()):
            with contextlib.suppress(Exception):
                await service.runtime.stop()
        for name in reversed(processes):
            counts[name] = await processes[name].stop()
        stop_recording.set()
        if recorder_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(recorder_task, timeout=30)
    perception = counts.get("perception", {})
    rows = [ScenarioScore.of_vehicle(r["scenario"], v, r["wall_s"])
            for r in results for v in r["vehicles"]]
    dropped = {str(reason): int(n) for reason, n in perception.get("dropped", {}).items()}
    return Drive(rows, str(started["perception"]["model_version"]), dropped,
                 [int(b) for b in perception.get("batch_sizes", [])])


async def write_run_report(out_dir: Path, summary: RunSummary,
                           progress: Progress | None = None) -> None:
    """Write report.html beside the recording; a failure is logged, never fatal to the run."""
    try:
        # Imported here: a broken plotting or video stack must not stop `roadstream run`.
        from services.report import write_report

        await asyncio.to_thread(write_report, out_dir, summary=summary, progress=progress)
    except Exception as exc:  # the run's results stand without their report
        log.warning("run report not written: %s: %s", type(exc).__name__, exc)
    else:
        summary.files.report = "report.html"

