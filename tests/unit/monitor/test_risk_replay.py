"""Replaying a recorded run's collision-risk events under both rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.messages import PERCEPTION_OBJECTS, PerceptionObjects
from services.messages.examples import perception_objects
from services.monitor.risk_replay import main, markdown, replay
from services.recording.envelope import KafkaRecord
from services.recording.mcap_io import RecordingWriter

RUN = "20261205-000000-abcdef"


def frames(scenario: int, n: int) -> list[KafkaRecord]:
    """A car ahead in the lane closing (TTC 2.0 s down to 1.1 s) and a car parked 3 m to the
    side that the ego passes (TTC 0.6 s), in every frame."""
    base = perception_objects()
    car = base.objects[0]
    out = []
    for k in range(n):
        assert car.position_m is not None
        assert car.velocity_mps is not None
        ahead = car.model_copy(update={"track_id": 1, "ttc_s": 2.0 - 0.1 * k})
        parked = car.model_copy(update={
            "track_id": 2, "ttc_s": 0.6, "position_m": car.position_m.model_copy(update={"y": 3.0})})
        po: PerceptionObjects = base.model_copy(update={
            "objects": [ahead, parked], "run_id": f"{RUN}-{scenario:02d}",
            "stamp_ns": base.stamp_ns + k * 50_000_000,
            "source": base.source.model_copy(update={"seq": k})})
        out.append(KafkaRecord(topic=PERCEPTION_OBJECTS.name, key=b"ego/front", value=po.encode(),
                               headers=(), timestamp_ms=k * 50))
    return out


SUMMARY = {"run_id": RUN, "scenarios": [{"name": "alpha"}, {"name": "beta"}]}


def test_each_rule_counts_its_own_events_per_scenario() -> None:
    broken = KafkaRecord(topic=PERCEPTION_OBJECTS.name, key=b"ego/front", value=b"{not json",
                         headers=(), timestamp_ms=0)
    records = [*frames(0, 10), broken]
    rows = replay(SUMMARY, records)
    assert rows[0] == {"name": "alpha",
                       "every_closing_track": {"warning": 1, "critical": 2},
                       "collision_course": {"warning": 1, "critical": 1}}
    assert rows[1]["collision_course"] == {"warning": 0, "critical": 0}  # nothing recorded
    table = markdown(rows)
    assert "| alpha | 1 / 2 | 1 / 1 |" in table
    assert table.endswith("| **all** | 1 / 2 | 1 / 1 |")


def test_the_command_reads_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY), encoding="utf-8")
    with RecordingWriter(tmp_path / "recording.mcap", [PERCEPTION_OBJECTS]) as writer:
        for record in frames(1, 10):
            writer.write(record)
    assert main([str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["name"] == "beta"
    assert rows[1]["collision_course"] == {"warning": 1, "critical": 1}
    (tmp_path / "recording.mcap").write_bytes(b"not an mcap file")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "recording.mcap" in err
    assert "not JSON" not in err
    (tmp_path / "recording.mcap").unlink()
    assert main([str(tmp_path)]) == 2
    assert "recording.mcap: no such file" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("{broken", encoding="utf-8")
    (tmp_path / "recording.mcap").write_bytes(b"")
    assert main([str(tmp_path)]) == 2
    assert "summary.json: not JSON" in capsys.readouterr().err
