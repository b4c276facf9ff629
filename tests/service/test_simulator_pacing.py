"""The simulator's real-time pacing with TestKafkaBroker: cameras take turns; behind, it skips."""

from __future__ import annotations

import time
from typing import Any

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.messages import FrameMeta
from services.runtime.service import ServiceRuntime
from services.settings import Settings
from services.simulator.runner import ScenarioStreamer
from services.simulator.settings import SimulatorSettings
from simulators import world as world_module

TWO_CAMERAS = "cut_in"  # front and front_wide, both 20 Hz in a 20 Hz world


async def frames_of(options: SimulatorSettings) -> tuple[dict[str, Any], list[FrameMeta]]:
    runtime = ServiceRuntime("simulator", Settings(), "localhost:9092", run_id="pace")
    seen: list[FrameMeta] = []

    @runtime.broker.subscriber("camera.frames")
    async def on_frame(msg: KafkaMessage) -> None:
        seen.append(FrameMeta.from_headers(msg.raw_message.headers))

    async with TestKafkaBroker(runtime.broker):
        result = await ScenarioStreamer(runtime, options, run_id="pace").run()
    return result, seen


async def test_in_real_time_cameras_slower_than_the_world_take_turns() -> None:
    result, seen = await frames_of(SimulatorSettings(
        scenario=TWO_CAMERAS, loop="open", clock="realtime", speed=20, duration_s=1.0,
        camera_rate_hz=10))
    ticks = {cam: sorted(m.seq for m in seen if m.camera_id == cam) for cam in ("front", "front_wide")}
    assert ticks["front"] == list(range(0, 20, 2))
    assert ticks["front_wide"] == list(range(1, 20, 2))
    assert result["vehicles"][0]["frames"] == 20
    assert result["vehicles"][0]["frames_skipped"] == 0


async def test_lockstep_renders_every_camera_on_the_first_tick_of_its_period() -> None:
    _, seen = await frames_of(SimulatorSettings(
        scenario=TWO_CAMERAS, loop="open", clock="lockstep", duration_s=0.5))
    # front at the world's 20 Hz, front_wide at its own 10 Hz, on the same ticks as front
    assert sorted(m.seq for m in seen if m.camera_id == "front") == list(range(10))
    assert sorted(m.seq for m in seen if m.camera_id == "front_wide") == list(range(0, 10, 2))


async def test_a_real_time_loop_behind_the_clock_skips_frames_and_counts_them(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    render = world_module.World.render
    slow_until = time.monotonic() + 1.0

    def slow_render(self, camera, options=None):  # type: ignore[no-untyped-def]
        if time.monotonic() < slow_until:
            time.sleep(0.12)  # 70 ms over each 50 ms tick: the loop falls behind, past 200 ms
        return render(self, camera, options)

    monkeypatch.setattr(world_module.World, "render", slow_render)
    result, seen = await frames_of(SimulatorSettings(
        scenario="ccrs_20kph", loop="open", clock="realtime", duration_s=2.0))
    vehicle = result["vehicles"][0]
    assert vehicle["frames_skipped"] > 0
    assert vehicle["frames"] + vehicle["frames_skipped"] == 40  # every due frame accounted for
    assert len(seen) == vehicle["frames"]
    # it caught up: the second half of the run rendered every frame
    assert set(range(30, 40)) <= {m.seq for m in seen}
