"""The perception service against the embedded broker: frames in, objects out, bad frames out."""

from __future__ import annotations

import time

import pytest

from services.messages import PerceptionObjects
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.settings import Settings
from tests.kafka_helpers import collect, header, produce
from tests.service.test_perception_service import frame, tiny_detector

pytestmark = pytest.mark.integration


async def test_frames_in_objects_out_and_corrupt_frame_to_dlq(kafka_bootstrap: str,
                                                              unique: str) -> None:
    built = build(Settings(group_prefix=f"p{unique}"), kafka_bootstrap,
                  options=PerceptionSettings(latency_budget_ms=60_000, newest_per_camera=False),
                  detector=tiny_detector(),
                  start_from="latest")  # not the frames earlier tests left on the broker
    runtime = built.runtime
    await runtime.start()
    try:
        assert await runtime.wait_assigned(30)
        key = f"ego-{unique}/front".encode()
        items = []
        for seq in range(6):
            value, headers = frame(seq, stamp_ns=time.time_ns())
            headers = {**headers, "vehicle-id": f"ego-{unique}", "run-id": unique}
            if seq == 2:
                value = value[: len(value) // 2]  # truncated
            items.append((key, value, [(k, v.encode()) for k, v in headers.items()]))
        await produce(kafka_bootstrap, "camera.frames", items)
        out = await collect(kafka_bootstrap, "perception.objects", lambda r: r.key == key, 5,
                            timeout_s=30)
        dlq = await collect(kafka_bootstrap, "camera.frames.dlq", lambda r: r.key == key, 1,
                            timeout_s=10)
    finally:
        await runtime.stop()
    # Stopping the service stopped its model thread too (no thread left per stopped service).
    with pytest.raises(RuntimeError, match="shutdown"):
        built.service.worker.submit(int)
    assert [PerceptionObjects.decode(r.value).source.seq for r in out] == [0, 1, 3, 4, 5]
    assert header(dlq[0], "dlq-error-class") == "FrameError"
