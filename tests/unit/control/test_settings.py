"""No built-in key: the keyring comes from configuration, a run makes its own."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.control.settings import (
    DEV_KEY,
    NO_KEY_LINE,
    ControlSettings,
    keyring_json,
    load_control_settings,
)
from services.settings import SettingsError

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_control_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KEYS", "KEY_ID", "VEHICLE_KEY_IDS", "DEV_KEY", "VALID_FOR_MS",
                 "MAX_WINDOW_MS", "RATE_HZ", "REQUIRE_WALL_CLOCK"):
        monkeypatch.delenv(f"ROADSTREAM_CONTROL_{name}", raising=False)


def test_without_a_key_the_settings_load_but_signing_stops_with_one_line() -> None:
    control = ControlSettings()
    assert control.rate_hz == 20.0  # what the planning stack needs works without a key
    with pytest.raises(SettingsError) as err:
        control.signer()
    assert str(err.value) == NO_KEY_LINE
    assert "\n" not in NO_KEY_LINE
    with pytest.raises(SettingsError):
        control.keyring()


def test_the_keyring_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADSTREAM_CONTROL_KEYS", keyring_json({"2026-05": KEY_A}))
    control = load_control_settings()
    assert control.keyring() == {"2026-05": KEY_A}
    signer = control.signer()
    assert signer.key_id == "2026-05"  # the only key signs
    assert signer.keyring == {"2026-05": KEY_A}


def test_rotation_names_the_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADSTREAM_CONTROL_KEYS", keyring_json({"old": KEY_A, "new": KEY_B}))
    with pytest.raises(SettingsError, match="ROADSTREAM_CONTROL_KEY_ID must name"):
        load_control_settings()
    monkeypatch.setenv("ROADSTREAM_CONTROL_KEY_ID", "new")
    assert load_control_settings().signer().key_id == "new"
    monkeypatch.setenv("ROADSTREAM_CONTROL_KEY_ID", "newer")
    with pytest.raises(SettingsError, match="'newer' is not in the keyring"):
        load_control_settings()


@pytest.mark.parametrize(("keys", "message"), [
    ("not json", "not JSON"),
    ("[]", "non-empty JSON object"),
    ("{}", "non-empty JSON object"),
    (json.dumps({"k": base64.b64encode(b"short-secret-16b").decode()}), "16 bytes; at least 32"),
    (json.dumps({"k": "c2VjcmV0-c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}), "not standard base64"),
    (json.dumps({"k": base64.b64encode(KEY_A).decode().rstrip("=")}), "not standard base64"),
    (json.dumps({"bad\nid": base64.b64encode(KEY_A).decode()}), "must be 1-64 characters"),
    (json.dumps({"k": 12}), "must be a base64 string"),
])
def test_a_bad_keyring_is_one_line_that_never_shows_a_key(monkeypatch: pytest.MonkeyPatch,
                                                          keys: str, message: str) -> None:
    monkeypatch.setenv("ROADSTREAM_CONTROL_KEYS", keys)
    with pytest.raises(SettingsError) as err:
        load_control_settings()
    line = str(err.value)
    assert line.startswith("invalid setting ROADSTREAM_CONTROL_KEYS:")
    assert message in line
    assert "\n" not in line.replace("bad\\nid", "")
    for secret in ("c2VjcmV0", "short-secret", base64.b64encode(KEY_A).decode()[:20]):
        assert secret not in line


def test_the_development_switch_uses_the_published_key_and_warns(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ROADSTREAM_CONTROL_DEV_KEY", "1")
    control = load_control_settings()
    assert control.uses_dev_key
    with caplog.at_level(logging.WARNING, logger="services.control.settings"):
        signer = control.signer()
    assert signer.keyring == {"dev": DEV_KEY}
    assert any("development key" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("ROADSTREAM_CONTROL_KEYS", keyring_json({"k": KEY_A}))
    with pytest.raises(SettingsError, match="not both"):
        load_control_settings()


def test_ephemeral_keys_are_random_per_run_and_reach_a_child_process() -> None:
    a, b = ControlSettings.ephemeral(), ControlSettings.ephemeral(valid_for_ms=100.0)
    assert a.keyring() != b.keyring()
    assert a.signing_key_id() != b.signing_key_id()
    assert not a.uses_dev_key
    assert b.valid_for_ms == 100.0
    assert len(next(iter(a.keyring().values()))) == 32
    # a service process started with these variables signs with the same key
    child = subprocess.run(
        [sys.executable, "-c",
         "from services.control.settings import ControlSettings as C; import base64, json; "
         "c = C(); print(json.dumps({k: base64.b64encode(v).decode() for k, v in "
         "c.keyring().items()}), c.signing_key_id(), c.valid_for_ms)"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **b.environment()}, capture_output=True,
        text=True, timeout=120, check=True)
    ring, key_id, valid_for = child.stdout.rsplit(maxsplit=2)
    assert json.loads(ring) == {k: base64.b64encode(v).decode() for k, v in b.keyring().items()}
    assert key_id == b.signing_key_id()
    assert float(valid_for) == 100.0


def test_a_validity_longer_than_vehicles_accept_is_refused() -> None:
    with pytest.raises(SettingsError, match="exceeds max_window_ms"):
        load_control_settings(valid_for_ms=2000.0)
    assert load_control_settings(valid_for_ms=2000.0, max_window_ms=2500.0).valid_for_ms == 2000.0


def test_no_signing_key_is_built_into_the_services() -> None:
    sources = list((ROOT / "services").rglob("*.py"))
    assert not [p for p in sources if "development-key-change-me" in p.read_text()]


def test_the_vehicle_policy_follows_the_settings() -> None:
    policy = load_control_settings(max_window_ms=500.0, require_wall_clock=True).policy()
    assert policy.max_window_ns == 500_000_000
    assert policy.require_wall_clock
    assert ControlSettings().policy().max_window_ns == 1_000_000_000
