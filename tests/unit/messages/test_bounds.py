"""Values the contract's types allow are still bounded: int64, maximum string lengths, finite
floats, a sane calibration. A value out of bounds is refused at decode, naming the field."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.messages import (
    Calibration,
    FrameMeta,
    GroundTruth,
    MessageError,
    PerceptionObjects,
    SafetyEvent,
    VehicleControl,
    VehicleState,
)
from services.messages.base import ID_MAX_CHARS, INT64_MAX, TEXT_MAX_CHARS
from services.messages.examples import (
    frame_meta,
    ground_truth,
    perception_objects,
    safety_event,
    vehicle_control,
    vehicle_state,
)


def _with(example: bytes, path: str, value: Any) -> bytes:
    """The example's JSON with the value at a dotted path replaced (JSON floats allowed: NaN)."""
    data = json.loads(example)
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return json.dumps(data).encode()  # json writes NaN / Infinity for non-finite floats


@pytest.mark.parametrize(("model", "example", "path", "value", "message"), [
    (VehicleControl, vehicle_control, "seq", 10**30, "seq: Input should be less than or equal "
                                                     "to 9223372036854775807"),
    (VehicleControl, vehicle_control, "stamp_ns", -1, "stamp_ns: Input should be greater than"),
    (VehicleState, vehicle_state, "vehicle_id", "v" * 100_000,
     f"vehicle_id: String should have at most {ID_MAX_CHARS} characters"),
    (VehicleState, vehicle_state, "speed_mps", float("nan"), "speed_mps: Input should be a finite"),
    (VehicleState, vehicle_state, "pose.x_m", float("inf"), "pose.x_m: Input should be a finite"),
    (PerceptionObjects, perception_objects, "objects.0.box.2", float("-inf"),
     "objects.0.box.2: Input should be a finite"),
    (PerceptionObjects, perception_objects, "latencies_ms.infer", float("nan"),
     "latencies_ms.infer: Input should be a finite"),
    (PerceptionObjects, perception_objects, "run_id", "r" * (ID_MAX_CHARS + 1), "run_id: String"),
    (GroundTruth, ground_truth, "objects.0.track_id", 2**63, "objects.0.track_id: Input should be"),
    (SafetyEvent, safety_event, "details.error", "e" * (TEXT_MAX_CHARS + 1), "details.error"),
    (SafetyEvent, safety_event, "details.ratio", float("nan"), "details.ratio"),
    (SafetyEvent, safety_event, "references.offset", 10**19, "references.offset: Input should"),
])
def test_a_value_out_of_bounds_is_refused_naming_its_field(
        model: Any, example: Any, path: str, value: Any, message: str) -> None:
    raw = _with(example().encode(), path, value)
    with pytest.raises(MessageError) as err:
        model.decode(raw, source=f"{model.__name__}@1")
    assert str(err.value).startswith(f"{model.__name__}@1: not a valid {model.__name__}")
    assert message in str(err.value)


def test_a_details_key_longer_than_an_id_is_refused() -> None:
    raw = _with(safety_event().encode(), "details." + "k" * (ID_MAX_CHARS + 1), 1)
    with pytest.raises(MessageError, match="details"):
        SafetyEvent.decode(raw)


def _frame_headers(name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in frame_meta().to_headers()]


def _calibration(**change: Any) -> bytes:
    data = json.loads(frame_meta().calibration.model_dump_json())
    data.update(change)
    return json.dumps(data).encode()


@pytest.mark.parametrize(("header", "value", "message"), [
    ("seq", str(10**30).encode(), "'seq': Input should be less than or equal to"),
    ("capture-ns", b"-5", "'capture-ns': Input should be greater than or equal to 0"),
    ("vehicle-id", b"v" * 100_000, f"'vehicle-id': String should have at most {ID_MAX_CHARS}"),
    ("run-id", b"r" * (ID_MAX_CHARS + 1), "'run-id': String should have at most"),
    ("width", b"70000", "'width': Input should be less than or equal to 65535"),
    ("calibration", _calibration(fx=float("inf")), "'calibration' (fx): Input should be a finite"),
    ("calibration", _calibration(fy=0.0), "'calibration' (fy): Input should be greater than 0"),
    ("calibration", _calibration(pitch_rad=float("nan")), "'calibration' (pitch_rad): Input "
                                                          "should be a finite"),
    ("calibration", _calibration(pitch_rad=2.0), "'calibration' (pitch_rad): Input should be "
                                                 "less than or equal to 1.57"),
    ("calibration", _calibration(yaw_rad=-4.0), "'calibration' (yaw_rad): Input should be "
                                                "greater than or equal to -3.14"),
    ("calibration", _calibration(roll_rad=7.0), "'calibration' (roll_rad)"),
])
def test_a_frame_header_out_of_bounds_is_refused_naming_the_header(
        header: str, value: bytes, message: str) -> None:
    with pytest.raises(MessageError) as err:
        FrameMeta.from_headers(_frame_headers(header, value))
    assert f"camera frame header {message}" in str(err.value)


def test_building_a_message_out_of_bounds_fails_too() -> None:
    with pytest.raises(ValueError, match="fx"):
        Calibration(fx=math.inf, fy=600.0, cx=320.0, cy=180.0, width=640, height=360)
    with pytest.raises(ValueError, match="seq"):
        frame_meta(seq=-1)


def test_the_bounds_themselves_are_allowed() -> None:
    data = json.loads(vehicle_control().encode())
    data.update(seq=INT64_MAX, stamp_ns=INT64_MAX, vehicle_id="v" * ID_MAX_CHARS)
    command = VehicleControl.decode(json.dumps(data).encode())
    assert command.seq == INT64_MAX
    assert VehicleControl.decode(command.encode()) == command
    edge = Calibration(fx=1e-6, fy=1e-6, cx=0.0, cy=0.0, width=65535, height=1,
                       pitch_rad=math.pi / 2, yaw_rad=-math.pi, roll_rad=math.pi)
    assert Calibration.model_validate_json(edge.model_dump_json()) == edge


@settings(deadline=None)  # correctness, not speed: the machine may be loaded
@given(seq=st.integers(min_value=0, max_value=INT64_MAX),
       steer=st.floats(min_value=-1.0, max_value=1.0),
       vehicle_id=st.text(min_size=1, max_size=ID_MAX_CHARS))
def test_any_command_within_bounds_round_trips(seq: int, steer: float, vehicle_id: str) -> None:
    command = vehicle_control().model_copy(update={"seq": seq, "steering_tire_angle_rad": steer,
                                                   "vehicle_id": vehicle_id})
    assert VehicleControl.decode(command.encode()) == command


@settings(deadline=None)  # correctness, not speed: the machine may be loaded
@given(seq=st.one_of(st.integers(min_value=INT64_MAX + 1), st.integers(max_value=-1)))
def test_any_sequence_number_outside_int64_or_negative_is_refused(seq: int) -> None:
    with pytest.raises(MessageError, match="seq: Input should be"):
        VehicleControl.decode(_with(vehicle_control().encode(), "seq", seq))


@settings(deadline=None)  # correctness, not speed: the machine may be loaded
@given(value=st.sampled_from([math.nan, math.inf, -math.inf]),
       path=st.sampled_from(["accel_mps2", "target_speed_mps", "steering_tire_angle_rad",
                             "jerk_mps3", "steering_tire_rotation_rate_radps"]))
def test_any_non_finite_command_value_is_refused(value: float, path: str) -> None:
    with pytest.raises(MessageError, match=f"{path}: Input should be a finite number"):
        VehicleControl.decode(_with(vehicle_control().encode(), path, value))
