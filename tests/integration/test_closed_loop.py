"""Closed loop through Kafka in lockstep: deterministic control stream, one trace per frame."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from services.mainjob import RunOptions, run_main_job
from services.settings import Settings
from tests.kafka_helpers import collect, header

pytestmark = pytest.mark.integration
# A car stands in the ego lane 35 m (25 m) ahead: without braking the ego hits it within the
# scenario, so "no collision" shows that the loop saw it and stopped.
SCENARIOS = [str(Path(__file__).parents[1] / "fixtures" / "scenarios" / f"short_stop_{kph}kph.yaml")
             for kph in (30, 20)]


def command_fields(value: bytes) -> tuple[Any, ...]:
    c = json.loads(value)
    # stamps follow the wall clock at the run's start; everything the vehicle acts on is compared
    return (c["seq"], c["mode"], c["source"]["seq"], round(c["steering_tire_angle_rad"], 9),
            round(c["accel_mps2"], 9), round(c["target_speed_mps"], 9))


async def control_stream(bootstrap: str, run_id: str, expected: int) -> list[tuple[Any, ...]]:
    records = await collect(bootstrap, "vehicle.control",
                            lambda r: json.loads(r.value)["run_id"].startswith(run_id), expected,
                            timeout_s=20)
    return sorted((json.loads(r.value)["run_id"], *command_fields(r.value)) for r in records)


async def test_lockstep_closed_loop_is_deterministic_and_traced(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    summaries, streams = [], []
    for attempt in ("a", "b"):
        run_id = f"{unique}{attempt}"
        summary = await run_main_job(Settings(), kafka_bootstrap, RunOptions(
            scenarios=tuple(SCENARIOS), clock="lockstep", speed=1.0, run_id=run_id,
            out_dir=tmp_path / run_id, record=False))
        stream = await control_stream(kafka_bootstrap, run_id, 2 * 140)  # one per front frame
        summaries.append(summary)
        streams.append([s[1:] for s in stream])
    a, b = summaries
    for row in a.scenarios + b.scenarios:
        assert row.control_timeouts == 0
        assert not row.collision, row
    # 7 s at 20 Hz: the whole scenario; the second one also has its wide camera at 10 Hz
    assert [r.frames for r in a.scenarios] == [140, 140 + 70]
    assert len(streams[0]) == 2 * 140
    diverge = next((i for i, (x, y) in enumerate(zip(*streams, strict=True)) if x != y), None)
    assert diverge is None, (diverge, streams[0][max(0, diverge - 1): diverge + 2],
                             streams[1][max(0, diverge - 1): diverge + 2])
    digest = [hashlib.sha256(repr(s).encode()).hexdigest() for s in streams]
    assert digest[0] == digest[1]
    assert [r.min_distance_m for r in a.scenarios] == [r.min_distance_m for r in b.scenarios]
    # the control's trace id is its source frame's
    run_id = f"{unique}a"
    controls = await collect(kafka_bootstrap, "vehicle.control",
                             lambda r: json.loads(r.value)["run_id"] == f"{run_id}-00", 3)
    frames = await collect(kafka_bootstrap, "camera.frames",
                           lambda r: header(r, "run-id") == f"{run_id}-00", 200)
    trace_of_frame = {int(header(f, "seq") or -1): (header(f, "traceparent") or "").split("-")[1]
                      for f in frames}
    for c in controls:
        seq = json.loads(c.value)["source"]["seq"]
        assert (header(c, "traceparent") or "").split("-")[1] == trace_of_frame[seq], (
            seq, c.headers, [f.headers for f in frames if header(f, "seq") == str(seq)])
