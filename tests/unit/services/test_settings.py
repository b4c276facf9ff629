"""Settings: environment, file, and one clear line per invalid value."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.broker.clients import consumer_kwargs, producer_kwargs, security_kwargs
from services.settings import SettingsError, load_settings


def test_defaults_use_the_embedded_broker() -> None:
    s = load_settings()
    assert s.embedded
    assert s.device == "auto"


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADSTREAM_BOOTSTRAP_SERVERS", "k1:9092, k2:9092")
    monkeypatch.setenv("ROADSTREAM_TOPIC_PARTITIONS", "6")
    monkeypatch.setenv("ROADSTREAM_DEVICE", "cuda")
    s = load_settings()
    assert s.servers == ["k1:9092", "k2:9092"]
    assert not s.embedded
    assert s.topic_partitions == 6
    assert s.device == "cuda"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("ROADSTREAM_TOPIC_PARTITIONS", "0", "ROADSTREAM_TOPIC_PARTITIONS='0': Input should be"),
        ("ROADSTREAM_DEVICE", "tpu", "ROADSTREAM_DEVICE='tpu': Input should be 'auto'"),
        ("ROADSTREAM_BOOTSTRAP_SERVERS", "kafka", "'kafka' is not host:port"),
        ("ROADSTREAM_SECURITY_PROTOCOL", "SASL_SSL", "needs sasl_username and sasl_password"),
        ("ROADSTREAM_SSL_CAFILE", "/nonexistent/ca.pem", "ROADSTREAM_SSL_CAFILE"),
        ("ROADSTREAM_TORCH_THREADS", "many", "ROADSTREAM_TORCH_THREADS='many'"),
    ],
)
def test_invalid_value_gives_one_line_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("invalid setting")
    assert expected in text


def test_yaml_file_is_read_and_environment_wins(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "roadstream.yaml"
    cfg.write_text("topic_partitions: 4\nclient_id: from-file\n")
    monkeypatch.setenv("ROADSTREAM_CLIENT_ID", "from-env")
    s = load_settings(cfg)
    assert s.topic_partitions == 4
    assert s.client_id == "from-env"


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "roadstream.yaml"
    cfg.write_text("topic_partitionz: 4\n")
    with pytest.raises(SettingsError, match=r"TOPIC_PARTITIONZ.*Extra inputs"):
        load_settings(cfg)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_sasl_scram_over_tls(tmp_path: Path) -> None:
    s = load_settings(security_protocol="SASL_SSL", sasl_username="u", sasl_password="s3cr3t-value",
                      bootstrap_servers="k:9093")
    kw = security_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_password"] == "s3cr3t-value"
    assert kw["ssl_context"] is not None
    assert "s3cr3t-value" not in repr(s)  # the password is a secret


def test_client_options_avoid_idempotence_and_auto_commit() -> None:
    s = load_settings()
    assert producer_kwargs(s)["enable_idempotence"] is False
    assert producer_kwargs(s)["max_request_size"] >= 2 * 1024 * 1024
    assert consumer_kwargs(s)["enable_auto_commit"] is False
