"""The start-up registry check of a perception service never stops its service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from perception.hotswap import ServedModel, SwapError
from services.messages import ModelDeployment
from services.perception.deploy import Deployments, StartChoice


class BrokerDown:
    """The service's frame, with the broker unreachable: every event fails to go out."""

    def __init__(self) -> None:
        self.tried: list[Any] = []

    async def emit(self, event: Any) -> None:
        self.tried.append(event)
        raise ConnectionError("broker unreachable")


async def test_a_failed_event_at_start_leaves_the_loop_waiting_for_stop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    served = ServedModel(detector=None, version="weights-v1", sha256="a" * 64)  # type: ignore[arg-type]
    frame = BrokerDown()
    service = SimpleNamespace(model=served, frame=frame)
    deployments = Deployments(service, load=lambda path: None)  # type: ignore[arg-type,return-value]
    command = ModelDeployment(version="prod-v2", path=str(tmp_path / "prod.pt"),
                              sha256="b" * 64, stamp_ns=1)
    failed = StartChoice(command=command, failure=SwapError("sha256", "changed"))

    async def never_assigned() -> bool:
        return False

    stop = asyncio.Event()
    loop = asyncio.create_task(deployments.follow_registry(tmp_path / "registry", failed,
                                                           never_assigned, stop))
    await asyncio.sleep(0.05)
    assert len(frame.tried) == 1  # the model_swap_failed it tried to raise
    assert frame.tried[0].type == "model_swap_failed"
    assert not loop.done()  # a returned background loop would stop the service
    assert "registry check at start failed (ConnectionError" in caplog.text
    assert service.model is served
    stop.set()
    await asyncio.wait_for(loop, 5)
    deployments.worker.shutdown()
