"""`roadstream record` and `roadstream replay`: MCAP recordings, videos and image folders."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.broker.embedded import kafka
from services.cli.common import CommandError, emit, run_async, settings_from
from services.messages import ALL_TOPICS, CAMERA_FRAMES, TOPICS, topic
from services.recording.envelope import RecordingError
from services.recording.mcap_io import read_recording
from services.recording.recorder import Recorder
from services.recording.replayer import (
    CameraOptions,
    KafkaPublisher,
    replay_frames,
    replay_records,
    schedule,
)
from services.recording.sources import FrameSource, check_calibration, load_calibration, open_frame_source
from services.settings import Settings

MCAP_MAGIC = b"\x89MCAP0\r\n"
TOPIC_NAMES = [t.name for t in ALL_TOPICS]


def _positive(kind: type[float] | type[int], allow_zero: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{text} must be {'>= 0' if allow_zero else '> 0'}")
        return value
    return parse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `record` and `replay`."""
    p = sub.add_parser(
        "record", help="record topics into an MCAP file (opens in Foxglove)",
        description="Consume topics from the configured broker (ROADSTREAM_BOOTSTRAP_SERVERS; "
                    "a fresh embedded broker is empty) and write them to an MCAP file: JSON "
                    f"topics with their JSON Schema, {CAMERA_FRAMES.name} as "
                    "foxglove.CompressedImage, "
                    "every record with its key and headers so that replay is lossless. Stops "
                    "on Ctrl-C/SIGTERM, --duration or --max-messages; the file is written as "
                    "FILE.tmp and renamed when complete.")
    p.add_argument("--topics", nargs="+", choices=TOPIC_NAMES, default=None, metavar="TOPIC",
                   help="topics to record (default: every primary topic)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.mcap", help="output file")
    p.add_argument("--duration", type=_positive(float), default=None, metavar="S",
                   help="stop after S seconds")
    p.add_argument("--max-messages", type=_positive(int), default=None, metavar="N",
                   help="stop after N messages")
    p.add_argument("--from-beginning", action="store_true",
                   help="start at the oldest retained records instead of new ones")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE.mcap")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser(
        "replay", help="publish an MCAP recording, a video file or an image folder",
        description="SOURCE is an MCAP recording (republished to its original topics with its "
                    "keys, headers and relative timing), a video file or a folder of JPEG/PNG "
                    f"images (sorted by name), published as a camera stream on {CAMERA_FRAMES.name}. "
                    "The whole source is checked first: a bad source publishes nothing.")
    p.add_argument("source", type=Path, metavar="SOURCE", help="FILE.mcap, a video, or a folder")
    p.add_argument("--rate", type=_positive(float, allow_zero=True), default=1.0, metavar="R",
                   help="speed factor: 2 = twice as fast, 0 = as fast as possible (1)")
    p.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    p.add_argument("--topics", nargs="+", choices=TOPIC_NAMES, default=None, metavar="TOPIC",
                   help="MCAP only: replay just these topics")
    p.add_argument("--vehicle-id", default=None, help="camera stream: vehicle id (ego-0)")
    p.add_argument("--camera-id", default=None, help="camera stream: camera id (front)")
    p.add_argument("--fps", type=_positive(float), default=None,
                   help="camera stream: frames per second (video: its own rate; folder: "
                        f"the {CAMERA_FRAMES.name} rate)")
    p.add_argument("--calibration", type=Path, default=None, metavar="FILE.json",
                   help="camera stream: calibration JSON (default: fx=fy=width, cx=w/2, cy=h/2)")
    p.add_argument("--run-id", default=None, help="camera stream: run id header (random)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_replay)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def cmd_record(args: argparse.Namespace) -> int:
    """Record topics to an MCAP file."""
    settings = settings_from(args)
    specs = tuple(topic(n) for n in dict.fromkeys(args.topics)) if args.topics else TOPICS
    out: Path = args.out
    _check_output(out, overwrite=args.overwrite)

    async def go() -> dict[str, Any]:
        stop = _stop_on_signals()
        async with kafka(settings) as bootstrap:
            if settings.embedded:
                _note(f"recording from a new embedded broker at {bootstrap}: it is empty, point "
                      f"producers at it with ROADSTREAM_BOOTSTRAP_SERVERS={bootstrap}")
            recorder = Recorder(settings, bootstrap, specs, out,
                                from_beginning=args.from_beginning)

            def ready() -> None:
                _note(f"recording {len(specs)} topic(s) to {out} (Ctrl-C to stop)")

            result = await recorder.run(stop, duration_s=args.duration,
                                        max_messages=args.max_messages, on_ready=ready)
            return result.as_dict()

    try:
        result = run_async(go())
    except RecordingError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{out}: cannot write the recording ({exc.strerror or exc})") from None
    per_topic = ", ".join(f"{k} {v}" for k, v in sorted(result["per_topic"].items())) or "none"
    emit(result, as_json=args.json,
         text=f"recorded {result['messages']} messages in {result['duration_s']:.1f} s to "
              f"{result['path']} ({result['bytes']} bytes; {per_topic}); "
              f"stopped by {result['stopped_by']}")
    return 0


def _check_output(out: Path, *, overwrite: bool) -> None:
    """Fail before connecting to Kafka when the recording could not be written."""
    if out.is_dir():
        raise CommandError(f"{out}: is a folder; give a file name such as {out / 'drive.mcap'}")
    if out.exists() and not overwrite:
        raise CommandError(f"{out}: exists; choose another name or pass --overwrite")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{out.parent}: cannot create the folder ({exc.strerror})") from None


def is_recording(path: Path) -> bool:
    """True for a `.mcap` file or any file starting with the MCAP magic."""
    if path.suffix.lower() == ".mcap":
        return True
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(len(MCAP_MAGIC)) == MCAP_MAGIC


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a recording, a video or an image folder."""
    settings = settings_from(args)
    source: Path = args.source
    try:
        if is_recording(source):
            camera_flags = [f for f in ("vehicle_id", "camera_id", "fps", "calibration", "run_id")
                            if getattr(args, f) is not None]
            if camera_flags:
                raise CommandError(f"--{camera_flags[0].replace('_', '-')} is for video and "
                                   "image-folder sources, not for an MCAP recording")
            result = _replay_recording(settings, args)
        else:
            if args.topics:
                raise CommandError("--topics is for MCAP recordings only")
            result = _replay_camera(settings, args)
    except RecordingError as exc:
        raise CommandError(str(exc)) from None
    emit(result, as_json=args.json,
         text=f"replayed {result['messages']} messages from {result['source']} in "
              f"{result['duration_s']:.1f} s")
    return 0


def _replay_recording(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    records = read_recording(args.source, args.topics)  # checks the whole file first
    if not records:
        wanted = f" on {', '.join(args.topics)}" if args.topics else ""
        raise RecordingError(f"{args.source}: the recording holds no messages{wanted}")
    plan = schedule(records)

    async def go() -> int:
        stop = _stop_on_signals()
        async with kafka(settings) as bootstrap, KafkaPublisher(settings, bootstrap) as pub:
            _note(f"replaying {len(plan)} messages from {args.source} to {bootstrap}")
            return await replay_records(plan, pub, rate=args.rate, loop=args.loop, stop=stop)

    return _timed(go, args.source)


def _replay_camera(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    frames: FrameSource = open_frame_source(args.source)  # decodes everything once first
    calibration = None
    if args.calibration is not None:
        calibration = load_calibration(args.calibration)
        check_calibration(frames, calibration, args.calibration)
    options = CameraOptions(vehicle_id=args.vehicle_id or "ego-0",
                            camera_id=args.camera_id or "front", fps=args.fps,
                            calibration=calibration, run_id=args.run_id or uuid.uuid4().hex[:12])

    async def go() -> int:
        stop = _stop_on_signals()
        async with kafka(settings) as bootstrap, KafkaPublisher(settings, bootstrap) as pub:
            _note(f"publishing {frames.count} frames from {frames.name} on {CAMERA_FRAMES.name} "
                  f"to {bootstrap} (run {options.run_id})")
            return await replay_frames(frames, pub, options, rate=args.rate, loop=args.loop,
                                       stop=stop)

    result = _timed(go, args.source)
    result["run_id"] = options.run_id
    return result


def _timed(go: Callable[[], Any], source: Path) -> dict[str, Any]:
    started = time.monotonic()
    count = run_async(go())
    return {"source": str(source), "messages": count,
            "duration_s": round(time.monotonic() - started, 3)}
