"""`roadstream audit verify / query / export` as a user runs them."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from pathlib import Path

import pytest

from services.audit.settings import load_audit_settings
from services.audit.trail import open_trail
from services.cli.audit import format_time, parse_time
from services.cli.main import main
from services.messages import SafetyEvent, Severity
from services.runtime.events import safety_event
from tests.unit.audit.conftest import KEY, drop_guards, raw_sql

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z [ns]
MINUTE_NS = 60_000_000_000


@pytest.fixture(autouse=True)
def audit_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key and the anchor file come from the environment, as an operator sets them."""
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY.decode() + "\n", encoding="utf-8")
    monkeypatch.setenv("ROADSTREAM_AUDIT_KEY_FILE", str(key_file))
    monkeypatch.setenv("ROADSTREAM_AUDIT_ANCHOR_FILE", str(tmp_path / "audit.anchors"))


def seed(url: str) -> list[SafetyEvent]:
    """Four events a minute apart: two vehicles, mixed types and severities."""
    specs = [("stale_input", Severity.WARNING, "ego-1"), ("collision_risk", Severity.CRITICAL, "ego-1"),
             ("command_rejected", Severity.CRITICAL, "ego-2"), ("dead_letter", Severity.INFO, "ego-2")]
    events = [safety_event(source="monitor", type_=t, severity=s, vehicle_id=v,
                           details={"k": i}, stamp_ns=T0 + i * MINUTE_NS)
              for i, (t, s, v) in enumerate(specs)]
    with open_trail(load_audit_settings(url=url), create=True) as store:
        store.append_many([(e, None) for e in events])
    return events


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs' / 'audit.db'}"


def test_verify_ok_then_names_the_edited_row(capsys: pytest.CaptureFixture[str],
                                             store_url: str) -> None:
    events = seed(store_url)
    code, out, _ = run(capsys, "audit", "verify", "--url", store_url)
    assert code == 0
    assert out.startswith("chain OK: 4 rows (head ")

    raw_sql(store_url, *drop_guards(store_url),
            "UPDATE audit_events SET severity = 'info' WHERE seq = 2")
    code, out, _ = run(capsys, "audit", "verify", "--url", store_url)
    assert code == 1
    assert f"chain BROKEN at seq 2 (event {events[1].event_id}): hash mismatch" in out
    code, out, _ = run(capsys, "audit", "verify", "--url", store_url, "--json")
    doc = json.loads(out)
    assert code == 1
    assert (doc["ok"], doc["bad_seq"], doc["bad_event_id"], doc["problem"], doc["rows"]) == (
        False, 2, str(events[1].event_id), "hash mismatch", 1)


def test_url_comes_from_the_environment(capsys: pytest.CaptureFixture[str], sqlite_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seed(sqlite_url)
    monkeypatch.setenv("ROADSTREAM_AUDIT_URL", sqlite_url)
    code, out, _ = run(capsys, "audit", "verify")
    assert (code, out.split(" (")[0]) == (0, "chain OK: 4 rows")


def test_missing_database_is_a_clear_error_and_is_not_created(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    code, _, err = run(capsys, "audit", "verify", "--url", f"sqlite:///{missing}")
    assert code == 2
    assert "no audit database" in err
    assert not missing.exists()
    code, _, err = run(capsys, "audit", "query", "--url", "mysql://db")
    assert code == 2
    assert "postgresql://" in err


def test_query_filters_with_iso_and_ns_times(capsys: pytest.CaptureFixture[str],
                                             sqlite_url: str) -> None:
    events = seed(sqlite_url)

    def seqs(*flags: str) -> list[int]:
        code, out, _ = run(capsys, "audit", "query", "--url", sqlite_url, "--json", *flags)
        assert code == 0
        return [r["seq"] for r in json.loads(out)["rows"]]

    assert seqs() == [1, 2, 3, 4]
    assert seqs("--severity", "critical") == [2, 3]
    assert seqs("--vehicle", "ego-2", "--type", "dead_letter") == [4]
    assert seqs("--since", "2026-01-01T00:01:00Z", "--until", str(T0 + 3 * MINUTE_NS)) == [2, 3]
    assert seqs("--since", "2026-01-01T01:02:00+01:00") == [3, 4]  # offsets are honoured
    assert seqs("--limit", "1", "--newest-first") == [4]

    code, out, _ = run(capsys, "audit", "query", "--url", sqlite_url, "--type", "collision_risk")
    assert code == 0
    assert str(events[1].event_id) in out
    assert "2026-01-01T00:01:00Z" in out
    assert out.rstrip().endswith("1 event(s)")


def test_bad_time_is_a_usage_error(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "query", "--url", sqlite_url, "--since", "yesterday-ish"])
    assert exit_info.value.code == 2
    assert "neither ISO-8601" in capsys.readouterr().err


def test_time_parsing_keeps_every_nanosecond() -> None:
    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time("2026-01-01T00:00:00") == T0  # no offset: UTC
    assert parse_time("2026-01-01T02:00:00.000001+02:00") == T0 + 1000
    assert parse_time(str(T0 + 7)) == T0 + 7
    assert format_time(T0 + 1_500_000) == "2026-01-01T00:00:00.001500Z"


def test_jsonl_export_can_be_reverified_without_the_database(
        capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path) -> None:
    seed(sqlite_url)
    out_file = tmp_path / "export" / "audit.jsonl"
    code, _, err = run(capsys, "audit", "export", "--url", sqlite_url, "--format", "jsonl",
                       "--out", str(out_file))
    assert code == 0
    assert "exported 4 row(s)" in err
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    prev = "0" * 64
    for row in rows:  # the auditor's recipe of docs/audit.md
        doc = {k: row[k] for k in ("seq", "event_id", "stamp_ns", "vehicle_id", "source",
                                   "type", "severity", "event")}
        text = prev + json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["prev_hash"] == prev
        assert hmac.new(KEY, b"roadstream-audit-row-v2\n" + text.encode(),
                        hashlib.sha256).hexdigest() == row["row_hash"]
        prev = row["row_hash"]
    assert len(rows) == 4


def test_csv_export_to_stdout_with_filters(capsys: pytest.CaptureFixture[str],
                                           sqlite_url: str) -> None:
    events = seed(sqlite_url)
    code, out, _ = run(capsys, "audit", "export", "--url", sqlite_url, "--format", "csv",
                       "--severity", "critical")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["event_id"] for r in table] == [str(events[1].event_id), str(events[2].event_id)]
    assert SafetyEvent.model_validate_json(table[0]["event_json"]) == events[1]
    assert table[0]["time_utc"] == "2026-01-01T00:01:00Z"
