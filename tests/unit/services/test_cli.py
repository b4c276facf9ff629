"""The command line: clear help, clear errors."""

from __future__ import annotations

from pathlib import Path

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


def test_run_takes_a_checkpoint_or_a_package_folder_as_its_weights(tmp_path: Path) -> None:
    from services.cli.common import CommandError
    from services.cli.run import check_weights

    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"x")
    package = tmp_path / "package"
    package.mkdir()
    (package / "manifest.json").write_text("{}")
    check_weights(checkpoint)
    check_weights(package)
    for missing in (tmp_path / "none.pt", tmp_path):  # no file; a folder that is no package
        with pytest.raises(CommandError, match=f"no detector weights at {missing}"):
            check_weights(missing)
