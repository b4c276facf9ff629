"""Video and image-folder sources, and the replay command's promise: a bad source sends nothing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.cli import record as record_cli
from services.cli.main import main
from services.messages import CAMERA_FRAMES, VEHICLE_STATE, Calibration, FrameMeta
from services.recording.envelope import KafkaRecord, RecordingError
from services.recording.mcap_io import RecordingWriter
from services.recording.replayer import CameraOptions, replay_frames
from services.recording.sources import (
    ImageFolderSource,
    VideoSource,
    check_calibration,
    default_calibration,
    load_calibration,
    open_frame_source,
)


def image(width: int, height: int, shade: int) -> np.ndarray:
    out = np.full((height, width, 3), shade, np.uint8)
    out[: height // 2, : width // 3] = (255, 0, 0)
    return out


def image_folder(folder: Path) -> Path:
    folder.mkdir()
    cv2.imwrite(str(folder / "frame_002.png"), image(40, 30, 80))
    cv2.imwrite(str(folder / "frame_000.jpg"), image(40, 30, 20))
    cv2.imwrite(str(folder / "frame_001.JPEG"), image(40, 30, 50))
    (folder / "notes.txt").write_text("not an image")
    return folder


def video(path: Path, frames: int = 6, fps: float = 15.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (48, 32))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(image(48, 32, 30 * i))
    writer.release()
    return path


def test_folder_frames_are_sorted_by_name_and_keep_their_bytes(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "imgs")
    source = ImageFolderSource(folder)
    frames = list(source.frames())
    assert source.count == 3
    assert [f.content_type for f in frames] == ["image/jpeg", "image/jpeg", "image/png"]
    assert frames[0].data == (folder / "frame_000.jpg").read_bytes()
    assert frames[2].data == (folder / "frame_002.png").read_bytes()
    assert {(f.width, f.height) for f in frames} == {(40, 30)} == set(source.sizes)


def test_video_frames_are_counted_and_decode(tmp_path: Path) -> None:
    source = VideoSource(video(tmp_path / "clip.avi"))
    frames = list(source.frames())
    assert source.count == len(frames) == 6
    assert source.fps == pytest.approx(15.0)
    for frame in frames:
        decoded = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        assert decoded.shape == (32, 48, 3)
        assert frame.content_type == "image/jpeg"


def test_bad_sources_name_the_file_and_the_problem(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(RecordingError, match=r"empty: empty folder"):
        open_frame_source(empty)
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(RecordingError, match=r"broken\.mp4: not a readable video"):
        open_frame_source(bad_video)
    with pytest.raises(RecordingError, match=r"missing\.mp4: no such video file"):
        open_frame_source(tmp_path / "missing.mp4")
    folder = image_folder(tmp_path / "imgs")
    good = (folder / "frame_000.jpg").read_bytes()
    (folder / "frame_001.JPEG").write_bytes(good[: len(good) // 3])
    with pytest.raises(RecordingError, match=r"frame_001\.JPEG: image does not decode"):
        open_frame_source(folder)
    (folder / "frame_001.JPEG").write_bytes(b"GIF89a....")
    with pytest.raises(RecordingError, match=r"frame_001\.JPEG: not a JPEG or PNG"):
        open_frame_source(folder)


def test_calibration_default_file_and_size_check(tmp_path: Path) -> None:
    default = default_calibration(640, 360)
    assert (default.fx, default.fy, default.cx, default.cy) == (640.0, 640.0, 320.0, 180.0)
    path = tmp_path / "cal.json"
    path.write_text(Calibration(fx=500, fy=500, cx=20, cy=15, width=40, height=30,
                                pitch_rad=0.05).model_dump_json())
    calibration = load_calibration(path)
    assert calibration.pitch_rad == 0.05
    source = ImageFolderSource(image_folder(tmp_path / "imgs"))
    check_calibration(source, calibration, path)
    wrong = calibration.model_copy(update={"width": 640})
    with pytest.raises(RecordingError, match=r"cal\.json: calibration is for 640x30 px"):
        check_calibration(source, wrong, path)
    path.write_text('{"fx": -1}')
    with pytest.raises(RecordingError, match=r"cal\.json: not a valid calibration"):
        load_calibration(path)


class CountingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes | None]]]] = []

    async def send(self, topic: str, value: bytes, *, key: bytes | None, headers: object) -> None:
        self.sent.append((topic, value, key, list(headers)))  # type: ignore[call-overload]

    async def flush(self) -> None:
        return None


async def test_frames_carry_the_full_header_set(tmp_path: Path) -> None:
    source = ImageFolderSource(image_folder(tmp_path / "imgs"))
    publisher = CountingPublisher()
    options = CameraOptions(vehicle_id="car-7", camera_id="left", run_id="r1")
    assert await replay_frames(source, publisher, options, rate=0, loop=False) == 3
    for seq, (topic, value, key, headers) in enumerate(publisher.sent):
        meta = FrameMeta.from_headers(headers)  # type: ignore[arg-type]
        assert topic == CAMERA_FRAMES.name
        assert key == b"car-7/left" == meta.key
        assert (meta.seq, meta.run_id, meta.width, meta.height) == (seq, "r1", 40, 30)
        assert meta.calibration == default_calibration(40, 30)
        assert cv2.imdecode(np.frombuffer(value, np.uint8), cv2.IMREAD_COLOR) is not None


class FakeKafka:
    """Stands in for the broker and the producer of the replay command, counting use."""

    def __init__(self) -> None:
        self.brokers_started = 0
        self.publisher = CountingPublisher()

    @contextlib.asynccontextmanager
    async def kafka(self, settings: object) -> AsyncIterator[str]:
        self.brokers_started += 1
        yield "fake:9092"

    def publisher_factory(self, settings: object, bootstrap: str) -> object:
        fake = self

        class Ctx:
            async def __aenter__(self) -> CountingPublisher:
                return fake.publisher

            async def __aexit__(self, *exc: object) -> None:
                return None

        return Ctx()


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    fake = FakeKafka()
    monkeypatch.setattr(record_cli, "kafka", fake.kafka)
    monkeypatch.setattr(record_cli, "KafkaPublisher", fake.publisher_factory)
    monkeypatch.delenv("ROADSTREAM_BOOTSTRAP_SERVERS", raising=False)
    return fake


def recording(path: Path, count: int = 5) -> Path:
    with RecordingWriter(path, [VEHICLE_STATE]) as writer:
        for i in range(count):
            writer.write(KafkaRecord(topic=VEHICLE_STATE.name, key=b"ego",
                                     value=b'{"seq":%d}' % i, timestamp_ms=1_000 + i))
    return path


def test_good_sources_go_through_the_fakes(tmp_path: Path, fake_kafka: FakeKafka) -> None:
    """The control for the test below: the same fakes do see what a good source sends."""
    assert main(["replay", str(image_folder(tmp_path / "imgs")), "--rate", "0"]) == 0
    assert main(["replay", str(recording(tmp_path / "ok.mcap")), "--rate", "0"]) == 0
    assert fake_kafka.brokers_started == 2
    assert len(fake_kafka.publisher.sent) == 3 + 5


@pytest.mark.parametrize(("name", "problem"), [
    ("cut.mcap", "truncated MCAP file"),
    ("garbage.mcap", "not an MCAP file"),
    ("broken.mp4", "not a readable video"),
    ("empty", "empty folder"),
])
def test_bad_sources_exit_non_zero_and_publish_nothing(tmp_path: Path, fake_kafka: FakeKafka,
                                                       capsys: pytest.CaptureFixture[str],
                                                       name: str, problem: str) -> None:
    good = recording(tmp_path / "good.mcap", 50).read_bytes()
    (tmp_path / "cut.mcap").write_bytes(good[: len(good) * 2 // 3])
    (tmp_path / "garbage.mcap").write_bytes(b"\x89MCAQ" + b"\x00" * 200)
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video" * 30)
    (tmp_path / "empty").mkdir()
    code = main(["replay", str(tmp_path / name), "--rate", "0"])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{tmp_path / name}: {problem}" in err
    assert fake_kafka.brokers_started == 0
    assert fake_kafka.publisher.sent == []


def test_camera_flags_are_refused_for_a_recording(tmp_path: Path, fake_kafka: FakeKafka,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(recording(tmp_path / "ok.mcap")), "--fps", "5"]) == 1
    assert "--fps is for video" in capsys.readouterr().err
    assert fake_kafka.publisher.sent == []


def test_record_refuses_to_overwrite_before_connecting(tmp_path: Path, fake_kafka: FakeKafka,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    existing = recording(tmp_path / "old.mcap")
    before = existing.read_bytes()
    assert main(["record", "--out", str(existing), "--duration", "1"]) == 1
    assert "exists; choose another name or pass --overwrite" in capsys.readouterr().err
    assert fake_kafka.brokers_started == 0
    assert existing.read_bytes() == before
