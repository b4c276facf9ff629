"""Render + JPEG encode benchmark (pure; the CLI's `roadstream bench render` calls it).

Measures frames per second of `render` + `encode_jpeg` on one camera while the world steps
at the camera rate (stepping is not timed). Reports the median over several runs; OpenCV is
held to one thread during the runs so the figure is per core.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

import cv2

from simulators.library import DEFAULT_SCENARIO, load_scenario
from simulators.render import RenderOptions, encode_jpeg
from simulators.world import World


def bench_render(width: int = 640, height: int = 360, frames: int = 200, *,
                 scenario: str = DEFAULT_SCENARIO, camera: str | None = None, repeats: int = 5,
                 quality: int = 85, warmup: int = 10, single_thread: bool = True,
                 options: RenderOptions | None = None) -> dict[str, Any]:
    """Time `frames` render+encode cycles `repeats` times at `width`×`height`.

    Returns a JSON-ready dict: `fps_median` (render+encode), `fps_runs`, `render_ms_median`,
    `encode_ms_median`, `jpeg_kib_mean`, and the settings and machine it ran with.
    """
    sc = load_scenario(scenario)
    cam_id = camera or sc.cameras[0].id
    threads_before = cv2.getNumThreads()
    if single_thread:
        cv2.setNumThreads(1)
    try:
        fps_runs, render_ms, encode_ms, sizes = [], [], [], []
        for _ in range(repeats):
            world = World.from_scenario(sc)
            cam = world.cameras[cam_id].scaled(width, height)
            dt = 1.0 / cam.rate_hz
            for _ in range(warmup):
                encode_jpeg(world.render(cam, options), quality)
            t_render = t_encode = 0.0
            for _ in range(frames):
                if world.done:
                    world = World.from_scenario(sc)
                    world.render(cam, options)  # build the new world's renderer off the clock
                world.step(dt)
                t0 = time.perf_counter()
                img = world.render(cam, options)
                t1 = time.perf_counter()
                data = encode_jpeg(img, quality)
                t2 = time.perf_counter()
                t_render += t1 - t0
                t_encode += t2 - t1
                sizes.append(len(data))
            fps_runs.append(frames / (t_render + t_encode))
            render_ms.append(1000 * t_render / frames)
            encode_ms.append(1000 * t_encode / frames)
    finally:
        cv2.setNumThreads(threads_before)
    return {
        "scenario": scenario,
        "camera": cam_id,
        "width": width,
        "height": height,
        "frames": frames,
        "repeats": repeats,
        "jpeg_quality": quality,
        "fps_median": round(statistics.median(fps_runs), 2),
        "fps_runs": [round(f, 2) for f in fps_runs],
        "render_ms_median": round(statistics.median(render_ms), 3),
        "encode_ms_median": round(statistics.median(encode_ms), 3),
        "jpeg_kib_mean": round(statistics.fmean(sizes) / 1024, 2),
        "opencv_threads": 1 if single_thread else threads_before,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "opencv": cv2.__version__},
    }
