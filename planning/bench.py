"""Planner latency benchmark: ``bench_planner()`` → p50 / p99 milliseconds.

Method: a fixed random but realistic scene (three-lane road, objects spread over the
lanes from 20 m behind to 90 m ahead, mixed classes and speeds), warm-up calls first, then
``repeats`` timed series of ``runs`` calls each; the reported p50 / p99 are the medians
over the series, so one noisy series does not decide the figure.
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch

from common.classes import ObjectClass
from planning.config import PlannerConfig
from planning.planner import Planner
from planning.runtime import tune_allocator
from planning.types import EgoState, Obstacle


def bench_scene(n_obstacles: int, seed: int = 0) -> tuple[EgoState, list[Obstacle]]:
    """The benchmark's ego state and objects (deterministic for a seed).

    Objects are placed lane by lane without overlapping each other, and the ego's own lane
    is kept clear for 15 m around it, so the scene is drivable but busy.
    """
    rng = np.random.default_rng(seed)
    ego = EgoState(
        speed_mps=12.0, accel_mps2=0.2, lane_index=1, n_lanes=3, lane_width_m=3.5,
        speed_limit_mps=16.7, road_curvature_1pm=0.002, lateral_offset_m=0.1,
    )
    classes = [ObjectClass.CAR, ObjectClass.TRUCK, ObjectClass.PEDESTRIAN, ObjectClass.CYCLIST]
    placed: list[tuple[float, float]] = []  # (x, lane y) of the objects so far
    obstacles: list[Obstacle] = []
    for _ in range(100 * n_obstacles):  # rejection sampling; a dense request ends early
        if len(obstacles) >= n_obstacles:
            break
        cls = classes[int(rng.choice(4, p=[0.6, 0.15, 0.1, 0.15]))]
        lane_y = float(rng.choice([-3.5, 0.0, 3.5]))
        x = float(rng.uniform(-30.0, 130.0))
        near_ego = lane_y == 0.0 and abs(x) < 15.0
        if near_ego or any(ly == lane_y and abs(px - x) < 11.0 for px, ly in placed):
            continue
        placed.append((x, lane_y))
        obstacles.append(
            Obstacle(
                x_m=x,
                y_m=lane_y + float(rng.normal(0.0, 0.2)),
                vx_mps=0.0 if cls == ObjectClass.PEDESTRIAN else float(rng.uniform(0.0, 15.0)),
                vy_mps=float(rng.normal(0.0, 0.2)),
                object_class=int(cls),
                track_id=len(obstacles),
            )
        )
    return ego, obstacles


def bench_planner(
    n_candidates: int = 2000,
    n_obstacles: int = 20,
    runs: int = 200,
    device: str = "cpu",
    *,
    threads: int | None = 2,
    repeats: int = 5,
    warmup: int = 20,
    tune_malloc: bool = True,
) -> dict[str, object]:
    """Time :meth:`Planner.plan` on the benchmark scene.

    ``threads`` sets ``torch.set_num_threads`` for the run (None: leave it) and restores
    it afterwards. ``tune_malloc`` applies :func:`planning.runtime.tune_allocator` first
    (process-wide, as the planning service should at start-up). Returns p50_ms / p99_ms
    (medians over ``repeats`` series of ``runs`` calls), the per-series figures, the
    actual candidate count and the set-up.
    """
    malloc_tuned = tune_allocator() if tune_malloc else False
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        config = PlannerConfig().with_candidate_count(n_candidates)
        planner = Planner(config, device=device)
        ego, obstacles = bench_scene(n_obstacles)
        sync = torch.cuda.synchronize if planner.device.type == "cuda" else (lambda: None)
        for _ in range(warmup):
            planner.plan(ego, obstacles)
        sync()
        p50s: list[float] = []
        p99s: list[float] = []
        for _ in range(repeats):
            times = np.empty(runs)
            for i in range(runs):
                start = time.perf_counter()
                planner.plan(ego, obstacles)  # returns host arrays: includes the sync
                times[i] = time.perf_counter() - start
            p50s.append(float(np.percentile(times, 50) * 1e3))
            p99s.append(float(np.percentile(times, 99) * 1e3))
        result = planner.plan(ego, obstacles)
        return {
            "p50_ms": float(np.median(p50s)),
            "p99_ms": float(np.median(p99s)),
            "p50_ms_series": p50s,
            "p99_ms_series": p99s,
            "n_candidates": config.n_candidates,
            "n_obstacles": n_obstacles,
            "runs": runs,
            "repeats": repeats,
            "device": str(planner.device),
            "threads": torch.get_num_threads(),
            "malloc_tuned": malloc_tuned,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "behaviour": str(result.behaviour),
        }
    finally:
        torch.set_num_threads(previous_threads)
