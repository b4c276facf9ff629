"""SIGTERM a perception worker mid-batch: the batch drains, its offsets are committed within
the graceful timeout, and a new worker of the same group serves every other frame once.

Stale-dropping is off here (every frame must come out exactly once, so each missing or
repeated one is a fault, not a choice). The worker runs two ways: as `roadstream serve
perception` (how a deployment runs it; Kubernetes stops it with SIGTERM) and as the process
`roadstream run` starts for perception (`services.runtime.process`).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from services.broker.embedded import free_port, kafka
from services.perception.settings import PerceptionSettings
from services.runtime.process import ServiceProcess
from services.settings import Settings
from tests.fault_helpers import (
    FRAMES_SERVED,
    ServeProcess,
    committed_offsets,
    frame_item,
    held_partitions,
    metric_total,
    read_topic,
    served_frames,
    vehicles_per_partition,
    wait_until,
)
from tests.kafka_helpers import header, produce

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(900)]

#: What a deployment gives a worker between SIGTERM and SIGKILL (deploy/k8s/perception.yaml,
#: terminationGracePeriodSeconds); the service's own drain limit is below it.
GRACE_S = 30.0
PARTITIONS = Settings().topic_partitions
FRAMES_PER_CAMERA = 12  # one camera per partition: 36 frames, six batches of six
# No frame is too old to serve in this test's time, and none is skipped for a newer one.
OPTIONS = PerceptionSettings(latency_budget_ms=600_000.0, newest_per_camera=False,
                             max_batch_size=6)


class Worker(Protocol):
    """A perception worker process the test can signal."""

    port: int

    async def start(self) -> None: ...
    def signal(self, sig: int) -> None: ...
    async def wait(self) -> int: ...
    async def close(self) -> None: ...


class ServeWorker(ServeProcess):
    """`roadstream serve perception`, as a deployment runs it."""

    def __init__(self, bootstrap: str, group: str, log: Path) -> None:
        super().__init__("perception", bootstrap, group, log, env={
            "ROADSTREAM_PERCEPTION_LATENCY_BUDGET_MS": str(OPTIONS.latency_budget_ms),
            "ROADSTREAM_PERCEPTION_NEWEST_PER_CAMERA": "false",
            "ROADSTREAM_PERCEPTION_MAX_BATCH_SIZE": str(OPTIONS.max_batch_size)})

    async def start(self, timeout_s: float = 240) -> None:
        await super().start(timeout_s)

        async def holds_all() -> bool:
            self.check_running()
            return await asyncio.to_thread(held_partitions, self.port) == set(range(PARTITIONS))

        await wait_until(holds_all, timeout_s, "the worker holding every partition")


class TableWorker:
    """The perception process `roadstream run` starts (`ServiceProcess`)."""

    def __init__(self, bootstrap: str, group: str, log: Path) -> None:
        self.port = free_port()
        self.bootstrap, self.group = bootstrap, group
        self.process = ServiceProcess("perception", log)

    async def start(self) -> None:
        settings = Settings(group_prefix=self.group, metrics_port=self.port, torch_threads=1)
        await self.process.start(settings, OPTIONS, self.bootstrap, timeout_s=240)

    def signal(self, sig: int) -> None:
        assert self.process.proc is not None
        self.process.proc.send_signal(sig)

    async def wait(self) -> int:
        assert self.process.proc is not None
        return await self.process.proc.wait()

    async def close(self) -> None:
        await self.process.stop()


LAUNCHERS: dict[str, Callable[[str, str, Path], Worker]] = {"serve": ServeWorker,
                                                            "run": TableWorker}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
async def test_sigterm_mid_batch_drains_commits_and_the_next_worker_repeats_nothing(
        launcher: str, unique: str, tmp_path: Path) -> None:
    # A broker of its own: a new group of `roadstream serve` starts at the earliest offset,
    # and the session's broker holds other tests' frames.
    async with kafka(Settings()) as bootstrap:
        group = f"term{unique}"
        vehicles = [vs[0] for vs in vehicles_per_partition(
            f"ego{unique}", PARTITIONS, per_partition=1).values()]
        first = LAUNCHERS[launcher](bootstrap, group, tmp_path / "first.log")
        second = LAUNCHERS[launcher](bootstrap, group, tmp_path / "second.log")
        try:
            await first.start()
            await produce(bootstrap, "camera.frames", [
                frame_item(vehicle, seq, unique)
                for seq in range(FRAMES_PER_CAMERA) for vehicle in vehicles])
            produced = {(v, s) for v in vehicles for s in range(FRAMES_PER_CAMERA)}

            async def served_some() -> bool:
                return metric_total(first.port, FRAMES_SERVED) > 0

            await wait_until(served_some, 180, "the first worker serving", interval_s=0.05)
            # It serves batch after batch of the backlog: the next one is in flight now.
            served_before = metric_total(first.port, FRAMES_SERVED)
            signalled = time.monotonic()
            first.signal(signal.SIGTERM)
            rc = await asyncio.wait_for(first.wait(), GRACE_S)
            drain_s = time.monotonic() - signalled
            assert rc == 0, f"exit code {rc} after SIGTERM"

            by_first = await served_frames(bootstrap, unique)
            committed = await committed_offsets(bootstrap, f"{group}.perception.camera.frames",
                                                "camera.frames")
            dead = await read_topic(bootstrap, "camera.frames.dlq",
                                    lambda r: header(r, "run-id") == unique)
            assert not dead, [header(r, "dlq-error-message") for r in dead]
            # The batch in flight at SIGTERM was finished and published, not abandoned...
            assert len(by_first) > served_before, (served_before, len(by_first))
            assert len(by_first) < len(produced), "the worker went on fetching after SIGTERM"
            assert set(by_first.values()) == {1}
            # ...and its offsets committed: each partition's committed offset is the number
            # of its camera's frames served (frames are served in order, per partition; a
            # partition none of whose frames was taken yet may have 0 committed, or nothing).
            per_camera = Counter(v for v, _ in by_first)
            partition_of = {v: p for p, vs in vehicles_per_partition(
                f"ego{unique}", PARTITIONS, per_partition=1).items() for v in vs}
            assert {p: n for p, n in committed.items() if n} == {
                partition_of[v]: per_camera[v] for v in vehicles if per_camera[v]}, (
                committed, per_camera)

            await second.start()

            async def all_served() -> bool:
                return set(await served_frames(bootstrap, unique)) == produced

            await wait_until(all_served, 240, "the second worker serving the rest")
            second.signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), GRACE_S) == 0
        finally:
            await first.close()
            await second.close()
        served = await served_frames(bootstrap, unique)
        print(f"\nSIGTERM ({launcher}): {len(produced)} frames, {served_before:g} served before "
              f"the signal, {len(by_first)} by the first worker, drained in {drain_s:.1f} s, "
              f"{sum(served.values()) - len(served)} served twice")
        assert set(served) == produced
        assert sum(served.values()) == len(produced), "a frame was served twice"
