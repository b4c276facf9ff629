"""Streams a scenario into Kafka: camera frames, vehicle state and ground truth.

Open loop: the ego follows its scripted route. Closed loop: the ego obeys `vehicle.control`
(matched by vehicle id and run id). Clocks: real time (paced to the wall clock times a speed
factor) or lockstep (frame N+1 is rendered only after a control for frame N arrived, or the
timeout passed, which is counted). Lockstep runs are deterministic: the world advances by the
same steps and applies the same commands.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.control import ControlCommand
from services.control.client import CommandVerifier
from services.control.signing import CommandRejected, Reason
from services.messages import (
    CAMERA_FRAMES,
    SIM_GROUND_TRUTH,
    VEHICLE_STATE,
    ControlClock,
    ControlMode,
    EventRefs,
    Severity,
    VehicleControl,
)
from services.runtime.delivery import Record
from services.runtime.events import RUN_FINISHED, safety_event
from services.runtime.service import ServiceRuntime
from services.simulator import convert
from services.simulator.settings import SimulatorSettings
from simulators.library import load_scenario
from simulators.render import encode_jpeg
from simulators.scenario import Scenario
from simulators.world import World

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank on the sorted values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class VehicleRun:
    """One simulated ego vehicle of a run."""

    vehicle_id: str
    world: World
    frames: int = 0
    frames_skipped: int = 0  # real time: frames due while the simulator was behind the clock
    control_timeouts: int = 0
    controls_applied: int = 0
    latest: VehicleControl | None = None
    frame_hash: Any = field(default_factory=hashlib.sha256)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    captured_at: dict[int, float] = field(default_factory=dict)  # seq → monotonic [s]
    latencies_ms: list[float] = field(default_factory=list)  # frame capture → its control
    modes: dict[str, int] = field(default_factory=dict)
    engaged_at_s: float | None = None  # scenario time the stack's commands took over [s]
    verifier: CommandVerifier | None = None  # closed loop: the vehicle-side check
    rejected: dict[str, int] = field(default_factory=dict)  # commands refused, by reason
    expired: int = 0  # genuine commands that arrived after their validity (real time)
    last_stamp_ns: int = 0  # stamp of the newest tick published [ns]

    def latency(self) -> dict[str, float | None]:
        """End-to-end latency percentiles [ms]: frame capture to its first control received."""
        if not self.latencies_ms:
            return {"p50": None, "p99": None, "n": 0}
        return {"p50": round(percentile(self.latencies_ms, 50), 2),
                "p99": round(percentile(self.latencies_ms, 99), 2), "n": len(self.latencies_ms)}

    def summary(self) -> dict[str, Any]:
        """Metrics of this vehicle's run."""
        return {"vehicle_id": self.vehicle_id, "frames": self.frames,
                "frames_skipped": self.frames_skipped,
                "control_timeouts": self.control_timeouts,
                "controls_applied": self.controls_applied,
                "frame_hash": self.frame_hash.hexdigest(), "latency_ms": self.latency(),
                "control_modes": dict(self.modes), "engaged_at_s": self.engaged_at_s,
                "commands_rejected": dict(sorted(self.rejected.items())),
                "commands_expired": self.expired,
                "collision_class": self.world.collisions[0].actor_class
                if self.world.collisions else None, **self.world.metrics.summary()}


class ScenarioStreamer:
    """Runs one scenario for N vehicles, publishing on `runtime`.

    In closed loop its controls come from `on_control`, which the simulator service's one
    `vehicle.control` subscription calls (`services.simulator.service.Simulator`).
    """

    def __init__(self, runtime: ServiceRuntime, options: SimulatorSettings, *, run_id: str,
                 scenario: Scenario | None = None,
                 verifier: Callable[[str], CommandVerifier] | None = None) -> None:
        """``verifier``: the vehicle-side check of each vehicle id (closed loop; None: commands
        are taken unverified, as in open-loop tests of the streamer alone)."""
        self.runtime = runtime
        self.options = options
        self.run_id = run_id
        self.scenario = scenario or load_scenario(options.scenario or _default())
        seed = options.seed if options.seed is not None else self.scenario.seed
        self.vehicles = {
            f"ego-{i}" if options.vehicles > 1 else "ego":
            VehicleRun(f"ego-{i}" if options.vehicles > 1 else "ego",
                       World.from_scenario(self.scenario, seed=seed + i))
            for i in range(options.vehicles)
        }
        if verifier is not None:
            for run in self.vehicles.values():
                run.verifier = verifier(run.vehicle_id)
        self.cameras = list(self.vehicles[next(iter(self.vehicles))].world.cameras.values())
        self.rate_hz = max(c.rate_hz for c in self.scenario.cameras)  # the world's tick
        cap = options.camera_rate_hz or self.rate_hz
        #: Ticks between frames, per camera: each camera at its own rate, at most ``cap``.
        self.frame_every = {c.camera_id: max(1, round(self.rate_hz / min(c.rate_hz, cap)))
                            for c in self.cameras}
        #: The tick within its period at which each camera renders. In real time, cameras
        #: slower than the world take turns (two at 10 Hz in a 20 Hz world render on alternate
        #: ticks), so no tick renders them all at once and the loop keeps its pace. Lockstep
        #: keeps every camera on tick 0 of its period, as its recorded replays were made.
        realtime = options.clock == "realtime"
        self.frame_phase = {c.camera_id: i % self.frame_every[c.camera_id] if realtime else 0
                            for i, c in enumerate(self.cameras)}
        self.duration_s = options.duration_s or self.scenario.duration_s

    async def on_control(self, record: Record) -> None:
        """Verify a command as the vehicle would; keep the newest accepted one per vehicle of
        this run.

        A command that fails the vehicle-side check (docs/vehicle-client.md) is refused,
        counted by reason and audited. In real time, one that is genuine but arrived after its
        validity is only counted (``commands_expired``): the fallback already covers it, and an
        event per late command would bury the real rejections. In lockstep no genuine command
        can expire, so an expired one is a rejection like the others.
        """
        control = VehicleControl.decode(record.value, source=f"{record.topic}@{record.offset}")
        run = self.vehicles.get(control.vehicle_id)
        if run is None or control.run_id != self.run_id:
            return
        if run.verifier is not None:
            realtime = self.options.clock == "realtime"
            now_ns, clock = ((time.time_ns(), ControlClock.WALL) if realtime
                             else (run.last_stamp_ns, ControlClock.SOURCE))
            try:
                run.verifier.check(record.headers, record.value, now_ns, clock)
            except CommandRejected as exc:
                if exc.reason == Reason.EXPIRED and realtime:
                    run.expired += 1  # late over the wall clock: counted, not audited
                    return
                run.rejected[exc.reason.value] = run.rejected.get(exc.reason.value, 0) + 1
                await self.runtime.emit(safety_event(
                    source="simulator", type_="command_rejected", severity=Severity.WARNING,
                    vehicle_id=run.vehicle_id, details={"reason": exc.reason.value,
                                                        "why": str(exc)[:500]},
                    refs=EventRefs(command_seq=control.seq), run_id=self.run_id))
                return
        if control.source is not None:
            captured = run.captured_at.pop(control.source.seq, None)
            if captured is not None:
                run.latencies_ms.append((time.monotonic() - captured) * 1e3)
        if run.latest is None or control.seq > run.latest.seq:
            run.latest = control
            run.arrived.set()

    async def _await_control(self, run: VehicleRun, seq: int) -> None:
        deadline = time.monotonic() + self.options.lockstep_timeout_s
        while not (run.latest and run.latest.source and run.latest.source.seq >= seq):
            run.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                run.control_timeouts += 1
                return
            try:
                await asyncio.wait_for(run.arrived.wait(), timeout=remaining)
            except TimeoutError:
                run.control_timeouts += 1
                return

    def _command(self, run: VehicleRun, stamp_ns: int) -> ControlCommand | None:
        """The command the ego obeys in this tick; None: the scenario's own driver.

        Closed loop engages at the stack's first fresh `normal` command (or after
        ``engage_within_s``): in real time the first perception result reaches the gate some
        0.5 s after the first frame, and until then the gate rightly commands a minimal-risk
        stop. A test track does the same: a driver holds the route until the system under
        test is on. Before it, the ticks count as ``driver`` in the control modes.
        """
        if self.options.loop == "open":
            return None
        control = run.latest
        fresh = control is not None and (self.options.clock != "realtime"
                                         or control.valid_until_ns >= stamp_ns)
        if run.engaged_at_s is None:
            ready = fresh and control is not None and control.mode == ControlMode.NORMAL
            if not ready and run.world.t_s < self.options.engage_within_s - 1e-9:
                run.modes["driver"] = run.modes.get("driver", 0) + 1
                return None
            run.engaged_at_s = round(run.world.t_s, 3)
        if control is None or not fresh:
            run.modes["fallback"] = run.modes.get("fallback", 0) + 1
            return convert.FALLBACK_COMMAND
        run.controls_applied += 1
        run.modes[control.mode.value] = run.modes.get(control.mode.value, 0) + 1
        return convert.control_command(control)

    async def _publish_tick(self, run: VehicleRun, seq: int, stamp_ns: int,
                            behind: bool = False) -> bool:
        """Publish the state and the frames due at this tick; True when a frame was among them.

        `behind` (real time, more than ``max_lag_ms`` late): the frames due are skipped and
        counted, so the loop catches up instead of stamping every later frame older than the
        last.
        """
        world, vid = run.world, run.vehicle_id
        run.last_stamp_ns = stamp_ns
        frames_before = run.frames
        run.captured_at[seq] = time.monotonic()
        while len(run.captured_at) > 1000:  # frames whose control never came
            run.captured_at.pop(next(iter(run.captured_at)))
        sends = [self.runtime.publish(VEHICLE_STATE, convert.vehicle_state(
            world.ego_state(), world.road, vehicle_id=vid, stamp_ns=stamp_ns, run_id=self.run_id), key=vid)]
        for cam in self.cameras:
            if (seq - self.frame_phase[cam.camera_id]) % self.frame_every[cam.camera_id]:
                continue
            if behind:
                run.frames_skipped += 1
                continue
            image = encode_jpeg(world.render(cam.camera_id), self.options.jpeg_quality)
            run.frame_hash.update(image)
            meta = convert.frame_meta(cam, vehicle_id=vid, seq=seq, stamp_ns=stamp_ns,
                                      run_id=self.run_id,
                                      traceparent=convert.traceparent(self.run_id, vid,
                                                                      cam.camera_id, seq))
            sends.append(self.runtime.publish(CAMERA_FRAMES, image, key=meta.key,
                                            headers={k: v.decode() for k, v in meta.to_headers()}))
            if self.options.ground_truth:
                gt = convert.ground_truth(world.ground_truth(cam.camera_id), vehicle_id=vid,
                                          seq=seq, stamp_ns=stamp_ns, run_id=self.run_id)
                sends.append(self.runtime.publish(SIM_GROUND_TRUTH, gt, key=meta.key.decode()))
            run.frames += 1
        await asyncio.gather(*sends)
        return run.frames > frames_before

    async def run(self, progress: Progress | None = None,
                  stop: asyncio.Event | None = None) -> dict[str, Any]:
        """Stream the whole scenario; return per-vehicle metrics."""
        dt = 1.0 / self.rate_hz
        steps = round(self.duration_s * self.rate_hz)
        start_ns, start_wall = time.time_ns(), time.monotonic()
        stamp_ns = start_ns
        for seq in range(steps):
            if stop is not None and stop.is_set():
                break
            stamp_ns = start_ns + round(seq * dt * 1e9)
            behind = False
            if self.options.clock == "realtime":
                delay = start_wall + seq * dt / self.options.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                # Faster than real time (speed > 1) is a paced replay: every frame is rendered.
                lag_ms = self.options.max_lag_ms
                behind = (self.options.speed <= 1.0 and lag_ms is not None
                          and -delay * 1e3 > lag_ms)
            framed = [await self._publish_tick(run, seq, stamp_ns, behind)
                      for run in self.vehicles.values()]
            if self.options.loop == "closed" and self.options.clock == "lockstep" and any(framed):
                # a control answers a frame: ticks without one go on with the latest control
                await asyncio.gather(*(self._await_control(r, seq) for r in self.vehicles.values()))
            for run in self.vehicles.values():
                if not run.world.done:
                    run.world.step(dt, self._command(run, stamp_ns))
            if progress is not None:
                progress(self.scenario.name, (seq + 1) / steps)
            if all(r.world.done for r in self.vehicles.values()):
                break
        await self._announce_end("stopped" if stop is not None and stop.is_set() else "completed",
                                 stamp_ns)
        return {"scenario": self.scenario.name, "run_id": self.run_id,
                "loop": self.options.loop, "clock": self.options.clock,
                "wall_s": round(time.monotonic() - start_wall, 3),
                "vehicles": [r.summary() for r in self.vehicles.values()]}

    async def _announce_end(self, reason: str, last_stamp_ns: int) -> None:
        """`run_finished` (info) per vehicle: the silence that follows is no outage (monitor)."""
        await asyncio.gather(*(self.runtime.emit(safety_event(
            source="simulator", type_=RUN_FINISHED, severity=Severity.INFO,
            vehicle_id=run.vehicle_id, run_id=self.run_id,
            details={"scenario": self.scenario.name, "reason": reason, "frames": run.frames,
                     "last_stamp_ns": last_stamp_ns})) for run in self.vehicles.values()))


def _default() -> str:
    from simulators.library import DEFAULT_SCENARIO

    return DEFAULT_SCENARIO
