"""Tampering with a keyed, anchored trail as someone with direct database access would, and
the line `roadstream audit verify` prints for each case (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from services.audit.chain import HASHED_FIELDS, AuditRow, row_hash, row_preimage
from services.audit.service import AuditStartupError, build
from services.audit.settings import AuditSettings
from services.audit.store import AuditKeyError, open_store
from services.audit.trail import open_trail
from services.cli.main import main
from services.messages import SafetyEvent, Severity
from services.runtime.events import safety_event
from services.settings import Settings
from tests.unit.audit.conftest import KEY, drop_guards, raw_sql, sql_text

T0 = 1_780_000_000_000_000_000  # [ns] a fixed moment in 2026
ROWS = 120  # written ten at a time: anchored at rows 10, 20, …, 120


def write_trail(options: AuditSettings) -> list[SafetyEvent]:
    events = [safety_event(source="monitor", type_="stale_input", severity=Severity.WARNING,
                           vehicle_id="ego-1", details={"i": i}, stamp_ns=T0 + i * 1_000_000)
              for i in range(ROWS)]
    with open_trail(options, create=True) as store:
        for start in range(0, ROWS, 10):
            store.append_many([(e, None) for e in events[start:start + 10]])
    return events


def verify(capsys: pytest.CaptureFixture[str], options: AuditSettings,
           key_file: Path | None = None) -> tuple[int, str]:
    assert options.key_file is not None
    assert options.anchor_file is not None
    code = main(["audit", "verify", "--url", options.url,
                 "--key-file", str(key_file or options.key_file),
                 "--anchor-file", str(options.anchor_file)])
    out, err = capsys.readouterr()
    assert not err
    assert out.count("\n") == 1  # one line
    return code, out.strip()


def rows_of(options: AuditSettings) -> list[AuditRow]:
    with open_store(options.url, create=False) as reader:
        return reader.query()


def rechain(options: AuditSettings, first: int, edited: int,
            digest: Callable[[str, dict[str, object], str], str]) -> None:
    """Set severity 'info' in `edited` rows from seq `first` on, then recompute every later
    row's prev_hash and row_hash with `digest(prev_hash, fields, event_json)`."""
    rows = rows_of(options)
    prev = rows[first - 2].row_hash
    statements = list(drop_guards(options.url))
    for row in rows[first - 1:]:
        fields = {name: getattr(row, name) for name in HASHED_FIELDS}
        event_json = row.event_json
        if row.seq < first + edited:
            fields["severity"] = "info"
            event_json = event_json.replace('"severity":"warning"', '"severity":"info"')
        new = digest(prev, fields, event_json)
        statements.append(f"UPDATE audit_events SET severity = {sql_text(str(fields['severity']))},"
                          f" event_json = {sql_text(event_json)}, prev_hash = {sql_text(prev)},"
                          f" row_hash = {sql_text(new)} WHERE seq = {row.seq}")
        prev = new
    raw_sql(options.url, *statements)


def test_an_intact_trail_verifies_with_its_anchors(capsys: pytest.CaptureFixture[str],
                                                  trail_options: AuditSettings) -> None:
    write_trail(trail_options)
    code, line = verify(capsys, trail_options)
    assert code == 0
    assert re.fullmatch(r"chain OK: 120 rows \(head [0-9a-f]{64}\); "
                        r"the newest anchor covers 120 of them", line), line
    assert trail_options.anchor_file is not None
    assert len(trail_options.anchor_file.read_text().splitlines()) == ROWS // 10


def test_one_rewritten_row_is_named(capsys: pytest.CaptureFixture[str],
                                    trail_options: AuditSettings) -> None:
    events = write_trail(trail_options)
    raw_sql(trail_options.url, *drop_guards(trail_options.url),
            "UPDATE audit_events SET severity = 'info' WHERE seq = 37")
    code, line = verify(capsys, trail_options)
    assert code == 1
    assert line.startswith(f"chain BROKEN at seq 37 (event {events[36].event_id}): "
                           "hash mismatch: stored "), line
    assert line.endswith("; the 36 rows before it are intact")


def test_nine_rows_rechained_with_sha256_are_caught_at_the_first(
        capsys: pytest.CaptureFixture[str], trail_options: AuditSettings) -> None:
    # what passed the unkeyed chain: edit 9 rows, recompute every later hash
    events = write_trail(trail_options)
    rechain(trail_options, 40, 9, lambda prev, fields, event_json: hashlib.sha256(
        row_preimage(prev, fields, event_json).encode()).hexdigest())
    code, line = verify(capsys, trail_options)
    assert code == 1
    assert line.startswith(f"chain BROKEN at seq 40 (event {events[39].event_id}): "
                           "hash mismatch: "), line
    assert "recomputed without the audit key" in line


def test_rows_rechained_with_the_key_disagree_with_the_anchors(
        capsys: pytest.CaptureFixture[str], trail_options: AuditSettings) -> None:
    # an insider holding the key, but not the anchor file: every MAC checks out
    events = write_trail(trail_options)
    rechain(trail_options, 41, 9, lambda prev, fields, event_json: row_hash(
        KEY, prev, fields, event_json))
    code, line = verify(capsys, trail_options)
    assert code == 1
    assert line.startswith(f"chain BROKEN at seq 50 (event {events[49].event_id}): anchor "
                           "mismatch: the anchor of "), line
    assert "(line 5) records head" in line
    assert line.endswith("; the first 40 rows match an earlier anchor")


def test_the_newest_50_rows_deleted_is_a_truncated_tail(capsys: pytest.CaptureFixture[str],
                                                        trail_options: AuditSettings) -> None:
    write_trail(trail_options)
    raw_sql(trail_options.url, *drop_guards(trail_options.url),
            f"DELETE FROM audit_events WHERE seq > {ROWS - 50}")
    code, line = verify(capsys, trail_options)
    assert code == 1
    assert line.startswith("chain BROKEN at seq 71: truncated: the anchor of "), line
    assert "(line 12) records 120 rows" in line
    assert "the database holds 70: the newest 50 row(s), seq 71 to 120, are gone" in line


def test_a_forged_anchor_cannot_hide_the_cut(capsys: pytest.CaptureFixture[str],
                                             trail_options: AuditSettings) -> None:
    write_trail(trail_options)
    raw_sql(trail_options.url, *drop_guards(trail_options.url),
            f"DELETE FROM audit_events WHERE seq > {ROWS - 50}")
    anchor_file = trail_options.anchor_file
    assert anchor_file is not None
    lines = anchor_file.read_text().splitlines()
    # the newest anchors rewritten to the new, shorter head, without the key
    head = rows_of(trail_options)[-1].row_hash
    forged = [re.sub(r'"head":"[0-9a-f]+"', f'"head":"{head}"',
                     line.replace(f'"rows":{10 * i}', '"rows":70'))
              for i, line in enumerate(lines, start=1)]
    anchor_file.write_text("\n".join(lines[:7] + forged[7:]) + "\n")
    code, line = verify(capsys, trail_options)
    assert code == 1
    assert line == (f"bad anchor: {anchor_file} line 8: MAC mismatch (forged, or written "
                    "with another key)")


def test_a_deleted_anchor_file_leaves_the_tail_unproven(capsys: pytest.CaptureFixture[str],
                                                        trail_options: AuditSettings) -> None:
    write_trail(trail_options)
    assert trail_options.anchor_file is not None
    trail_options.anchor_file.unlink()
    code, line = verify(capsys, trail_options)
    assert code == 1
    assert line.startswith(f"no anchor: {trail_options.anchor_file} does not exist; the 120 "
                           "rows link up"), line


def test_another_key_is_a_wrong_key_not_a_tampered_row(capsys: pytest.CaptureFixture[str],
                                                      trail_options: AuditSettings,
                                                      tmp_path: Path) -> None:
    events = write_trail(trail_options)
    other = tmp_path / "other.key"
    other.write_text("another-audit-key-0123456789abcdef-0123456789\n")
    code, line = verify(capsys, trail_options, key_file=other)
    assert code == 1
    assert re.fullmatch(
        rf"chain BROKEN at seq 1 \(event {events[0].event_id}\): wrong key: the configured "
        r"audit key \(check [0-9a-f]{16}\) is not the one this trail was written with "
        r"\(check [0-9a-f]{16}\); no row can be checked with it", line), line
    # and the writer refuses to append with it
    with pytest.raises(AuditKeyError, match="is not the one this trail was written with"):
        build(Settings(), "127.0.0.1:9", options=trail_options.model_copy(
            update={"key_file": other}))


def test_an_unkeyed_v1_trail_is_named_not_a_crash(capsys: pytest.CaptureFixture[str],
                                                  trail_options: AuditSettings) -> None:
    write_trail(trail_options)
    raw_sql(trail_options.url, "DROP TABLE audit_meta")  # what a schema v1 database looks like
    code, line = verify(capsys, trail_options)
    assert code == 1
    assert line.startswith("unkeyed chain (schema v1): "), line
    assert "holds 120 rows chained with plain SHA-256" in line
    with pytest.raises(AuditStartupError, match=r"^unkeyed chain \(schema v1\): .*new database"):
        build(Settings(), "127.0.0.1:9", options=trail_options)
