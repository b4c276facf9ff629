"""Every registry topic round-trips through the embedded broker (a real Kafka-protocol server)."""

from __future__ import annotations

import os

import pytest

from services.messages import TOPICS, FrameMeta, topic
from services.messages.examples import JSON_EXAMPLES, frame_meta
from tests.kafka_helpers import collect, header, produce

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("spec", TOPICS, ids=lambda t: t.name)
async def test_every_topic_round_trips_a_valid_message(kafka_bootstrap: str, unique: str,
                                                       spec: object) -> None:
    name = spec.name  # type: ignore[attr-defined]
    key = f"ego-{unique}".encode()
    if name == "camera.frames":
        value = b"\xff\xd8\xff\xe0" + os.urandom(1000)
        headers = frame_meta(seq=3, run_id=unique).to_headers()
    else:
        payload = JSON_EXAMPLES[name]().model_copy(update={"run_id": unique})
        value, headers = payload.encode(), [("content-type", b"application/json")]
    await produce(kafka_bootstrap, name, [(key, value, headers)])

    got = await collect(kafka_bootstrap, name, lambda r: r.key == key, 1)

    assert len(got) == 1
    assert got[0].value == value
    if name == "camera.frames":
        assert FrameMeta.from_headers(got[0].headers) == frame_meta(seq=3, run_id=unique)
    else:
        model = topic(name).value
        assert model is not None
        assert model.decode(got[0].value) == payload


async def test_frame_headers_survive_for_a_non_python_reader(kafka_bootstrap: str,
                                                             unique: str) -> None:
    meta = frame_meta(seq=11, run_id=unique)
    await produce(kafka_bootstrap, "camera.frames", [(meta.key, b"\xff\xd8jpeg", meta.to_headers())])

    got = await collect(kafka_bootstrap, "camera.frames",
                        lambda r: header(r, "run-id") == unique, 1)

    assert len(got) == 1
    assert got[0].key == b"ego/front"
    # plain strings, readable by any client
    assert header(got[0], "content-type") == "image/jpeg"
    assert header(got[0], "seq") == "11"
    assert header(got[0], "width") == "640"
    assert header(got[0], "traceparent") == meta.traceparent
    assert FrameMeta.from_headers(got[0].headers) == meta


async def test_a_2mb_frame_passes(kafka_bootstrap: str, unique: str) -> None:
    big = os.urandom(2 * 1024 * 1024)
    meta = frame_meta(seq=1, run_id=unique)
    await produce(kafka_bootstrap, "camera.frames", [(meta.key, big, meta.to_headers())])

    got = await collect(kafka_bootstrap, "camera.frames",
                        lambda r: header(r, "run-id") == unique, 1)

    assert len(got) == 1
    assert got[0].value == big
