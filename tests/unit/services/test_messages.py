"""The message contract: every topic is covered, examples validate, bad input is named."""

from __future__ import annotations

import json

import pytest

from services.messages import (
    ALL_TOPICS,
    TOPICS,
    FrameMeta,
    MessageError,
    VehicleState,
    topic,
)
from services.messages.examples import JSON_EXAMPLES, frame_meta, vehicle_state

# The topics of the architecture's table: the registry must cover every one.
ARCHITECTURE_TOPICS = {
    "camera.frames", "vehicle.state", "sim.ground_truth", "perception.objects",
    "planning.trajectory", "vehicle.control", "safety.events", "model.deployments",
    "perception.objects.shadow",
}


def test_registry_covers_every_architecture_topic_and_its_dlq() -> None:
    names = {t.name for t in ALL_TOPICS}
    assert {t.name for t in TOPICS} == ARCHITECTURE_TOPICS
    assert names == ARCHITECTURE_TOPICS | {n + ".dlq" for n in ARCHITECTURE_TOPICS}
    assert len(names) == len(ALL_TOPICS)


@pytest.mark.parametrize("spec", TOPICS, ids=lambda t: t.name)
def test_every_topic_has_key_version_and_a_value_contract(spec: object) -> None:
    t = topic(spec.name)  # type: ignore[attr-defined]
    assert t.key
    assert t.schema_version >= 1
    assert t.value is not None or t.header_model is not None
    if t.value is not None:
        example = JSON_EXAMPLES[t.name]()
        assert isinstance(example, t.value)
        assert t.value.decode(example.encode()) == example
        assert example.schema_version == t.schema_version


def test_rates_set_the_expected_period() -> None:
    assert topic("vehicle.control").period_s == pytest.approx(0.05)
    assert topic("safety.events").period_s is None


def test_unknown_topic_is_named() -> None:
    with pytest.raises(KeyError, match=r"unknown topic 'camera\.frame'"):
        topic("camera.frame")


def test_bad_json_names_the_source_and_fields() -> None:
    with pytest.raises(MessageError) as err:
        VehicleState.decode(b'{"vehicle_id": "ego", "speed_mps": "fast"}', source="vehicle.state@7")
    text = str(err.value)
    assert text.startswith("vehicle.state@7: not a valid VehicleState")
    assert "speed_mps" in text
    assert "stamp_ns" in text


def test_not_json_is_named() -> None:
    with pytest.raises(MessageError, match="Invalid JSON"):
        VehicleState.decode(b"\x00\x01")


def test_newer_producer_fields_are_ignored_by_older_consumers() -> None:
    raw = VehicleState.model_validate(JSON_EXAMPLES["vehicle.state"]().model_dump())
    data = raw.model_dump_json()[:-1] + ', "added_in_v2": 5}'
    assert VehicleState.decode(data.encode()) == raw


def test_frame_headers_round_trip_as_plain_strings() -> None:
    meta = frame_meta(seq=5)
    headers = meta.to_headers()
    assert all(isinstance(v, bytes) for _, v in headers)
    assert dict(headers)["seq"] == b"5"
    assert dict(headers)["content-type"] == b"image/jpeg"
    assert FrameMeta.from_headers(headers) == meta
    assert meta.key == b"ego/front"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: [x for x in h if x[0] != "seq"], "'seq' is missing"),
        (lambda h: [(k, b"abc" if k == "width" else v) for k, v in h], "'width'"),
        (lambda h: [(k, b"image/gif" if k == "content-type" else v) for k, v in h],
         "image/gif"),
        (lambda h: [(k, b"{not json" if k == "calibration" else v) for k, v in h],
         "'calibration' is not JSON"),
        (lambda h: [(k, b'{"fx": -1}' if k == "calibration" else v) for k, v in h],
         "'calibration'"),
        (lambda h: [(k, b"\xff\xfe" if k == "camera-id" else v) for k, v in h], "not UTF-8"),
    ],
)
def test_bad_frame_headers_are_named(change: object, message: str) -> None:
    headers = change(frame_meta().to_headers())  # type: ignore[operator]
    with pytest.raises(MessageError, match=message):
        FrameMeta.from_headers(headers)


@pytest.mark.parametrize(("preview", "field"), [
    ([0.0] * 401, "curvature_preview_1pm"),  # over MAX_PREVIEW_STATIONS
    ([0.0, float("nan")], "curvature_preview_1pm.1"),
    ([0.0, 5.0], "curvature_preview_1pm.1"),  # a 0.2 m radius is no road
])
def test_a_bad_curvature_preview_is_named(preview: list[float], field: str) -> None:
    good = vehicle_state()
    data = json.loads(good.encode())
    data["lane"]["curvature_preview_1pm"] = preview
    with pytest.raises(MessageError) as err:
        VehicleState.decode(json.dumps(data).encode(), source="vehicle.state@9")
    assert "vehicle.state@9" in str(err.value)
    assert field in str(err.value)
