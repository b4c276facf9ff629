"""The keyed chain of the audit trail: canonical JSON, row MACs, anchors and verification.

Pure code. Each row's MAC covers the previous row's MAC and the row's own fields, under a
secret audit key kept outside the database (services/audit/trail.py says where):

    row_hash(n) = HMAC-SHA256(key, ROW_DOMAIN + prev_hash(n) + canonical_json(fields(n)))
    prev_hash(1) = GENESIS,  prev_hash(n) = row_hash(n - 1)                (hex, lower case)

Editing, deleting or inserting a row breaks the chain from that row on, and without the key
nobody can compute the MACs of a rewritten history. What a MAC chain cannot show is its own
end: cutting off the newest rows leaves a valid shorter chain, and whoever holds the key can
re-chain everything. So the writer also *anchors* the head — (rows, row_hash of the last
row), MAC'd with the key — to an append-only file outside the database (anchor.py), and
verify checks every anchor against the rows: a head that differs is a rewritten history, an
anchor beyond the last row is a cut-off tail.

`canonical_json` is JSON with sorted keys, no spaces, non-ASCII kept as UTF-8 and no NaN; the
bytes MAC'd are the domain followed by the UTF-8 text. docs/audit.md spells out the same
definitions for auditors who re-verify with their own tools.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

#: The schema version of a keyed trail; version 1 chained rows with unkeyed SHA-256.
SCHEMA_VERSION = 2
#: prev_hash of the first row: 64 zeros (no row before it).
GENESIS = "0" * 64
#: Domain prefixes, so that a row MAC, an anchor MAC and the key check never collide.
ROW_DOMAIN = b"roadstream-audit-row-v2\n"
ANCHOR_DOMAIN = b"roadstream-audit-anchor-v2\n"
KEY_CHECK_DOMAIN = b"roadstream-audit-key-check-v2\n"

#: The row fields covered by the MAC, besides the event document itself.
HASHED_FIELDS = ("seq", "event_id", "stamp_ns", "vehicle_id", "source", "type", "severity")

Problem = Literal["gap", "broken link", "hash mismatch", "malformed row", "wrong key",
                  "anchor mismatch", "truncated", "bad anchor", "no anchor",
                  "unkeyed chain (schema v1)"]


def canonical_json(value: Any) -> str:
    """The one JSON text of a value: sorted keys, compact separators, UTF-8, no NaN/Infinity.

    Raises ValueError for values JSON cannot carry exactly (NaN, Infinity).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _mac(key: bytes, domain: bytes, text: str) -> str:
    return hmac.new(key, domain + text.encode("utf-8"), hashlib.sha256).hexdigest()


def key_check(key: bytes) -> str:
    """A short public fingerprint of a key (16 hex): tells a wrong key from a tampered row."""
    return _mac(key, KEY_CHECK_DOMAIN, "")[:16]


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
    """The text MAC'd for a row: prev_hash followed by the canonical JSON of its fields.

    The fields document is {"event": <event document>, "event_id", "seq", "severity",
    "source", "stamp_ns", "type", "vehicle_id"}; because event_json is itself canonical, the
    document's canonical text embeds it verbatim.
    """
    doc = {name: fields[name] for name in HASHED_FIELDS}
    doc["event"] = json.loads(event_json)
    return prev_hash + canonical_json(doc)


def row_hash(key: bytes, prev_hash: str, fields: dict[str, Any], event_json: str) -> str:
    """HMAC-SHA256 (hex) under `key` of ROW_DOMAIN + `row_preimage(...)` as UTF-8."""
    return _mac(key, ROW_DOMAIN, row_preimage(prev_hash, fields, event_json))


def hash_of(row: AuditRow, key: bytes) -> str:
    """Recompute a stored row's MAC from its prev_hash and fields."""
    fields = {name: getattr(row, name) for name in HASHED_FIELDS}
    return row_hash(key, row.prev_hash, fields, row.event_json)


@dataclass(frozen=True)
class Anchor:
    """A head written outside the database: the trail had `rows` rows, the last MAC'd `head`.

    `trail` is the trail's id (anchors of another trail are not this one's), `stamp_ns` when
    it was written [ns since the Unix epoch], `line` its line in the anchor file (1-based).
    """

    trail: str
    rows: int
    head: str
    stamp_ns: int
    mac: str = ""
    line: int = 0

    def where(self) -> str:
        """`the anchor of <UTC time> (line N)` for messages."""
        moment = datetime.fromtimestamp(self.stamp_ns // 1_000_000_000, tz=UTC)
        return f"the anchor of {moment.isoformat().replace('+00:00', 'Z')} (line {self.line})"


@dataclass
class AnchorReading:
    """What an anchor file (named `where`) holds for one trail.

    `anchors`: this trail's lines whose MAC checked out; `other_trails`: lines of other
    trails (a shared file), skipped; `problem`: the first line that is not a valid anchor of
    this trail (None when all are); `exists`: whether the file exists at all.
    """

    where: str
    exists: bool
    anchors: list[Anchor] = field(default_factory=list)
    other_trails: int = 0
    problem: str | None = None


def anchor_mac(key: bytes, anchor: Anchor) -> str:
    """HMAC-SHA256 (hex) of ANCHOR_DOMAIN + canonical {"head", "rows", "stamp_ns", "trail"}."""
    return _mac(key, ANCHOR_DOMAIN, canonical_json(
        {"head": anchor.head, "rows": anchor.rows, "stamp_ns": anchor.stamp_ns,
         "trail": anchor.trail}))


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain verification: OK, or the first problem (and the row it names).

    `anchored_rows` is how many rows the newest anchor covers (None: anchors not checked).
    """

    rows: int
    head_hash: str
    bad_seq: int | None = None
    bad_event_id: str | None = None
    problem: Problem | None = None
    reason: str = ""
    anchored_rows: int | None = None

    @property
    def ok(self) -> bool:
        """True when every row (and every anchor checked) checked out."""
        return self.problem is None

    def describe(self) -> str:
        """One line for people: `chain OK: N rows …` or the first problem."""
        if self.ok:
            anchored = "" if self.anchored_rows is None else (
                f"; the newest anchor covers {self.anchored_rows} of them")
            return f"chain OK: {self.rows} rows (head {self.head_hash}){anchored}"
        if self.bad_seq is None:
            return f"{self.problem}: {self.reason}"
        event = f" (event {self.bad_event_id})" if self.bad_event_id else ""
        intact = f"the {self.rows} rows before it are intact"
        if self.problem == "anchor mismatch":
            intact = f"the first {self.rows} rows match an earlier anchor"
        elif self.problem == "wrong key":
            intact = "no row can be checked with it"
        return f"chain BROKEN at seq {self.bad_seq}{event}: {self.problem}: {self.reason}; {intact}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the result."""
        return {"ok": self.ok, "rows": self.rows, "head_hash": self.head_hash,
                "bad_seq": self.bad_seq, "bad_event_id": self.bad_event_id,
                "problem": self.problem, "reason": self.reason,
                "anchored_rows": self.anchored_rows}


def _row_problem(row: AuditRow, key: bytes, expected_seq: int,
                 expected_prev: str) -> tuple[Problem, str] | None:
    if row.seq != expected_seq:
        return "gap", (f"expected seq {expected_seq}, found {row.seq} "
                       f"({row.seq - expected_seq} row(s) missing)" if row.seq > expected_seq
                       else f"expected seq {expected_seq}, found {row.seq}")
    if row.prev_hash != expected_prev:
        return "broken link", (f"prev_hash {row.prev_hash[:16]}… does not match the previous "
                               f"row's hash {expected_prev[:16]}…")
    try:
        recomputed = hash_of(row, key)
    except ValueError as exc:  # event_json is not JSON, or holds NaN
        return "malformed row", f"event_json: {exc}"
    if not hmac.compare_digest(recomputed, row.row_hash):
        return "hash mismatch", (f"stored {row.row_hash[:16]}…, recomputed {recomputed[:16]}… "
                                 "(the row was changed after it was written, or the chain was "
                                 "recomputed without the audit key)")
    return None


def verify_rows(rows: Iterable[AuditRow], key: bytes,
                anchors: Sequence[Anchor] | None = None) -> VerifyResult:
    """Walk rows in seq order under `key` and return OK or the FIRST problem.

    For each row, in order: its seq follows the previous one (gap: a row deleted or
    inserted), its prev_hash is the previous row's MAC (broken link), its stored MAC is the
    recomputed one (hash mismatch: edited, or re-chained without the key), and an anchor at
    its seq records its MAC (anchor mismatch: re-chained with the key). After the last row:
    no anchor counts more rows than there are (truncated). `anchors` (MACs already checked,
    of this trail) None skips the anchor checks; empty with rows present is "no anchor".
    `rows` counts the intact rows before the first bad one.
    """
    by_seq: dict[int, list[Anchor]] = {}
    for anchor in anchors or ():
        by_seq.setdefault(anchor.rows, []).append(anchor)
    expected_seq, expected_prev, good, proven = 1, GENESIS, 0, 0
    for row in rows:
        found = _row_problem(row, key, expected_seq, expected_prev)
        if found is not None:
            problem, reason = found
            return VerifyResult(rows=good, head_hash=expected_prev, bad_seq=row.seq,
                                bad_event_id=row.event_id, problem=problem, reason=reason)
        for anchor in by_seq.get(row.seq, ()):
            if anchor.head != row.row_hash:
                return VerifyResult(
                    rows=proven, head_hash=expected_prev, bad_seq=row.seq,
                    bad_event_id=row.event_id, problem="anchor mismatch",
                    reason=(f"{anchor.where()} records head {anchor.head[:16]}… for this row, "
                            f"the row holds {row.row_hash[:16]}…: the history up to here was "
                            "rewritten and re-chained with the audit key"))
        if row.seq in by_seq:
            proven = row.seq
        expected_seq, expected_prev, good = row.seq + 1, row.row_hash, good + 1
    if anchors is None:
        return VerifyResult(rows=good, head_hash=expected_prev)
    if not anchors:
        if good == 0:
            return VerifyResult(rows=0, head_hash=GENESIS, anchored_rows=0)
        return VerifyResult(rows=good, head_hash=expected_prev, problem="no anchor",
                            reason=(f"the {good} rows link up (head {expected_prev[:16]}…), but "
                                    "no anchor of this trail was found, so a cut-off tail "
                                    "cannot be ruled out"))
    newest = max(anchors, key=lambda a: (a.rows, a.stamp_ns))
    if newest.rows > good:
        return VerifyResult(
            rows=good, head_hash=expected_prev, bad_seq=good + 1, problem="truncated",
            reason=(f"{newest.where()} records {newest.rows} rows (head {newest.head[:16]}…), "
                    f"the database holds {good}: the newest {newest.rows - good} row(s), seq "
                    f"{good + 1} to {newest.rows}, are gone"),
            anchored_rows=newest.rows)
    return VerifyResult(rows=good, head_hash=expected_prev, anchored_rows=newest.rows)


def verify_trail(rows: Iterable[AuditRow], key: bytes, meta: Mapping[str, str],
                 reading: AnchorReading | None) -> VerifyResult:
    """Verify a keyed trail: its key against meta's key_check, then its rows and anchors.

    `reading` None checks the rows alone. A key whose check value differs is "wrong key",
    naming the first row; a bad anchor line counts once the rows themselves check out.
    """
    stored, ours = meta.get("key_check", ""), key_check(key)
    if stored != ours:
        first = next(iter(rows), None)
        return VerifyResult(
            rows=0, head_hash=GENESIS, bad_seq=first.seq if first else None,
            bad_event_id=first.event_id if first else None, problem="wrong key",
            reason=(f"the configured audit key (check {ours}) is not the one this trail was "
                    f"written with (check {stored or 'missing'})"))
    if reading is None:
        return verify_rows(rows, key)
    result = verify_rows(rows, key, reading.anchors)
    if reading.problem is not None and result.problem in (None, "no anchor"):
        return replace(result, problem="bad anchor", reason=reading.problem)
    if result.problem == "no anchor":
        missing = "holds no anchor of this trail" if reading.exists else "does not exist"
        return replace(result, reason=f"{reading.where} {missing}; {result.reason}")
    return result
