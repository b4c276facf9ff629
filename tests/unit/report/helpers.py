"""A small synthetic run (two scenarios) as recorded Kafka records, and an HTML asset checker."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evaluation.scorecard import RunSummary
from services.messages import (
    CAMERA_FRAMES,
    PERCEPTION_OBJECTS,
    PLANNING_TRAJECTORY,
    SAFETY_EVENTS,
    TOPICS,
    VEHICLE_CONTROL,
    VEHICLE_STATE,
    Calibration,
    DetectedObject,
    EventRefs,
    FrameMeta,
    FrameRef,
    ObjectClass,
    PerceptionObjects,
    PlanningTrajectory,
    Pose2D,
    SafetyEvent,
    Severity,
    TrajectoryPoint,
    Vec2,
    Vec3,
    VehicleControl,
    VehicleState,
)
from services.recording.envelope import KafkaRecord
from services.recording.mcap_io import RecordingWriter
from tests.unit.evaluation.helpers import run_summary, score

RUN_ID = "20260101-000000-abcdef"
T0_NS = 1_700_000_000_000_000_000
DT_NS = 50_000_000  # 20 Hz simulation ticks
WALL0_MS = 1_700_000_000_000
WALL_STEP_MS = 100  # lockstep: the wall clock runs at half the simulation rate
CALIB = Calibration(fx=100.0, fy=100.0, cx=80.0, cy=45.0, width=160, height=90, mount_x_m=1.5,
                    mount_z_m=1.4, pitch_rad=0.0)


def jpeg(seq: int, width: int = 160, height: int = 90) -> bytes:
    """A recognisable frame: grey with a bright square that moves with seq."""
    img = np.full((height, width, 3), 90, np.uint8)
    x = (seq * 5) % (width - 20)
    img[30:50, x:x + 20] = (30, 200, 240)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _rec(topic: str, key: str, value: bytes, wall_ms: int,
         headers: list[tuple[str, bytes]] | None = None) -> KafkaRecord:
    return KafkaRecord(topic=topic, key=key.encode(), value=value,
                       headers=tuple(headers or [("content-type", b"application/json")]),
                       timestamp_ms=wall_ms)


def scenario_records(index: int, frames: int, wall0_ms: int, *,
                     cameras: tuple[str, ...] = ("front",)) -> list[KafkaRecord]:
    """Every topic of one scenario run `RUN_ID-<index>`; see the constants for the clocks.

    Frame seq k: stamp T0 + k·DT, frame wall time wall0 + k·WALL_STEP, its control 60 + k ms
    later. Even frames hold a closing car (TTC 5 − 0.1·k s), a car parked beside the path that
    the ego passes (TTC 0.5 s, 3 m off its axis) and a pedestrian with no TTC; odd frames hold
    nothing.
    """
    rid = f"{RUN_ID}-{index:02d}"
    out: list[KafkaRecord] = []
    for k in range(frames):
        stamp = T0_NS + k * DT_NS
        wall = wall0_ms + k * WALL_STEP_MS
        for cam in cameras if k % 2 == 0 else cameras[:1]:
            meta = FrameMeta(vehicle_id="ego", camera_id=cam, seq=k, capture_ns=stamp,
                             width=CALIB.width, height=CALIB.height, calibration=CALIB, run_id=rid)
            out.append(_rec(CAMERA_FRAMES.name, f"ego/{cam}", jpeg(k), wall, meta.to_headers()))
        state = VehicleState(vehicle_id="ego", stamp_ns=stamp, pose=Pose2D(x_m=k, y_m=0, yaw_rad=0),
                             speed_mps=10.0 + 0.1 * k, accel_mps2=0.5, steer_rad=0.01 * k,
                             run_id=rid)
        out.append(_rec(VEHICLE_STATE.name, "ego", state.encode(), wall))
        objects = []
        if k % 2 == 0:
            objects = [
                DetectedObject(track_id=3, object_class=ObjectClass.CAR, score=0.9,
                               box=(60.0, 30.0, 100.0, 60.0), position_m=Vec3(x=20.0, y=0.0),
                               velocity_mps=Vec2(x=-4.0, y=0.0), ttc_s=5.0 - 0.1 * k),
                DetectedObject(track_id=5, object_class=ObjectClass.CAR, score=0.9,
                               box=(0.0, 30.0, 8.0, 60.0), position_m=Vec3(x=5.0, y=3.0),
                               velocity_mps=Vec2(x=-10.0, y=0.0), ttc_s=0.5),
                DetectedObject(track_id=4, object_class=ObjectClass.PEDESTRIAN, score=0.8,
                               box=(10.0, 30.0, 20.0, 60.0), position_m=Vec3(x=15.0, y=5.0),
                               ttc_s=None)]
        for cam in cameras if k % 2 == 0 else cameras[:1]:
            po = PerceptionObjects(vehicle_id="ego", camera_id=cam,
                                   source=FrameRef(seq=k, stamp_ns=stamp), stamp_ns=stamp,
                                   model_version="test", objects=objects, run_id=rid)
            out.append(_rec(PERCEPTION_OBJECTS.name, f"ego/{cam}", po.encode(), wall + 30))
        traj = PlanningTrajectory(
            vehicle_id="ego", stamp_ns=stamp, behaviour="cruise", run_id=rid,
            points=[TrajectoryPoint(t_s=0.5 * i, x_m=5.0 * i, y_m=0.0, v_mps=10.0)
                    for i in range(8)])
        out.append(_rec(PLANNING_TRAJECTORY.name, "ego", traj.encode(), wall + 50))
        ctl = VehicleControl(vehicle_id="ego", stamp_ns=stamp, seq=k + 1, valid_until_ns=stamp,
                             steering_tire_angle_rad=0.02, target_speed_mps=12.0,
                             accel_mps2=-1.0 if k > frames // 2 else 1.0,
                             source=FrameRef(seq=k, stamp_ns=stamp), run_id=rid)
        out.append(_rec(VEHICLE_CONTROL.name, "ego", ctl.encode(), wall + 60 + k))
    return out


def event(run_id: str, wall_ms: int, *, type_: str = "collision_risk",
          severity: Severity = Severity.CRITICAL, frame_seq: int | None = None,
          details: dict[str, Any] | None = None) -> KafkaRecord:
    """A safety event record."""
    ev = SafetyEvent(event_id=uuid.uuid4(), stamp_ns=wall_ms * 1_000_000, vehicle_id="ego",
                     source="monitor", type=type_, severity=severity,
                     details=details or {"class": "car", "track_id": 3, "ttc_s": 1.2},
                     references=EventRefs(frame_seq=frame_seq), run_id=run_id)
    return _rec(SAFETY_EVENTS.name, "ego", ev.encode(), wall_ms)


def synthetic_run() -> tuple[RunSummary, list[KafkaRecord]]:
    """Summary and records: scenario A (20 frames, two cameras, collision at 0.8 s), B (6)."""
    wall_b = WALL0_MS + 10_000
    records = scenario_records(0, 20, WALL0_MS, cameras=("front", "side"))
    records += scenario_records(1, 6, wall_b)
    records += [
        event(f"{RUN_ID}-00", WALL0_MS + 2_000, frame_seq=10),
        # no run id: a monitor event on a topic, placed by wall time (between frames 4 and 5)
        event("", WALL0_MS + 450, type_="frequency_low", severity=Severity.WARNING,
              details={"topic": "camera.frames", "rate_hz": 9.5}),
        event("", wall_b + 200, type_="topic_alive", severity=Severity.INFO,
              details={"topic": "vehicle.state"}),
    ]
    records.append(records[5])  # a duplicate delivery (at-least-once): counted once
    summary = run_summary(RUN_ID, [score("alpha", collision=True, collision_t_s=0.8, frames=20),
                                   score("beta", frames=6)], created_ns=T0_NS)
    return summary, records


def make_run_dir(root: Path) -> Path:
    """The synthetic run as a run directory under `root`: summary.json and recording.mcap."""
    summary, records = synthetic_run()
    run_dir = root / summary.run_id
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps(summary.as_json()), encoding="utf-8")
    with RecordingWriter(run_dir / "recording.mcap", TOPICS) as writer:
        for rec in records:
            writer.write(rec)
    return run_dir


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("src", "href", "xlink:href", "poster") and value is not None:
                self.refs.append((tag, name, value))

    handle_startendtag = handle_starttag


def asset_problems(html_path: Path) -> tuple[list[str], _Refs]:
    """What a browser could not load from the page: each src / href / poster must be a data URI
    that base64-decodes, a fragment naming an id on the page, or a relative file that exists."""
    parser = _Refs()
    parser.feed(html_path.read_text(encoding="utf-8"))
    problems = []
    for tag, attr, value in parser.refs:
        where = f"<{tag} {attr}={value[:60]!r}>"
        if value.startswith("data:"):
            head, _, payload = value.partition(",")
            if not head.endswith(";base64") or not payload:
                problems.append(f"{where}: not a base64 data URI")
                continue
            try:
                base64.b64decode(payload, validate=True)
            except binascii.Error:
                problems.append(f"{where}: data does not base64-decode")
        elif value.startswith("#"):
            if value[1:] not in parser.ids:
                problems.append(f"{where}: no element with that id")
        elif "://" in value or value.startswith("//"):
            problems.append(f"{where}: external reference")
        elif not (html_path.parent / value).is_file() or (html_path.parent / value).stat().st_size == 0:
            problems.append(f"{where}: missing or empty file")
    return problems, parser


def mp4_top_boxes(data: bytes) -> list[str]:
    """Types of the top-level boxes of an MP4 file, in file order (ftyp, moov, mdat, ...)."""
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8].decode("latin-1")
        if size == 1:  # 64-bit size follows the type
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8:
            break
        boxes.append(kind)
        pos += size
    return boxes


def browser_playable_h264(data: bytes) -> list[str]:
    """Why an MP4 would not play in a browser as H.264 with fast start; [] when it would."""
    problems = []
    boxes = mp4_top_boxes(data)
    if not boxes or boxes[0] != "ftyp":
        problems.append(f"does not start with an ftyp box: {boxes[:3]}")
    if b"avc1" not in data:
        problems.append("no avc1 (H.264) sample entry")
    if "moov" not in boxes or "mdat" not in boxes or boxes.index("moov") > boxes.index("mdat"):
        problems.append(f"moov is not before mdat (no +faststart): {boxes}")
    return problems
