"""The hash chain as pure code: canonical JSON and what verify reports first."""

from __future__ import annotations

from typing import Any

import pytest

from services.audit.chain import (
    GENESIS,
    HASHED_FIELDS,
    Anchor,
    AnchorReading,
    AuditRow,
    canonical_json,
    key_check,
    row_hash,
    verify_rows,
    verify_trail,
)
from tests.unit.audit.conftest import KEY


def chain(n: int) -> list[AuditRow]:
    rows: list[AuditRow] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        fields: dict[str, Any] = {"seq": seq, "event_id": f"id-{seq}", "stamp_ns": 1000 + seq,
                                  "vehicle_id": "ego", "source": "monitor", "type": "t",
                                  "severity": "info"}
        event_json = canonical_json({"n": seq, "text": "ünïcode"})
        digest = row_hash(KEY, prev, fields, event_json)
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
    result = verify_rows(rows, KEY)
    assert result.ok
    assert (result.rows, result.head_hash) == (4, rows[-1].row_hash)


def test_first_problem_wins() -> None:
    rows = chain(6)
    rows[4] = AuditRow(**{**rows[4].__dict__, "severity": "critical"})  # hash mismatch at 5
    del rows[1]  # gap at 3, earlier
    result = verify_rows(rows, KEY)
    assert (result.bad_seq, result.bad_event_id, result.problem, result.rows) == (
        3, "id-3", "gap", 1)


def test_repeated_seq_is_a_gap_and_unreadable_json_is_malformed() -> None:
    rows = chain(3)
    assert verify_rows([rows[0], rows[0]], KEY).problem == "gap"
    bad = AuditRow(**{**rows[1].__dict__, "event_json": "{not json"})
    result = verify_rows([rows[0], bad, rows[2]], KEY)
    assert (result.bad_seq, result.problem) == (2, "malformed row")


def test_a_row_from_another_chain_is_a_broken_link() -> None:
    rows, other = chain(3), chain(3)
    alien = AuditRow(**{**other[2].__dict__, "prev_hash": "f" * 64})
    result = verify_rows([*rows[:2], alien], KEY)
    assert (result.bad_seq, result.problem) == (3, "broken link")


def anchor_at(rows: list[AuditRow], n: int, *, line: int = 1) -> Anchor:
    return Anchor(trail="t1", rows=n, head=rows[n - 1].row_hash if n else GENESIS,
                  stamp_ns=1_767_225_600_000_000_000, line=line)


def test_anchors_that_match_prove_the_rows_they_cover() -> None:
    rows = chain(6)
    result = verify_rows(rows, KEY, [anchor_at(rows, 2), anchor_at(rows, 5, line=2)])
    assert result.ok, result.describe()
    assert (result.rows, result.anchored_rows) == (6, 5)
    assert result.describe().endswith("; the newest anchor covers 5 of them")


def test_a_row_that_differs_from_its_anchor_is_a_rechained_history() -> None:
    rows = chain(6)
    # rows 4 to 6 edited and re-chained with the key: every MAC checks, the anchor at 5 not
    relinked = rows[:3]
    for r in rows[3:]:
        fields = {name: getattr(r, name) for name in HASHED_FIELDS} | {"severity": "critical"}
        digest = row_hash(KEY, relinked[-1].row_hash, fields, r.event_json)
        relinked.append(AuditRow(**{**r.__dict__, "severity": "critical",
                                    "prev_hash": relinked[-1].row_hash, "row_hash": digest}))
    assert verify_rows(relinked, KEY).ok  # the rows alone cannot tell
    result = verify_rows(relinked, KEY, [anchor_at(rows, 2), anchor_at(rows, 5, line=2)])
    assert (result.bad_seq, result.problem, result.rows) == (5, "anchor mismatch", 2)
    assert "(line 2) records head" in result.reason
    assert "the first 2 rows match an earlier anchor" in result.describe()


def test_fewer_rows_than_the_newest_anchor_is_a_truncated_tail() -> None:
    rows = chain(8)
    result = verify_rows(rows[:5], KEY, [anchor_at(rows, 3), anchor_at(rows, 8, line=2)])
    assert (result.ok, result.bad_seq, result.bad_event_id, result.problem, result.rows) == (
        False, 6, None, "truncated", 5)
    assert "records 8 rows" in result.reason
    assert "the newest 3 row(s), seq 6 to 8, are gone" in result.reason
    assert result.describe().startswith("chain BROKEN at seq 6: truncated: ")


def test_rows_without_any_anchor_are_not_verified_but_an_empty_trail_is() -> None:
    rows = chain(3)
    result = verify_rows(rows, KEY, [])
    assert (result.ok, result.problem, result.rows) == (False, "no anchor", 3)
    assert verify_rows([], KEY, []).ok
    assert verify_rows(rows, KEY).ok  # anchors None: the rows alone


def test_another_key_is_named_as_such() -> None:
    rows = chain(3)
    meta = {"key_check": key_check(KEY)}
    assert verify_trail(rows, KEY, meta, None).ok
    other = b"another-key-of-forty-characters-0123456"
    result = verify_trail(rows, other, meta, None)
    assert (result.bad_seq, result.bad_event_id, result.problem) == (1, "id-1", "wrong key")
    assert f"check {key_check(other)}" in result.reason
    # the same key but a forged check value is no way around the MACs
    assert verify_rows(rows, other).problem == "hash mismatch"


def test_a_bad_anchor_line_fails_once_the_rows_check_out() -> None:
    rows = chain(3)
    meta = {"key_check": key_check(KEY)}
    reading = AnchorReading(where="a.anchors", exists=True, anchors=[anchor_at(rows, 3)],
                            problem="a.anchors line 2: MAC mismatch")
    result = verify_trail(rows, KEY, meta, reading)
    assert (result.problem, result.bad_seq) == ("bad anchor", None)
    assert result.describe() == "bad anchor: a.anchors line 2: MAC mismatch"
    missing = verify_trail(rows, KEY, meta, AnchorReading(where="a.anchors", exists=False))
    assert missing.describe().startswith("no anchor: a.anchors does not exist; the 3 rows link")
