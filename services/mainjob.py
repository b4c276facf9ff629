"""The main job: every service plus the simulator in closed loop over the scenario library.

simulator → camera.frames → perception → perception.objects → planning → gate →
vehicle.control → simulator, with the monitor and the audit trail alongside and every topic
recorded to MCAP. Lockstep runs are deterministic: the simulator renders frame N+1 only after
the control for frame N, and the gate runs on the inputs' clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from services.audit.service import build as build_audit
from services.audit.settings import AuditSettings
from services.broker.embedded import kafka
from services.runtime.delivery import Record
from services.runtime.service import ServiceRuntime
from services.messages import (
    CAMERA_FRAMES,
    PERCEPTION_OBJECTS,
    PLANNING_TRAJECTORY,
    SIM_GROUND_TRUTH,
    TOPICS,
    VEHICLE_CONTROL,
)
from services.monitor.service import build_monitor
from services.monitor.settings import load_monitor_settings
from services.perception.process import PerceptionProcess
from services.perception.settings import PerceptionSettings, usable_cores
from services.planning.process import PlanningProcess
from services.planning.settings import PlanningSettings
from services.recording.mcap_io import RecordingWriter, read_recording
from services.recording.recorder import Recorder
from services.settings import Settings
from services.simulator.runner import ScenarioStreamer
from services.simulator.settings import SimulatorSettings

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]

#: CARLA-leaderboard-style penalty factors per collision, by what was hit.
COLLISION_PENALTY = {"pedestrian": 0.5, "cyclist": 0.5, "car": 0.6, "truck": 0.6}


def driving_score(vehicle: dict[str, Any]) -> float:
    """Route completion × the collision penalty, in [0, 100] (CARLA leaderboard style)."""
    penalty = 1.0
    if vehicle["collision"]:
        penalty *= COLLISION_PENALTY.get(str(vehicle.get("collision_class") or "car"), 0.6)
    return round(100.0 * float(vehicle["progress"]) * penalty, 1)


def scorecard_row(scenario: str, vehicle: dict[str, Any],
                  wall_s: float | None = None) -> dict[str, Any]:
    """One scenario's line of the scorecard; ``wall_s``: the scenario's wall time."""
    return {"name": scenario, "vehicle_id": vehicle["vehicle_id"], "wall_s": wall_s,
            "collision": vehicle["collision"], "impact_speed_mps": vehicle["impact_speed_mps"],
            "collision_t_s": vehicle.get("collision_t_s"),
            "min_ttc_s": vehicle["min_ttc_s"], "min_distance_m": vehicle["min_distance_m"],
            "progress": vehicle["progress"], "max_decel_mps2": vehicle["max_decel_mps2"],
            "max_jerk_mps3": vehicle["max_jerk_mps3"],
            "max_lateral_deviation_m": vehicle["max_lateral_deviation_m"],
            "latency_ms": vehicle["latency_ms"], "control_modes": vehicle["control_modes"],
            "control_timeouts": vehicle["control_timeouts"], "frames": vehicle["frames"],
            "frames_skipped": vehicle.get("frames_skipped", 0),
            "engaged_at_s": vehicle.get("engaged_at_s"), "score": driving_score(vehicle)}


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates over the scorecard."""
    n = len(rows)
    return {"scenarios": n, "collisions": sum(bool(r["collision"]) for r in rows),
            "collision_free_fraction": round(sum(not r["collision"] for r in rows) / n, 3) if n
            else None,
            "mean_score": round(sum(r["score"] for r in rows) / n, 1) if n else None,
            "mean_progress": round(sum(r["progress"] for r in rows) / n, 3) if n else None}


#: Topics that run at the camera's rate (one message per frame).
FRAME_RATE_TOPICS = (CAMERA_FRAMES, SIM_GROUND_TRUTH, PERCEPTION_OBJECTS, PLANNING_TRAJECTORY)
#: Camera rate of `roadstream run --clock realtime` on a machine of fewer than 4 cores [Hz].
SMALL_MACHINE_CAMERA_HZ = 10.0


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


async def run_library(settings: Settings, *, scenarios: list[str], clock: str, speed: float,
                      run_id: str, out_dir: Path, record: bool = True,
                      duration_s: float | None = None, segment_scenarios: int | None = None,
                      camera_rate_hz: float | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """The main job over any number of scenarios, starting the broker (`kafka`) itself.

    On the embedded broker the scenarios run in segments of ``segment_scenarios`` (default
    `EMBEDDED_SEGMENT_SCENARIOS`), each on a broker of its own with services of their own; the
    run is still one run: one summary, one audit trail, one recording (the segments' parts are
    joined in order) and one report. A configured cluster runs them all in one segment.
    """
    size = len(scenarios) or 1
    if settings.embedded:
        size = segment_scenarios or EMBEDDED_SEGMENT_SCENARIOS
    segments = [scenarios[i:i + size] for i in range(0, len(scenarios), size)] or [[]]
    recording = out_dir / "recording.mcap"
    parts = [recording] if len(segments) == 1 else [
        out_dir / f"recording.part-{n:02d}.mcap" for n in range(len(segments))]
    drives: list[Drive] = []
    for n, (segment, part) in enumerate(zip(segments, parts, strict=True)):
        async with kafka(settings) as bootstrap:
            drives.append(await drive_scenarios(
                settings, bootstrap, scenarios=segment, first_index=n * size, clock=clock,
                speed=speed, run_id=run_id, out_dir=out_dir,
                recording=part if record else None, duration_s=duration_s,
                camera_rate_hz=camera_rate_hz, progress=progress))
    if record and len(parts) > 1:
        await asyncio.to_thread(join_recordings, parts, recording)
    return await finish_run(Drive.join(drives), clock=clock, run_id=run_id, out_dir=out_dir,
                            record=record, camera_rate_hz=camera_rate_hz, progress=progress)


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

    rows: list[dict[str, Any]]
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


async def run_main_job(settings: Settings, bootstrap: str, *, scenarios: list[str], clock: str,
                       speed: float, run_id: str, out_dir: Path, record: bool = True,
                       duration_s: float | None = None,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Run every scenario in closed loop through Kafka at `bootstrap`; return the summary."""
    drive = await drive_scenarios(settings, bootstrap, scenarios=scenarios, first_index=0,
                                  clock=clock, speed=speed, run_id=run_id, out_dir=out_dir,
                                  recording=out_dir / "recording.mcap" if record else None,
                                  duration_s=duration_s, progress=progress)
    return await finish_run(drive, clock=clock, run_id=run_id, out_dir=out_dir, record=record,
                            progress=progress)


async def finish_run(drive: Drive, *, clock: str, run_id: str, out_dir: Path, record: bool,
                     progress: Progress | None,
                     camera_rate_hz: float | None = None) -> dict[str, Any]:
    """The run's summary (and its report, when recorded)."""
    rows = drive.rows
    summary = {"run_id": run_id, "clock": clock, "closed_loop": True,
               "camera_rate_hz": camera_rate_hz, "scenarios": rows,
               "totals": totals(rows), "created_ns": time.time_ns(),
               "perception": {"model_version": drive.model_version,
                              "frames_dropped": sum(drive.frames_dropped.values()),
                              "frames_dropped_by_reason": dict(sorted(
                                  drive.frames_dropped.items())),
                              "batch_size_mean": round(sum(drive.batch_sizes) /
                                                       max(1, len(drive.batch_sizes)), 2)},
               "files": {"summary": "summary.json",
                         "recording": "recording.mcap" if record else None,
                         "audit": "audit.db", "perception_log": "perception.log",
                         "planning_log": "planning.log"}}
    if record:
        await write_run_report(out_dir, summary, progress)
    return summary


async def drive_scenarios(settings: Settings, bootstrap: str, *, scenarios: list[str],
                          first_index: int, clock: str, speed: float, run_id: str, out_dir: Path,
                          recording: Path | None, duration_s: float | None = None,
                          camera_rate_hz: float | None = None,
                          progress: Progress | None = None) -> Drive:
    """Start every service on `bootstrap`, drive the scenarios in closed loop, stop them.

    Scenario ``i`` of the list runs as ``<run_id>-<first_index + i>``; the audit trail goes
    to ``out_dir/audit.db`` (continued when it exists) and, with ``recording``, every topic
    to that MCAP file. ``camera_rate_hz`` caps the cameras' rate (None: the scenarios' own);
    the planner's perception timeout and the monitor's expected rates follow it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any I/O loop
    # One torch thread for the planner and one for the detector (each in its process) leave the
    # second core to the renderer and Kafka, and keep OpenMP threads from spinning against each
    # other (seconds per frame).
    run_settings = settings.model_copy(update={
        "group_prefix": f"{settings.group_prefix}.{run_id}",
        "torch_threads": settings.torch_threads or 1})
    torch.set_num_threads(run_settings.torch_threads)
    lockstep = clock == "lockstep"
    # This run's consumer groups are new: they start at the topics' ends, not at the history
    # of earlier runs on the same cluster, which they would otherwise work through first.
    fresh: dict[str, Any] = {"start_from": "latest"}
    planning_options = PlanningSettings(clock="source" if lockstep else "wall",
                                        perception_rate_hz=camera_rate_hz)
    rates = {t.name: camera_rate_hz for t in FRAME_RATE_TOPICS} if camera_rate_hz else {}
    monitor, _ = build_monitor(run_settings, bootstrap, load_monitor_settings(rates_hz=rates))
    audit = build_audit(run_settings, bootstrap,
                        options=AuditSettings(url=f"sqlite:///{(out_dir / 'audit.db').resolve()}"),
                        **fresh)
    simulator = ServiceRuntime("simulator", run_settings, bootstrap, run_id=run_id, **fresh)
    current: list[ScenarioStreamer] = []
    async def on_control(rec: Record) -> None:
        if current:
            await current[-1].on_control(rec)

    # Only the newest control matters to the simulator: no commit round trip per command.
    simulator.consume(VEHICLE_CONTROL, at_least_once=False)(on_control)
    services: list[ServiceRuntime] = [monitor, audit, simulator]
    # Perception and planning run in processes of their own: in one interpreter the model's
    # thread, the renderer, the planner and every consumer share one lock, and in real time
    # each Kafka hop waited on it, and each plan on the renders (docs/benchmarks.md).
    perception = PerceptionProcess(out_dir / "perception.log")
    planning = PlanningProcess(out_dir / "planning.log")
    # Lockstep: one frame per model run. Which frames of two cameras share a batch depends on
    # timing, and a batched convolution's floats differ from a single one's, so batching made
    # multi-camera replays differ (cut_in: min distance 29.45 vs 29.62 m in two runs).
    defaults = PerceptionSettings()
    # Lockstep also serves every frame (none is ever behind another of its camera there); in
    # real time a camera behind its input skips to its newest frame.
    perception_options = defaults.model_copy(update={
        "latency_budget_ms": None if lockstep else defaults.latency_budget_ms,
        "max_batch_size": 1 if lockstep else defaults.max_batch_size,
        "newest_per_camera": not lockstep})
    stop_recording = asyncio.Event()
    recorder_task = None
    ready = asyncio.Event()
    if recording is not None:
        recorder = Recorder(run_settings, bootstrap, TOPICS, recording, from_beginning=False)
        recorder_task = asyncio.create_task(recorder.run(stop_recording, on_ready=ready.set))
    try:
        started, *_ = await asyncio.gather(
            perception.start(run_settings, perception_options, bootstrap),
            planning.start(run_settings, planning_options, bootstrap),
            *(s.start() for s in services))
        assigned = await asyncio.gather(*(s.wait_assigned(60)
                                          for s in (audit, simulator)))
        if not all(assigned):
            log.warning("main job: some consumers got no partitions within 60 s; going on")
        if recorder_task is not None:
            await asyncio.wait_for(ready.wait(), timeout=60)
        results = []
        for i, name in enumerate(scenarios):
            options = SimulatorSettings(scenario=name, loop="closed",
                                        clock="lockstep" if lockstep else "realtime", speed=speed,
                                        lockstep_timeout_s=10.0, duration_s=duration_s,
                                        camera_rate_hz=camera_rate_hz)
            streamer = ScenarioStreamer(simulator, options,
                                        run_id=f"{run_id}-{first_index + i:02d}")
            current[:] = [streamer]
            results.append(await streamer.run(progress))
            current.clear()
    finally:
        for service in reversed(services):
            with contextlib.suppress(Exception):
                await service.stop()
        await planning.stop()
        counts = await perception.stop()
        stop_recording.set()
        if recorder_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(recorder_task, timeout=30)
    rows = [scorecard_row(r["scenario"], v, r["wall_s"]) for r in results for v in r["vehicles"]]
    dropped = {str(reason): int(n) for reason, n in counts.get("dropped", {}).items()}
    return Drive(rows, str(started["model_version"]), dropped,
                 [int(b) for b in counts.get("batch_sizes", [])])


async def write_run_report(out_dir: Path, summary: dict[str, Any],
                           progress: Progress | None = None) -> None:
    """Write report.html beside the recording; a failure is logged, never fatal to the run."""
    try:
        # Imported here: a broken plotting or video stack must not stop `roadstream run`.
        from services.report import write_report

        await asyncio.to_thread(write_report, out_dir, summary=summary, progress=progress)
    except Exception as exc:  # the run's results stand without their report
        log.warning("run report not written: %s: %s", type(exc).__name__, exc)
    else:
        summary["files"]["report"] = "report.html"

