"""Camera streams from a video file or a folder of images, checked before anything is sent.

Opening a source reads all of it once (a video: every frame is demuxed and decoded; a folder:
every image is decoded), so an unreadable video, an empty folder or a broken image is
reported, naming the file, before the first frame is published.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import cv2
import numpy as np
from pydantic import ValidationError

from services.messages import Calibration
from services.messages.base import describe
from services.recording.envelope import RecordingError

IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png")
JPEG_QUALITY: Final = 90


@dataclass(frozen=True)
class Frame:
    """One encoded image ready to publish."""

    data: bytes
    content_type: str  # image/jpeg or image/png
    width: int  # [px]
    height: int  # [px]


class FrameSource(Protocol):
    """A validated, re-iterable sequence of frames."""

    name: str
    count: int
    fps: float | None  # the source's own rate [Hz], None when it has none
    sizes: frozenset[tuple[int, int]]  # every (width, height) [px] it holds

    def frames(self) -> Iterator[Frame]:
        """The frames from the first, each call anew."""
        ...


def default_calibration(width: int, height: int) -> Calibration:
    """A pinhole guess for an unknown camera: fx = fy = width (about 53° horizontal FOV)."""
    return Calibration(fx=float(width), fy=float(width), cx=width / 2.0, cy=height / 2.0,
                       width=width, height=height)


def load_calibration(path: Path) -> Calibration:
    """A Calibration from a JSON file (the `calibration` frame header format)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot read the calibration file ({exc})") from None
    try:
        return Calibration.model_validate_json(text)
    except ValidationError as exc:
        raise RecordingError(f"{path}: not a valid calibration: {describe(exc)}") from None


def check_calibration(source: FrameSource, calibration: Calibration, origin: Path) -> None:
    """RecordingError when the calibration's image size differs from the source's."""
    bad = sorted(s for s in source.sizes if s != (calibration.width, calibration.height))
    if bad:
        w, h = bad[0]
        raise RecordingError(f"{origin}: calibration is for {calibration.width}x"
                             f"{calibration.height} px but {source.name} has {w}x{h} px images")


def image_type(data: bytes) -> str | None:
    """image/jpeg or image/png from the file's magic bytes; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


class VideoSource:
    """Frames of a video file (anything OpenCV's VideoCapture reads), re-encoded as JPEG."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise RecordingError(f"{path}: no such video file")
        self.path = path
        self.name = str(path)
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise RecordingError(f"{path}: not a readable video (OpenCV cannot open it)")
            ok, first = capture.read()
            if not ok or first is None:
                raise RecordingError(f"{path}: not a readable video (no frame decodes)")
            count = 1
            while capture.grab():
                count += 1
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            capture.release()
        self.count = count
        self.fps = fps if 0 < fps < 1000 else None
        height, width = first.shape[:2]
        self.sizes = frozenset({(int(width), int(height))})

    def frames(self) -> Iterator[Frame]:
        """Decode the video again and yield its frames as JPEG."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            for index in range(self.count):
                ok, image = capture.read()
                if not ok or image is None:
                    raise RecordingError(f"{self.path}: frame {index} no longer decodes")
                ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise RecordingError(f"{self.path}: frame {index} cannot be JPEG-encoded")
                height, width = image.shape[:2]
                yield Frame(encoded.tobytes(), "image/jpeg", int(width), int(height))
        finally:
            capture.release()


@dataclass(frozen=True)
class _Image:
    path: Path
    content_type: str
    width: int
    height: int


class ImageFolderSource:
    """The JPEG and PNG files of a folder, sorted by file name, published as they are."""

    fps: float | None = None

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise RecordingError(f"{folder}: no such folder")
        self.name = str(folder)
        files = sorted((p for p in folder.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: p.name)
        if not files:
            raise RecordingError(f"{folder}: empty folder: no {'/'.join(IMAGE_SUFFIXES)} images")
        self.images = [self._check(p) for p in files]
        self.count = len(self.images)
        self.sizes = frozenset((i.width, i.height) for i in self.images)

    @staticmethod
    def _check(path: Path) -> _Image:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RecordingError(f"{path}: cannot read the image ({exc.strerror})") from None
        content_type = image_type(data)
        if content_type is None:
            raise RecordingError(f"{path}: not a JPEG or PNG image")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RecordingError(f"{path}: image does not decode (corrupt or truncated)")
        height, width = image.shape[:2]
        return _Image(path, content_type, int(width), int(height))

    def frames(self) -> Iterator[Frame]:
        """The files' bytes unchanged (JPEG stays JPEG, PNG stays PNG)."""
        for image in self.images:
            try:
                data = image.path.read_bytes()
            except OSError as exc:
                raise RecordingError(f"{image.path}: cannot read the image ({exc.strerror})"
                                     ) from None
            yield Frame(data, image.content_type, image.width, image.height)


def open_frame_source(path: Path) -> FrameSource:
    """An image folder when `path` is a directory, else a video file; validated."""
    if path.is_dir():
        return ImageFolderSource(path)
    return VideoSource(path)
