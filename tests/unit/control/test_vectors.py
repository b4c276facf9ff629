"""docs/control-test-vectors.json: current, met by the Python verifier and by the Node client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from services.control import vectors
from services.control.client import CommandRejected, CommandVerifier, VehicleBounds, VerifierPolicy
from services.control.signing import Reason
from services.messages import ControlClock
from tests.node_client import CLIENT, VECTORS, node

FILE: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
CASES = FILE["cases"]


def test_committed_vectors_are_what_the_generator_writes() -> None:
    assert VECTORS.read_text(encoding="utf-8") == vectors.render(), (
        "docs/control-test-vectors.json is stale: python -m services.control.vectors")


def test_every_rejection_reason_and_acceptance_has_a_case() -> None:
    assert {c["expect"] for c in CASES} == {"accept", *(str(r) for r in Reason)}
    assert len({c["name"] for c in CASES}) == len(CASES)


def _verdict(case: dict[str, Any]) -> str:
    keyring = {k: base64.b64decode(v, validate=True) for k, v in FILE["keyring"].items()}
    policy = VerifierPolicy(bounds=VehicleBounds(**FILE["bounds"]),
                            max_window_ns=round(FILE["max_window_ms"] * 1e6),
                            require_wall_clock=case["require_wall_clock"])
    last = case["last_accepted"]
    verifier = CommandVerifier(keyring, FILE["vehicle_id"], policy=policy,
                               last_accepted=None if last is None else (last["epoch"],
                                                                        last["counter"]))
    headers = [(k, v.encode()) for k, v in case["headers"]]
    try:
        verifier.check(headers, case["value"].encode(), FILE["now_ns"],
                       ControlClock(FILE["now_clock"]))
    except CommandRejected as exc:
        return str(exc.reason)
    return "accept"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_python_verifier_meets_the_vector(case: dict[str, Any]) -> None:
    assert _verdict(case) == case["expect"], case["about"]


def test_vector_macs_follow_the_documented_layout() -> None:
    """Recomputed from the layout the docs state, with nothing but hmac."""
    checked = 0
    for case in CASES:
        if case["expected_mac"] is None:
            continue
        sig = dict(case["headers"])
        key = base64.b64decode(FILE["keyring"][sig["sig-key-id"]])
        message = (b"roadstream-control-v2\n" + sig["sig-key-id"].encode() + b"\n"
                   + sig["sig-epoch"].encode() + b"\n" + sig["sig-counter"].encode() + b"\n"
                   + case["value"].encode())
        recomputed = hmac.new(key, message, hashlib.sha256).hexdigest()
        assert case["expected_mac"] == recomputed, case["name"]
        assert (sig["sig-mac"] == recomputed) == (case["expect"] != "bad_mac"), case["name"]
        checked += 1
    assert checked >= 20


def test_bounds_are_the_gate_limits_with_the_documented_margin() -> None:
    assert FILE["bounds"] == {"max_speed_mps": 50.0, "max_accel_mps2": 3.75,
                              "max_decel_mps2": 7.5, "max_jerk_mps3": 12.5,
                              "max_steer_rad": 0.75, "max_steer_rate_radps": 1.0}
    assert FILE["max_window_ms"] == 1000.0


def _node_vectors(path: Path) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run([node(), str(CLIENT), "--vectors", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert not done.stderr.strip(), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_node_client_meets_every_vector() -> None:
    rc, lines = _node_vectors(VECTORS)
    results = [line for line in lines if "vector" in line]
    assert [r["vector"] for r in results] == [c["name"] for c in CASES]
    assert [r for r in results if not r["ok"]] == []
    assert [r["got"] for r in results] == [c["expect"] for c in CASES]
    assert lines[-1] == {"vectors": len(CASES), "mismatches": 0}
    assert rc == 0


def test_node_client_fails_on_a_vector_it_does_not_meet(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(FILE))
    broken["cases"][0]["expect"] = "bad_mac"  # a genuine command, said to be rejected
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    rc, lines = _node_vectors(path)
    assert rc == 1
    assert lines[0] == {"vector": "genuine", "ok": False, "expect": "bad_mac", "got": "accept"}
    assert lines[-1] == {"vectors": len(CASES), "mismatches": 1}
