"""`roadstream bench sim`: frames per second of render + JPEG encode + publish, on one core.

The broker runs in its own process (started first, so it keeps every core); this process is
then pinned to one core and OpenCV to one thread. Each repeat renders `frames` frames of the
scenario's front camera at the given resolution, encodes them and publishes them to
`camera.frames`; the time ends when the broker has acknowledged the last frame.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import cv2
from aiokafka import AIOKafkaProducer

from services.broker.clients import client_kwargs, producer_kwargs
from services.messages import CAMERA_FRAMES
from services.settings import Settings
from services.simulator import convert
from simulators.library import load_scenario
from simulators.render import encode_jpeg
from simulators.world import World


async def bench_sim(settings: Settings, bootstrap: str, *, scenario: str,
                    resolutions: list[tuple[int, int]], frames: int, repeats: int,
                    quality: int = 85, pin_core: bool = True) -> dict[str, Any]:
    """Median fps of render+encode+publish per resolution; JSON-ready."""
    if pin_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    sc = load_scenario(scenario)
    producer = AIOKafkaProducer(**client_kwargs(settings, bootstrap, "bench"),
                                **producer_kwargs(settings))
    await producer.start()
    results = []
    try:
        for width, height in resolutions:
            runs, sizes = [], []
            for rep in range(repeats + 1):  # the first repeat warms up and is not counted
                world = World.from_scenario(sc)
                cam = world.cameras[sc.cameras[0].id].scaled(width, height)
                dt = 1.0 / cam.rate_hz
                world.render(cam)
                start = time.perf_counter()
                futures = []
                for seq in range(frames):
                    if world.done:
                        world = World.from_scenario(sc)
                    image = encode_jpeg(world.render(cam), quality)
                    sizes.append(len(image))
                    meta = convert.frame_meta(cam, vehicle_id="bench", seq=seq,
                                              stamp_ns=time.time_ns(), run_id="bench")
                    futures.append(await producer.send(CAMERA_FRAMES.name, image, key=meta.key,
                                                       headers=meta.to_headers()))
                    world.step(dt)
                for fut in futures:
                    await fut
                elapsed = time.perf_counter() - start
                if rep:
                    runs.append(frames / elapsed)
            results.append({"width": width, "height": height, "fps_median": statistics.median(runs),
                            "fps_runs": [round(r, 2) for r in runs],
                            "jpeg_kib_mean": round(statistics.fmean(sizes) / 1024, 1)})
    finally:
        await producer.stop()
    return {"benchmark": "sim", "scenario": scenario, "frames": frames, "repeats": repeats,
            "quality": quality, "cores_used": 1 if pin_core else os.cpu_count(),
            "results": results}
