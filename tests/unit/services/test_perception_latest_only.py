"""Real-time intake: only the newest frame of each camera in a batch goes to the model."""

from __future__ import annotations

from services.frame.delivery import Record
from services.perception.service import newest_per_camera


def rec(partition: int, offset: int, key: bytes | None) -> Record:
    return Record(topic="camera.frames", partition=partition, offset=offset, key=key, value=b"")


def test_the_newest_frame_of_each_camera_is_kept_and_the_rest_reported() -> None:
    batch = [rec(0, 10, b"ego/front"), rec(1, 4, b"ego/rear"), rec(0, 11, b"ego/front"),
             rec(0, 12, b"other/front"), rec(0, 13, b"ego/front")]
    keep, older = newest_per_camera(batch)
    assert [(r.partition, r.offset) for r in keep] == [(1, 4), (0, 12), (0, 13)]
    assert [(r.partition, r.offset) for r in older] == [(0, 10), (0, 11)]
    assert newest_per_camera([]) == ([], [])
