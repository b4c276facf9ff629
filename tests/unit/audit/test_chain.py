"""The hash chain as pure code: canonical JSON and what verify reports first."""

from __future__ import annotations

from typing import Any

import pytest

from services.audit.chain import GENESIS, AuditRow, canonical_json, row_hash, verify_rows


def chain(n: int) -> list[AuditRow]:
    rows: list[AuditRow] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        fields: dict[str, Any] = {"seq": seq, "event_id": f"id-{seq}", "stamp_ns": 1000 + seq,
                                  "vehicle_id": "ego", "source": "monitor", "type": "t",
                                  "severity": "info"}
        event_json = canonical_json({"n": seq, "text": "ünïcode"})
        digest = row_hash(prev, fields, event_json)
        rows.append(AuditRow(**fields, event_json=event_json, prev_hash=prev, row_hash=digest))
        prev = digest
    return rows


def test_canonical_json_is_sorted_compact_utf8_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1.5, None], "c": "é"}}) == \
        '{"a":{"c":"é","d":[1.5,null]},"b":1}'
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"x": float("inf")})


def test_intact_chain_reports_its_head() -> None:
    rows = chain(4)
    result = verify_rows(rows)
    assert result.ok
    assert (result.rows, result.head_hash) == (4, rows[-1].row_hash)


def test_first_problem_wins() -> None:
    rows = chain(6)
    rows[4] = AuditRow(**{**rows[4].__dict__, "severity": "critical"})  # hash mismatch at 5
    del rows[1]  # gap at 3, earlier
    result = verify_rows(rows)
    assert (result.bad_seq, result.bad_event_id, result.problem, result.rows) == (
        3, "id-3", "gap", 1)


def test_repeated_seq_is_a_gap_and_unreadable_json_is_malformed() -> None:
    rows = chain(3)
    assert verify_rows([rows[0], rows[0]]).problem == "gap"
    bad = AuditRow(**{**rows[1].__dict__, "event_json": "{not json"})
    result = verify_rows([rows[0], bad, rows[2]])
    assert (result.bad_seq, result.problem) == (2, "malformed row")


def test_a_row_from_another_chain_is_a_broken_link() -> None:
    rows, other = chain(3), chain(3)
    alien = AuditRow(**{**other[2].__dict__, "prev_hash": "f" * 64})
    result = verify_rows([*rows[:2], alien])
    assert (result.bad_seq, result.problem) == (3, "broken link")
