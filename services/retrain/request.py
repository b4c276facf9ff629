"""Retraining requests: a `detection_drift` episode of a recording, as a small JSON document.

Where requests come from. The monitor publishes `detection_drift` (onset) and
`detection_drift_cleared` (recovery) on `safety.events`, each with the capture stamps of its
tested window (`window_start_ns`, `window_end_ns`); `roadstream run` records every topic,
`safety.events` included, into `runs/<id>/recording.mcap`. The monitor itself knows no
recording, so it does not write requests: `roadstream retrain --recording FILE` derives them
from the recording's own events (`requests_from_recording`, pure apart from reading the file)
and writes each to `<recording's folder>/retrain-requests/<request_id>.json`, where
`roadstream retrain --request ID` finds it again.

The time range of a request is the drift *episode*: from the onset's `window_start_ns` to the
matching recovery's `window_start_ns` (the first window that looked like the reference again
starts after the drifted frames), or, when drift never cleared, the last camera frame of the
recording. Onset and recovery are matched per model version, as the monitor tests them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.messages import CAMERA_FRAMES, SAFETY_EVENTS, FrameMeta, SafetyEvent
from services.monitor.findings import DETECTION_DRIFT, DETECTION_DRIFT_CLEARED
from services.recording.envelope import KafkaRecord, RecordingError
from services.recording.mcap_io import read_recording

REQUEST_FORMAT: Final = "roadstream.retrain-request"
REQUESTS_DIR: Final = "retrain-requests"  # beside the recording


class RetrainRequest(BaseModel):
    """A request to retrain on the frames of one drift episode of one recording."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["roadstream.retrain-request"] = REQUEST_FORMAT
    request_id: str = Field(pattern=r"^[A-Za-z0-9_\-.]+$",
                            description="drift-<first 12 hex digits of the onset event id>")
    reason: Literal["detection_drift"] = "detection_drift"
    event_id: str = Field(description="The onset `detection_drift` event's id.")
    cleared_event_id: str | None = Field(default=None,
                                         description="The matching `detection_drift_cleared`.")
    event_stamp_ns: int = Field(ge=0, description="When the onset event was raised [ns].")
    run_id: str = ""
    vehicle_id: str = ""
    model_version: str = Field(description="The model version that drifted.")
    start_ns: int = Field(ge=0, description="Capture stamp of the first drifted frame [ns].")
    end_ns: int = Field(ge=0, description="Capture stamp of the last drifted frame [ns].")
    recording: str = Field(min_length=1, description="The MCAP file holding the frames.")
    drift: dict[str, Any] = Field(default_factory=dict,
                                  description="The onset event's test details (p-values, …).")
    created_utc: str = ""


def request_id_of(event: SafetyEvent) -> str:
    """The request id of a drift onset event: stable, so deriving twice gives the same id."""
    return f"drift-{event.event_id.hex[:12]}"


def request_from_events(onset: SafetyEvent, cleared: SafetyEvent | None, *, recording: Path,
                        last_frame_ns: int) -> RetrainRequest:
    """The request for one drift episode (see the module doc for the time range).

    ``last_frame_ns``: the recording's last camera frame [ns], the end when drift never
    cleared. ValueError naming the event when it lacks the window stamps (an older monitor).
    """
    if onset.type != DETECTION_DRIFT:
        raise ValueError(f"event {onset.event_id} is {onset.type!r}, not {DETECTION_DRIFT!r}")
    start = onset.details.get("window_start_ns")
    if not isinstance(start, int):
        raise ValueError(f"drift event {onset.event_id} carries no window_start_ns (raised by a "
                         "monitor older than the retraining requests): its frames are unknown")
    end = last_frame_ns
    if cleared is not None and isinstance(cleared.details.get("window_start_ns"), int):
        end = int(cleared.details["window_start_ns"])
    end = max(end, int(onset.details.get("window_end_ns", start)))
    return RetrainRequest(
        request_id=request_id_of(onset), event_id=str(onset.event_id),
        cleared_event_id=str(cleared.event_id) if cleared is not None else None,
        event_stamp_ns=onset.stamp_ns, run_id=onset.run_id, vehicle_id=onset.vehicle_id,
        model_version=str(onset.details.get("model_version", "")), start_ns=start, end_ns=end,
        recording=str(recording), drift=dict(onset.details),
        created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))


def drift_episodes(events: list[SafetyEvent]) -> list[tuple[SafetyEvent, SafetyEvent | None]]:
    """(onset, recovery or None) per drift episode, in the order of the events given."""
    open_: dict[str, SafetyEvent] = {}
    episodes: list[tuple[SafetyEvent, SafetyEvent | None]] = []
    for event in events:
        version = str(event.details.get("model_version", ""))
        if event.type == DETECTION_DRIFT and version not in open_:
            open_[version] = event
        elif event.type == DETECTION_DRIFT_CLEARED and version in open_:
            episodes.append((open_.pop(version), event))
    episodes += [(onset, None) for onset in open_.values()]
    return sorted(episodes, key=lambda e: e[0].stamp_ns)


def requests_from_records(records: list[KafkaRecord], recording: Path) -> list[RetrainRequest]:
    """Requests for every drift episode among a recording's records (`safety.events`)."""
    events = [SafetyEvent.model_validate_json(r.value) for r in records
              if r.topic == SAFETY_EVENTS.name]
    drift = [e for e in events if e.type in (DETECTION_DRIFT, DETECTION_DRIFT_CLEARED)]
    stamps = [FrameMeta.from_headers(_headers(r)).capture_ns for r in records
              if r.topic == CAMERA_FRAMES.name]
    last = max(stamps, default=0)
    return [request_from_events(onset, cleared, recording=recording, last_frame_ns=last)
            for onset, cleared in drift_episodes(drift)]


def requests_from_recording(recording: Path) -> list[RetrainRequest]:
    """Requests for every drift episode of an MCAP recording; RecordingError for a bad file."""
    records = read_recording(recording, topics=[SAFETY_EVENTS.name, CAMERA_FRAMES.name])
    return requests_from_records(records, recording.resolve())


def _headers(record: KafkaRecord) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in record.headers if v is not None]


def requests_dir(recording: Path) -> Path:
    """Where the requests of a recording live: `retrain-requests/` beside it."""
    return recording.resolve().parent / REQUESTS_DIR


def save_request(request: RetrainRequest) -> Path:
    """Write the request to its recording's `retrain-requests/<request_id>.json`; the path."""
    folder = requests_dir(Path(request.recording))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{request.request_id}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(request.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_request(path: Path) -> RetrainRequest:
    """Read a request file; ValueError naming the file and the problem."""
    try:
        return RetrainRequest.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"retraining request {path}: {first}") from None


def find_request(ref: str, runs_dir: Path) -> Path:
    """A request by file path, or by id among `<runs_dir>/*/retrain-requests/<id>.json`."""
    path = Path(ref)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ValueError(f"retraining request {path} does not exist")
        return path
    found = sorted(runs_dir.glob(f"*/{REQUESTS_DIR}/{ref}.json"))
    if not found:
        raise ValueError(f"no retraining request {ref!r} under {runs_dir}/*/{REQUESTS_DIR}/ "
                         "(derive one with `roadstream retrain --recording FILE --request-only`)")
    if len(found) > 1:
        raise ValueError(f"retraining request {ref!r} is in several runs: "
                         f"{', '.join(map(str, found))}; give the file")
    return found[0]


__all__ = [
    "REQUESTS_DIR",
    "RecordingError",
    "RetrainRequest",
    "drift_episodes",
    "find_request",
    "load_request",
    "request_from_events",
    "request_id_of",
    "requests_from_recording",
    "requests_from_records",
    "save_request",
]
