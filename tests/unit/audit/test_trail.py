"""Where the audit key and the anchors live, and when the writer anchors the head."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from services.audit.anchor import AnchorLog
from services.audit.settings import AuditSettings, load_audit_settings
from services.audit.store import AuditKeyError, open_store
from services.audit.trail import load_key, open_trail
from services.cli.main import main
from services.messages import SafetyEvent, Severity
from services.runtime.events import safety_event
from services.settings import SettingsError
from tests.unit.audit.conftest import KEY


def events(n: int) -> list[tuple[SafetyEvent, None]]:
    return [(safety_event(source="monitor", type_="stale_input", severity=Severity.INFO,
                          vehicle_id="ego-1", details={"i": i}), None) for i in range(n)]


def test_a_sqlite_trail_gets_its_own_key_beside_it_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # as `roadstream run` opens its trail: a URL into the run folder, nothing else
    options = AuditSettings(url=f"sqlite:///{tmp_path / 'run' / 'audit.db'}")
    with open_trail(options, create=True) as store:
        store.append_many(events(3))
    key_file = tmp_path / "run" / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) == 64
    assert int(key, 16) >= 0  # hex
    with open_trail(options, create=True) as again:  # the next segment continues the chain
        again.append_many(events(2))
    assert key_file.read_text().strip() == key
    with open_trail(options, create=False) as reader:
        result = reader.verify()
    assert result.ok, result.describe()
    assert (result.rows, result.anchored_rows) == (5, 5)
    assert (tmp_path / "run" / "audit.anchors").is_file()
    assert not list((tmp_path / "run").glob(".*tmp"))
    assert main(["audit", "verify", "--url", options.url]) == 0  # finds both by itself
    assert capsys.readouterr().out.startswith("chain OK: 5 rows (head ")


def test_no_key_is_ever_made_up_for_an_existing_trail_or_a_reader(tmp_path: Path) -> None:
    options = AuditSettings(url=f"sqlite:///{tmp_path / 'audit.db'}")
    with open_trail(options, create=True) as store:
        store.append_many(events(1))
    (tmp_path / "audit.key").unlink()
    with pytest.raises(AuditKeyError, match=r"audit\.key does not exist \(the key this "
                                            r"database was written with is kept there"):
        open_trail(options, create=True)
    with pytest.raises(AuditKeyError, match="does not exist"):
        open_trail(options, create=False)
    assert not (tmp_path / "audit.key").exists()


def test_a_postgres_trail_names_its_key_and_anchor_file() -> None:
    options = AuditSettings(url="postgresql://me@db.example:5432/audit")
    with pytest.raises(AuditKeyError, match=r"no audit key for .*there is no built-in key"):
        load_key(options, create=True)
    with pytest.raises(SettingsError, match="ROADSTREAM_AUDIT_ANCHOR_FILE"):
        open_trail(options.model_copy(update={"key_file": Path(__file__)}), create=True)


def test_key_settings_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    short = tmp_path / "short.key"
    short.write_text("too-short\n")
    with pytest.raises(AuditKeyError, match=r"short\.key: the key has 9 characters, at least 32"):
        load_key(AuditSettings(url="audit.db", key_file=short), create=True)
    monkeypatch.setenv("ROADSTREAM_AUDIT_KEY", KEY.decode())
    assert load_key(load_audit_settings(url="audit.db"), create=False) == KEY
    with pytest.raises(SettingsError, match="ROADSTREAM_AUDIT_KEY or ROADSTREAM_AUDIT_KEY_FILE"):
        load_audit_settings(key_file=short)
    monkeypatch.setenv("ROADSTREAM_AUDIT_KEY", "short")
    with pytest.raises(SettingsError, match=r"ROADSTREAM_AUDIT_KEY: .*at least 32") as failure:
        load_audit_settings()
    assert "'short'" not in str(failure.value)  # a secret is never echoed


def test_the_writer_anchors_every_n_rows_every_t_seconds_and_at_close(tmp_path: Path) -> None:
    log = AnchorLog(tmp_path / "audit.anchors", every_rows=4, every_s=3600)
    store = open_store(f"sqlite:///{tmp_path / 'audit.db'}", key=KEY, anchors=log)
    for _ in range(9):
        store.append_many(events(1))
    assert [a.rows for a in log.read(KEY, store.trail_id).anchors] == [1, 5, 9]
    store.append_many(events(1))
    assert not store.anchor()  # 1 row, not an hour: not due
    log.every_s = 0.05
    time.sleep(0.1)
    assert store.anchor()  # due by time
    assert not store.anchor()  # the head has not moved
    store.append_many(events(1))
    store.close()  # the closing anchor
    store.close()  # idempotent: no second one
    assert [a.rows for a in log.read(KEY, store.trail_id).anchors] == [1, 5, 9, 10, 11]


def test_a_line_cut_short_is_skipped_and_other_trails_are_not_ours(tmp_path: Path) -> None:
    log = AnchorLog(tmp_path / "audit.anchors")
    log.append(KEY, "trail-a", 3, "a" * 64)
    log.append(b"another-trail-key-0123456789abcdef", "trail-b", 7, "b" * 64)
    with log.path.open("a") as out:
        out.write('{"head":"cc')  # a crash mid-write
    reading = log.read(KEY, "trail-a")
    assert ([a.rows for a in reading.anchors], reading.other_trails, reading.problem) == (
        [3], 1, None)
    log.append(KEY, "trail-a", 9, "c" * 64)  # starts on a fresh line
    lines = log.path.read_text().splitlines()
    assert json.loads(lines[-1])["rows"] == 9
    reading = log.read(KEY, "trail-a")
    assert reading.problem == f"{log.path} line 3 is not an anchor"
    assert [a.rows for a in reading.anchors] == [3, 9]
