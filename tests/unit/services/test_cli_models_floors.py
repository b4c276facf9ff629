"""`roadstream models promote` against the promotion floors, and `shadow-report` from the
audit trail: refused below a floor (naming it and the value), overridden with a recorded
reason, allowed above."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from perception.detections import Detections
from perception.shadow import ShadowComparator
from services.audit.settings import load_audit_settings
from services.audit.trail import open_trail
from services.cli.main import main
from services.messages import Severity
from services.runtime.events import MODEL_SHADOW_REPORT, safety_event
from tests.unit.audit.conftest import KEY
from tests.unit.perception.test_registry import checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("weights")
    return [checkpoint(root / f"{v}.pt", v, seed=i) for i, v in enumerate(("f1", "f2"))]


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No broker; an audit trail's key and anchors as an operator sets them; default floors."""
    monkeypatch.delenv("ROADSTREAM_BOOTSTRAP_SERVERS", raising=False)
    for name in ("MIN_MAP50", "MIN_SHADOW_AGREEMENT", "MIN_SHADOW_FRAMES"):
        monkeypatch.delenv(f"ROADSTREAM_PROMOTION_{name}", raising=False)
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY.decode() + "\n", encoding="utf-8")
    monkeypatch.setenv("ROADSTREAM_AUDIT_KEY_FILE", str(key_file))
    monkeypatch.setenv("ROADSTREAM_AUDIT_ANCHOR_FILE", str(tmp_path / "audit.anchors"))


def run(capsys: pytest.CaptureFixture[str], registry: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["models", "--registry", str(registry), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def window(frames: int, matched_per_frame: int, production_per_frame: int = 2) -> dict[str, Any]:
    """A comparator's window: ``frames`` frames of ``production_per_frame`` cars, of which the
    shadow finds ``matched_per_frame`` (and nothing else)."""
    cars = [(10.0 + 40 * i, 10.0, 40.0 + 40 * i, 40.0, 1, 0.9)
            for i in range(production_per_frame)]
    production = Detections.from_arrays([c[:4] for c in cars], [1] * len(cars), [0.9] * len(cars))
    found = cars[:matched_per_frame]
    shadow = Detections.from_arrays([c[:4] for c in found], [1] * len(found), [0.9] * len(found))
    comparator = ShadowComparator()
    for _ in range(frames):
        comparator.add(production, shadow, production_ms=50.0, shadow_ms=80.0)
    return comparator.summary()


def audit(url: str, reports: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]) -> None:
    """Audit `model_shadow_report` events as perception raises them: (summary, production,
    shadow) each."""
    events = [safety_event(source="perception", type_=MODEL_SHADOW_REPORT, severity=Severity.INFO,
                           details={"production": prod, "shadow": shadow, "window_s": 30.0,
                                    **summary})
              for summary, prod, shadow in reports]
    with open_trail(load_audit_settings(url=url), create=True) as store:
        store.append_many([(e, None) for e in events])


def names(entry: dict[str, Any]) -> dict[str, Any]:
    return {"version": entry["version"], "sha256": entry["sha256"]}


def show(capsys: pytest.CaptureFixture[str], reg: Path, version: str) -> dict[str, Any]:
    code, out, _ = run(capsys, reg, "show", version, "--json")
    assert code == 0
    entry: dict[str, Any] = json.loads(out)
    return entry


def test_promotion_refused_below_the_map_floor(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, weights: list[Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    reg = tmp_path / "reg"
    run(capsys, reg, "register", str(weights[0]))
    monkeypatch.setenv("ROADSTREAM_PROMOTION_MIN_MAP50", "0.7")  # the checkpoint has 0.61
    code, _, err = run(capsys, reg, "promote", "f1", "--no-publish")
    assert code == 1
    assert err.count("\n") == 1
    assert "f1 is below the promotion floors: offline mAP@0.5 floor 0.7: f1 has 0.6100" in err
    assert "nothing changed" in err
    assert show(capsys, reg, "f1")["stage"] == "candidate"
    monkeypatch.setenv("ROADSTREAM_PROMOTION_MIN_MAP50", "0.6")
    code, out, _ = run(capsys, reg, "promote", "f1", "--no-publish")
    assert (code, out.strip()) == (0, "f1 is production; not published (--no-publish)")
    monkeypatch.setenv("ROADSTREAM_PROMOTION_MIN_MAP50", "high")
    code, _, err = run(capsys, reg, "promote", "f1", "--no-publish")
    assert code == 1
    assert "ROADSTREAM_PROMOTION_MIN_MAP50" in err


def test_shadow_floor_from_the_audited_reports_and_an_override(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, weights: list[Path]) -> None:
    reg = tmp_path / "reg"
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    run(capsys, reg, "register", str(weights[0]), "--stage", "production")
    run(capsys, reg, "register", str(weights[1]))
    f1, f2 = show(capsys, reg, "f1"), show(capsys, reg, "f2")

    code, _, err = run(capsys, reg, "promote", "f2", "--no-publish")
    assert code == 1
    assert "shadow agreement floor 0.9: f2 has no shadow report" in err

    code, _, err = run(capsys, reg, "shadow-report", "f2", "--url", url)
    assert code == 1  # no trail yet
    # two windows against the production (1 of 2 cars found on each of 120 frames), and one
    # against another production, which must not count
    other = {"version": "old", "sha256": "0" * 64}
    audit(url, [(window(60, 1), names(f1), names(f2)), (window(60, 1), names(f1), names(f2)),
                (window(500, 2), other, names(f2))])
    code, out, _ = run(capsys, reg, "shadow-report", "f2", "--url", url, "--json")
    assert code == 0
    recorded = json.loads(out)
    assert (recorded["frames"], recorded["reports"]) == (120, 2)
    assert (recorded["production_boxes"], recorded["shadow_boxes"], recorded["matched"]) == (
        240, 120, 120)
    assert (recorded["recall"], recorded["precision"], recorded["agreement"]) == (
        0.5, 1.0, round(2 * 120 / 360, 4))
    assert recorded["latency"] == {"production": {"mean_ms": 50.0}, "shadow": {"mean_ms": 80.0}}
    assert show(capsys, reg, "f2")["shadow"]["agreement"] == 0.6667

    code, _, err = run(capsys, reg, "promote", "f2", "--no-publish")
    assert code == 1
    assert "shadow agreement floor 0.9: f2 agrees 0.6667 with f1" in err
    assert show(capsys, reg, "f1")["stage"] == "production"

    code, out, _ = run(capsys, reg, "promote", "f2", "--no-publish", "--json",
                       "--override", "night fleet trial, signed off by the safety lead")
    assert code == 0
    result = json.loads(out)
    assert result["production"]["version"] == "f2"
    assert "registry history only" in result["override_event"]
    last = show(capsys, reg, "f2")["history"][-1]
    assert last["stage"] == "production"
    assert last["reason"] == "promoted with override: night fleet trial, signed off by the " \
                             "safety lead"
    assert last["override"]["below_floors"] == ["shadow agreement floor 0.9: f2 agrees 0.6667 "
                                                "with f1"]


def test_promotion_above_the_floors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                    weights: list[Path],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    reg = tmp_path / "reg"
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    run(capsys, reg, "register", str(weights[0]), "--stage", "production")
    run(capsys, reg, "register", str(weights[1]))
    f1, f2 = show(capsys, reg, "f1"), show(capsys, reg, "f2")
    audit(url, [(window(60, 2), names(f1), names(f2))])
    assert run(capsys, reg, "shadow-report", "f2", "--url", url)[0] == 0
    code, _, err = run(capsys, reg, "promote", "f2", "--no-publish")
    assert code == 1  # a perfect agreement, but over too few frames
    assert "covers 60 frames, fewer than the 100 required" in err
    monkeypatch.setenv("ROADSTREAM_PROMOTION_MIN_SHADOW_FRAMES", "50")
    code, out, _ = run(capsys, reg, "promote", "f2", "--no-publish")
    assert (code, out.strip()) == (0, "f2 is production; f1 archived; not published "
                                      "(--no-publish)")
    # a rollback is never held to the floors
    assert run(capsys, reg, "rollback", "--no-publish")[0] == 0
