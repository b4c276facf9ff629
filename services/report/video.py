"""The annotated MP4 of one scenario: H.264 (yuv420p), `+faststart`, playable in a browser.

OpenCV's wheel has no H.264 encoder, so frames go to the static ffmpeg (with libx264) that the
`imageio-ffmpeg` wheel ships. The file is written under a temporary name and renamed when
complete.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from services.report.overlay import FrameAnnotations, annotate
from services.report.series import EventMark, ScenarioSeries, VideoFrame

MIN_WIDTH_PX = 960  # smaller frames are scaled up so that the overlay text stays legible
CRF = 26  # x264 constant rate factor: visually clean for rendered scenes, small files
EVENT_HOLD_S = 3.0  # an event stays on screen this long after it happened [s]
SHOWN_SEVERITIES = ("warning", "critical")  # info events (topics seen, drift cleared) only plot

Progress = Callable[[float], None]


class VideoError(RuntimeError):
    """A scenario's video could not be made; the message says why."""


@dataclass(frozen=True)
class VideoResult:
    """What was written: the MP4, its frame count and a poster frame (JPEG bytes)."""

    path: Path
    frames: int
    poster_jpeg: bytes


def frame_rate(frames: list[VideoFrame]) -> float:
    """Frames per second of the recorded camera: the median frame spacing, 10 when unknown."""
    if len(frames) < 2:
        return 10.0
    dt = float(np.median(np.diff([f.t_s for f in frames])))
    return round(1.0 / dt, 3) if dt > 0 else 10.0


class _Lookup:
    """The annotations of each frame of a scenario (latest-before where not exact)."""

    def __init__(self, s: ScenarioSeries) -> None:
        self.s = s
        self.traj_stamps = sorted(s.trajectories)
        self.control_seqs = sorted(s.controls)
        shown = [e for e in s.events if e.severity in SHOWN_SEVERITIES]
        self.events = shown
        self.event_times = [e.t_s for e in shown]

    def _latest_event(self, t_s: float) -> EventMark | None:
        i = bisect.bisect_right(self.event_times, t_s + 1e-9) - 1
        if i >= 0 and t_s - self.event_times[i] <= EVENT_HOLD_S:
            return self.events[i]
        return None

    def annotations(self, f: VideoFrame) -> FrameAnnotations:
        s = self.s
        control = s.controls.get(f.seq)
        if control is None:  # a frame without its own control: the vehicle keeps the last one
            i = bisect.bisect_right(self.control_seqs, f.seq) - 1
            control = s.controls[self.control_seqs[i]] if i >= 0 else None
        j = bisect.bisect_right(self.traj_stamps, f.capture_ns) - 1
        trajectory = s.trajectories[self.traj_stamps[j]] if j >= 0 else None
        collided = s.collision_t_s is not None and f.t_s >= s.collision_t_s - 1e-9
        return FrameAnnotations(t_s=f.t_s, seq=f.seq, camera_id=f.meta.camera_id,
                                objects=s.objects.get(f.seq), trajectory=trajectory,
                                control=control, state=s.states.get(f.capture_ns),
                                event=self._latest_event(f.t_s), collided=collided)


def poster_index(s: ScenarioSeries) -> int:
    """The frame that tells the scenario best: just before a collision, else the lowest TTC,
    else the middle one."""
    times = [f.t_s for f in s.frames]
    target: float | None = None
    if s.collision_t_s is not None:
        target = s.collision_t_s - 0.5
    elif len(s.min_ttc_s) and not np.all(np.isnan(s.min_ttc_s)):
        target = float(s.ttc_t_s[int(np.nanargmin(s.min_ttc_s))])
    if target is None:
        return len(times) // 2
    return max(0, min(len(times) - 1, bisect.bisect_left(times, target)))


def write_video(s: ScenarioSeries, path: Path, progress: Progress | None = None) -> VideoResult:
    """Annotate every frame of the scenario's video camera and encode them to `path`."""
    if not s.frames:
        raise VideoError(f"scenario {s.name}: no camera frames recorded")
    first = _decode(s.frames[0])
    scale = max(1.0, MIN_WIDTH_PX / first.shape[1])
    width = round(first.shape[1] * scale) // 2 * 2  # yuv420p needs even sizes
    height = round(first.shape[0] * scale) // 2 * 2
    lookup = _Lookup(s)
    poster_at = poster_index(s)
    poster = b""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.mp4")
    writer = imageio_ffmpeg.write_frames(
        str(partial), (width, height), fps=frame_rate(s.frames), codec="libx264", quality=None,
        pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=2, ffmpeg_log_level="error",
        output_params=["-crf", str(CRF), "-preset", "veryfast", "-movflags", "+faststart"])
    try:
        writer.send(None)
        for i, frame in enumerate(s.frames):
            image = first if i == 0 else _decode(frame)
            calib = frame.meta.calibration
            out = annotate(image, lookup.annotations(frame), calib, scale)
            if out.shape[1] != width or out.shape[0] != height:
                out = cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)
            if i == poster_at:
                poster = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            writer.send(np.ascontiguousarray(out[:, :, ::-1]))
            if progress is not None and (i % 20 == 0 or i == len(s.frames) - 1):
                progress((i + 1) / len(s.frames))
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    partial.replace(path)
    return VideoResult(path, len(s.frames), poster)


def _decode(frame: VideoFrame) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError(f"frame {frame.seq} of camera {frame.meta.camera_id} does not decode "
                         f"as {frame.meta.content_type}")
    return image
