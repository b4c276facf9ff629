"""The command line: clear help, clear errors."""

from __future__ import annotations

import pytest

from services.cli.main import build_parser, main


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "broker", "serve", "docs", "topics"):
        assert f"    {command} " in out
    assert "ROADSTREAM_BOOTSTRAP_SERVERS" in out


def test_broker_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["broker", "--help"])
    out = capsys.readouterr().out
    assert "embedded broker" in out
    assert "ROADSTREAM_BOOTSTRAP_SERVERS" in out


def test_invalid_setting_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ROADSTREAM_TOPIC_PARTITIONS", "-1")
    assert main(["topics", "--create"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "ROADSTREAM_TOPIC_PARTITIONS='-1'" in err


def test_unknown_service_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "teleporter"])


def test_topics_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "--json"]) == 0
    assert '"camera.frames"' in capsys.readouterr().out
