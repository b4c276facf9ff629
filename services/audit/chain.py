"""The hash chain of the audit trail: canonical JSON, row hashes and verification (pure code).

Each row's hash covers the previous row's hash and the row's own fields, so editing, deleting
or inserting a row anywhere breaks the chain from that row on:

    row_hash(n) = SHA-256( prev_hash(n) + canonical_json(row_fields(n)) )    (hex, lower case)
    prev_hash(1) = GENESIS,  prev_hash(n) = row_hash(n - 1)

`canonical_json` is JSON with sorted keys, no spaces, non-ASCII kept as UTF-8 and no NaN;
the bytes hashed are the UTF-8 encoding of the concatenated text. docs/audit.md spells out
the same definition for auditors who re-verify with their own tools.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

#: prev_hash of the first row: 64 zeros (no row before it).
GENESIS = "0" * 64

#: The row fields covered by the hash, besides the event document itself.
HASHED_FIELDS = ("seq", "event_id", "stamp_ns", "vehicle_id", "source", "type", "severity")

Problem = Literal["gap", "broken link", "hash mismatch", "malformed row"]


def canonical_json(value: Any) -> str:
    """The one JSON text of a value: sorted keys, compact separators, UTF-8, no NaN/Infinity.

    Raises ValueError for values JSON cannot carry exactly (NaN, Infinity).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


@dataclass(frozen=True)
class AuditRow:
    """One row of the audit trail, as stored (event_json is canonical JSON text)."""

    seq: int
    event_id: str
    stamp_ns: int
    vehicle_id: str
    source: str
    type: str
    severity: str
    event_json: str
    prev_hash: str
    row_hash: str

    def event(self) -> dict[str, Any]:
        """The event document (parsed event_json)."""
        doc: dict[str, Any] = json.loads(self.event_json)
        return doc

    def as_dict(self) -> dict[str, Any]:
        """Columns with the event parsed: the JSON/JSONL export shape."""
        return {"seq": self.seq, "event_id": self.event_id, "stamp_ns": self.stamp_ns,
                "vehicle_id": self.vehicle_id, "source": self.source, "type": self.type,
                "severity": self.severity, "event": self.event(), "prev_hash": self.prev_hash,
                "row_hash": self.row_hash}


def row_preimage(prev_hash: str, fields: dict[str, Any], event_json: str) -> str:
    """The text hashed for a row: prev_hash followed by the canonical JSON of its fields.

    The fields document is {"event": <event document>, "event_id", "seq", "severity",
    "source", "stamp_ns", "type", "vehicle_id"}; because event_json is itself canonical, the
    document's canonical text embeds it verbatim.
    """
    doc = {name: fields[name] for name in HASHED_FIELDS}
    doc["event"] = json.loads(event_json)
    return prev_hash + canonical_json(doc)


def row_hash(prev_hash: str, fields: dict[str, Any], event_json: str) -> str:
    """SHA-256 (hex) of `row_preimage(...)` encoded as UTF-8."""
    return hashlib.sha256(row_preimage(prev_hash, fields, event_json).encode("utf-8")).hexdigest()


def hash_of(row: AuditRow) -> str:
    """Recompute a stored row's hash from its prev_hash and fields."""
    return row_hash(row.prev_hash, _fields(row), row.event_json)


def _fields(row: AuditRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in HASHED_FIELDS}


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain verification: OK, or the first bad row and why."""

    rows: int
    head_hash: str
    bad_seq: int | None = None
    bad_event_id: str | None = None
    problem: Problem | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when every row checked out."""
        return self.problem is None

    def describe(self) -> str:
        """One line for people: `chain OK: N rows …` or the first bad row."""
        if self.ok:
            return f"chain OK: {self.rows} rows (head {self.head_hash})"
        return (f"chain BROKEN at seq {self.bad_seq} (event {self.bad_event_id}): "
                f"{self.problem}: {self.reason}; the {self.rows} rows before it are intact")

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the result."""
        return {"ok": self.ok, "rows": self.rows, "head_hash": self.head_hash,
                "bad_seq": self.bad_seq, "bad_event_id": self.bad_event_id,
                "problem": self.problem, "reason": self.reason}


def verify_rows(rows: Iterable[AuditRow]) -> VerifyResult:
    """Walk rows in seq order and return OK or the FIRST bad row.

    Checks, in order, for each row: its seq follows the previous one (gap: a row deleted or
    inserted), its prev_hash equals the previous row's hash (broken link), and its stored hash
    equals the recomputed one (hash mismatch: the row was edited). `rows` counts the intact
    rows before the first bad one. A truncated tail cannot be seen from the rows alone: compare
    the head hash with one recorded earlier (docs/audit.md).
    """
    expected_seq, expected_prev, good = 1, GENESIS, 0
    for row in rows:
        problem: Problem | None = None
        reason = ""
        if row.seq != expected_seq:
            problem = "gap"
            reason = (f"expected seq {expected_seq}, found {row.seq} "
                      f"({row.seq - expected_seq} row(s) missing)" if row.seq > expected_seq
                      else f"expected seq {expected_seq}, found {row.seq}")
        elif row.prev_hash != expected_prev:
            problem = "broken link"
            reason = (f"prev_hash {row.prev_hash[:16]}… does not match the previous row's "
                      f"hash {expected_prev[:16]}…")
        else:
            try:
                recomputed = hash_of(row)
            except ValueError as exc:  # event_json is not JSON, or holds NaN
                problem, reason = "malformed row", f"event_json: {exc}"
            else:
                if recomputed != row.row_hash:
                    problem = "hash mismatch"
                    reason = (f"stored {row.row_hash[:16]}…, recomputed {recomputed[:16]}… "
                              "(the row was changed after it was written)")
        if problem is not None:
            return VerifyResult(rows=good, head_hash=expected_prev, bad_seq=row.seq,
                                bad_event_id=row.event_id, problem=problem, reason=reason)
        expected_seq, expected_prev, good = row.seq + 1, row.row_hash, good + 1
    return VerifyResult(rows=good, head_hash=expected_prev)
