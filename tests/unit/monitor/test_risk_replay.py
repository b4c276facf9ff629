"""`python -m services.monitor.risk_replay RUN_DIR`: a run directory's collision-risk events
replayed under both rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.messages import PERCEPTION_OBJECTS
from services.monitor.risk_replay import main, recorded_objects
from services.recording.envelope import KafkaRecord
from services.recording.mcap_io import RecordingWriter
from tests.unit.evaluation.test_risk_replay import SUMMARY, frames


def records(scenario: int, n: int) -> list[KafkaRecord]:
    """The replay test's frames as recorded Kafka records."""
    return [KafkaRecord(topic=PERCEPTION_OBJECTS.name, key=key.encode(), value=po.encode(),
                        headers=(), timestamp_ms=k * 50)
            for k, (key, po) in enumerate(frames(scenario, n))]


def test_records_that_do_not_decode_are_skipped() -> None:
    broken = KafkaRecord(topic=PERCEPTION_OBJECTS.name, key=b"ego/front", value=b"{not json",
                         headers=(), timestamp_ms=0)
    other = KafkaRecord(topic="vehicle.state", key=b"ego", value=b"{}", headers=(), timestamp_ms=0)
    decoded = list(recorded_objects([*records(0, 3), broken, other]))
    assert [(key, po.source.seq) for key, po in decoded] == [("ego/front", k) for k in range(3)]


def test_the_command_reads_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY.as_json()), encoding="utf-8")
    with RecordingWriter(tmp_path / "recording.mcap", [PERCEPTION_OBJECTS]) as writer:
        for record in records(1, 10):
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
    (tmp_path / "summary.json").write_text('{"run_id": "x"}', encoding="utf-8")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "summary.json: not a run summary" in err
    assert "scenarios" in err
