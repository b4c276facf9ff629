"""Every message of a real closed-loop run matches the published docs/schemas, headers included.

A short lockstep run on the embedded broker, with one poison frame (valid headers, bytes that
are no image) mixed into its camera stream so that the dead-letter path speaks too. Then every
record of every registry topic that belongs to the run is read back with plain aiokafka and
checked with `jsonschema` (Draft 2020-12) against the committed schema files: the value of
JSON topics, the headers of all. Camera frame values are images: their headers are checked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.docs import headers_schema_name, value_schema_name
from services.mainjob import RunOptions, run_main_job
from services.messages import ALL_TOPICS, CAMERA_FRAMES, TopicSpec
from services.messages.examples import frame_meta
from services.settings import Settings
from tests.kafka_helpers import MAX_BYTES, header, produce
from tests.schema_check import header_errors, published, value_errors

pytestmark = pytest.mark.integration
SCENARIO = str(Path(__file__).parents[1] / "fixtures" / "scenarios" / "short_stop_20kph.yaml")
DURATION_S = 2.0  # enough for every topic to carry messages; the front camera runs at 20 Hz


async def read_to_end(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record of a topic, from the first offset to the end as it is now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_bytes=MAX_BYTES * 2,
                                max_partition_fetch_bytes=MAX_BYTES)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata that names the partitions
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for batch in (await consumer.getmany(*partitions, timeout_ms=500)).values():
                records.extend(r for r in batch if r.offset < end[TopicPartition(r.topic,
                                                                                 r.partition)])
        return records
    finally:
        await consumer.stop()


async def poison_once_running(bootstrap: str, run_id: str, timeout_s: float = 120.0) -> bool:
    """Once the run's first frame is on camera.frames (its services are up), send one frame
    whose headers are valid but whose bytes are no image. False if the run never started."""
    consumer = AIOKafkaConsumer(CAMERA_FRAMES.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False,
                                fetch_max_bytes=MAX_BYTES * 2, max_partition_fetch_bytes=MAX_BYTES)
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            if any((header(r, "run-id") or "").startswith(run_id)
                   for records in batches.values() for r in records):
                break
        else:
            return False
    finally:
        await consumer.stop()
    # its own camera, so that it cannot displace a real frame in perception's batches
    meta = frame_meta(seq=0, run_id=f"{run_id}-poison").model_copy(
        update={"camera_id": "poison", "capture_ns": time.time_ns()})
    await produce(bootstrap, CAMERA_FRAMES.name,
                  [(meta.key, b"\xff\xd8\xff this is no JPEG", meta.to_headers())])
    return True


def run_of(spec: TopicSpec, record: ConsumerRecord) -> str:
    """The run id a record carries (its header for raw values, its JSON otherwise)."""
    if spec.value is None:
        return header(record, "run-id") or ""
    try:
        return str(json.loads(record.value).get("run_id", ""))
    except (ValueError, AttributeError):
        return ""  # not JSON: cannot be attributed to a run, so not this test's


def errors_of(spec: TopicSpec, record: ConsumerRecord) -> list[str]:
    """Schema errors of one record: headers always, the value when it is JSON."""
    errors = header_errors(published(headers_schema_name(spec)), record.headers or (),
                           declared_only=not spec.dead_letter)
    value_name = value_schema_name(spec)
    if value_name is not None:
        errors += value_errors(published(value_name), record.value)
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    return [f"{where}: {e}" for e in errors]


async def test_every_message_of_a_closed_loop_run_is_valid(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    run_id = f"conformance-{unique}"
    summary, poisoned = await asyncio.gather(
        run_main_job(Settings(), kafka_bootstrap, RunOptions(
            scenarios=(SCENARIO,), clock="lockstep", run_id=run_id, out_dir=tmp_path / run_id,
            record=False, duration_s=DURATION_S)),
        poison_once_running(kafka_bootstrap, run_id))
    assert poisoned
    checked: Counter[str] = Counter()
    errors: list[str] = []
    for spec in ALL_TOPICS:
        for record in await read_to_end(kafka_bootstrap, spec.name):
            if run_of(spec, record).startswith(run_id):
                checked[spec.name] += 1
                errors += errors_of(spec, record)
    print("messages validated per topic:", dict(sorted(checked.items())))
    assert errors == [], f"{len(errors)} schema errors, first ones:\n" + "\n".join(errors[:20])
    frames = sum(row.frames for row in summary.scenarios)
    assert frames > 0
    assert checked["camera.frames"] == frames + 1  # and the poison frame
    assert checked["camera.frames.dlq"] == 1
    for name in ("vehicle.state", "sim.ground_truth", "perception.objects",
                 "planning.trajectory", "vehicle.control", "safety.events"):
        assert checked[name] > 0, (name, dict(checked))
