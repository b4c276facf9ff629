"""`roadstream models`: the registry from the command line, on real files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from services.cli.main import main
from tests.unit.perception.test_registry import checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("weights")
    (root / "MODEL_CARD.md").write_text("# Tiny detector\nTrained on nothing.\n")
    return [checkpoint(root / f"{v}.pt", v, seed=i) for i, v in enumerate(("a1", "a2"))]


def run(capsys: pytest.CaptureFixture[str], registry: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["models", "--registry", str(registry), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_register_promote_list_show_rollback(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, weights: list[Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the floors have tests of their own (test_cli_models_floors.py): here, a2 replaces a1
    # without having run in shadow
    monkeypatch.setenv("ROADSTREAM_PROMOTION_MIN_SHADOW_AGREEMENT", "none")
    reg = tmp_path / "reg"
    code, out, _ = run(capsys, reg, "list")
    assert (code, out.strip()) == (0, "the registry is empty")
    for path in weights:
        code, out, _ = run(capsys, reg, "register", str(path))
        assert code == 0
        assert out.startswith(f"registered {path.stem} as candidate (sha256 ")
    code, out, _ = run(capsys, reg, "promote", "a1", "--no-publish")
    assert (code, out.strip()) == (0, "a1 is production; not published (--no-publish)")
    code, out, _ = run(capsys, reg, "promote", "a2", "--no-publish", "--json")
    result = json.loads(out)
    assert (result["production"]["version"], result["archived"]) == ("a2", "a1")

    code, out, _ = run(capsys, reg, "list", "--json")
    listed = {e["version"]: e["stage"] for e in json.loads(out)["models"]}
    assert listed == {"a1": "archived", "a2": "production"}
    code, out, _ = run(capsys, reg, "list")
    lines = out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["a1", "archived"], ["a2", "production"]]
    assert "mAP50 0.610" in lines[0]

    code, out, _ = run(capsys, reg, "show", "a2", "--card")
    assert code == 0
    assert "sha256" in out
    assert "promoted" in out
    assert "# Tiny detector" in out
    code, out, _ = run(capsys, reg, "show", "a2", "--json")
    shown = json.loads(out)
    assert shown["path"] == str(weights[1].resolve())
    assert [h["stage"] for h in shown["history"]] == ["candidate", "production"]

    code, out, _ = run(capsys, reg, "rollback", "--no-publish")
    assert (code, out.strip()) == (0, "rolled back a2: a1 is production again; not "
                                      "published (--no-publish)")


def test_errors_are_one_line_naming_the_input(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, weights: list[Path]) -> None:
    reg = tmp_path / "reg"
    code, _, err = run(capsys, reg, "show", "nope")
    assert code == 1
    assert err.strip() == (f"roadstream models: error: version 'nope' is not in registry {reg} "
                           "(registered: none)")
    code, _, err = run(capsys, reg, "register", str(tmp_path / "gone.pt"))
    assert code == 1
    assert err.count("\n") == 1
    assert "gone.pt does not exist" in err
    code, _, err = run(capsys, reg, "rollback", "--no-publish")
    assert code == 1
    assert "has no production model to roll back" in err
    run(capsys, reg, "register", str(weights[0]))
    code, out, _ = run(capsys, reg, "show", "a1", "--card", "--json")
    assert code == 0
    assert json.loads(out)["model_card_text"].startswith("# Tiny detector")
    code, _, err = run(capsys, reg, "register", str(weights[0]))
    assert code == 1
    assert "version a1 is already registered" in err


def test_the_registry_folder_comes_from_the_settings(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path, weights: list[Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADSTREAM_MODEL_REGISTRY_DIR", str(tmp_path / "from-env"))
    assert main(["models", "register", str(weights[0]), "--stage", "production"]) == 0
    capsys.readouterr()
    assert (tmp_path / "from-env" / "index.json").is_file()
    assert main(["models", "list", "--json"]) == 0
    assert [e["stage"] for e in json.loads(capsys.readouterr().out)["models"]] == ["production"]


def test_help_says_what_each_action_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["models", "--help"])
    out = capsys.readouterr().out
    for action in ("list", "show", "register", "promote", "rollback", "shadow",
                   "shadow-report"):
        assert re.search(rf"^    {action}\s", out, re.MULTILINE), action
