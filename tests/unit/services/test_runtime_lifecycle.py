"""A service's stop is bounded: a part whose stop hangs does not keep the others running."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.runtime import lifecycle
from services.runtime.lifecycle import Lifecycle, Part


async def test_a_part_whose_stop_hangs_is_left_behind_and_the_rest_still_stop(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(lifecycle, "PART_STOP_S", 0.2)
    stopped: list[str] = []

    async def hangs() -> None:
        await asyncio.Event().wait()  # never set: a client waiting on a broker that is gone

    async def stops(name: str) -> None:
        stopped.append(name)

    service = Lifecycle("svc", [Part("first", stop=lambda: stops("first")),
                                Part("broker", stop=hangs),
                                Part("last", stop=lambda: stops("last"))])
    await service.start()
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(service.stop(), 5)
    assert stopped == ["last", "first"]  # reverse order, past the one that hung
    assert "svc: stopping the broker took over 0.2 s" in caplog.text
    assert service.phase == "stopping"
