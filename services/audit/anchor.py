"""The anchor file: an append-only log of the audit trail's head, kept outside the database.

The writer appends one line every `anchor_every_rows` rows or `anchor_every_s` seconds, and
when it closes:

    {"head":"<row_hash of row N>","mac":"<hex>","rows":N,"stamp_ns":T,"trail":"<trail id>"}

`mac` is HMAC-SHA256 under the audit key (services/audit/chain.anchor_mac), so nobody
without the key can forge a line. `roadstream audit verify` checks every anchor of the trail
against the rows: a head that differs means the history was re-chained, an anchor that counts
more rows than the database holds means its tail was cut off.

Why a file and not a signed checkpoint event on Kafka: verify must work after the fact,
offline, from a copy of the database — and the embedded broker that `roadstream run` uses
keeps topics in memory only, so its checkpoints would vanish with the run. A file can sit
where the database's users cannot write (another volume or host, a log shipper, Linux's
append-only attribute `chattr +a`), is opened with O_APPEND only, and is read by verify
without a broker. docs/audit.md says where to keep it.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from pathlib import Path

from services.audit.chain import Anchor, AnchorReading, anchor_mac, canonical_json

_FIELDS = {"head": str, "mac": str, "rows": int, "stamp_ns": int, "trail": str}
log = logging.getLogger(__name__)


class AnchorLog:
    """An anchor file at `path` (created with its folder on the first append).

    It also keeps one writer's schedule: an anchor is due when the head moved since this
    writer's last anchor and `every_rows` rows or `every_s` seconds have passed since then.
    """

    def __init__(self, path: Path, *, every_rows: int = 100, every_s: float = 10.0) -> None:
        self.path = path
        self.every_rows = every_rows
        self.every_s = every_s
        # Nothing anchored by this writer yet: its first row anchors at once.
        self._seq, self._at = 0, -float("inf")

    def due(self, seq: int, *, force: bool = False) -> bool:
        """True when the head at row `seq` should be anchored now (with `force`: whenever it
        moved since this writer's last anchor)."""
        return seq > self._seq and (force or seq - self._seq >= self.every_rows
                                    or time.monotonic() - self._at >= self.every_s)

    def record(self, key: bytes, trail: str, rows: int, head: str) -> bool:
        """Append the anchor and restart the schedule; on an I/O error log it and return
        False (the rows are committed either way; the next due anchor tries again)."""
        try:
            self.append(key, trail, rows, head)
        except OSError as exc:
            log.error("audit: cannot anchor row %d to %s: %s", rows, self.path, exc)
            return False
        self._seq, self._at = rows, time.monotonic()
        return True

    def append(self, key: bytes, trail: str, rows: int, head: str,
               stamp_ns: int | None = None) -> Anchor:
        """Append one MAC'd anchor line and fsync it; return the anchor.

        Raises OSError when the file cannot be written.
        """
        anchor = Anchor(trail=trail, rows=rows, head=head,
                        stamp_ns=time.time_ns() if stamp_ns is None else stamp_ns)
        text = canonical_json({"head": anchor.head, "mac": anchor_mac(key, anchor),
                               "rows": anchor.rows, "stamp_ns": anchor.stamp_ns,
                               "trail": anchor.trail}) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND only: the writer never seeks, so a file the OS keeps append-only still works.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if not self._ends_a_line():
                text = "\n" + text  # a crash cut the last line short: start a fresh one
            data = text.encode("utf-8")
            if os.write(fd, data) != len(data):
                raise OSError(f"anchor file {self.path}: short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        return anchor

    def _ends_a_line(self) -> bool:
        try:
            with self.path.open("rb") as existing:
                if existing.seek(0, os.SEEK_END) == 0:
                    return True
                existing.seek(-1, os.SEEK_END)
                return existing.read(1) == b"\n"
        except OSError:
            return True  # unreadable to us: nothing to repair

    def read(self, key: bytes, trail: str) -> AnchorReading:
        """The anchors of `trail` whose MAC checks out under `key`, and the first bad line.

        A last line without its newline is a write a crash cut short, and is skipped.
        Raises OSError when the file exists but cannot be read.
        """
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return AnchorReading(where=str(self.path), exists=False)
        reading = AnchorReading(where=str(self.path), exists=True)
        lines = text.split("\n")
        for number, line in enumerate(lines[:-1], start=1):  # the last piece has no newline
            if not line.strip():
                continue
            anchor = _parse(line, number)
            if anchor is None:
                reading.problem = reading.problem or f"{self.path} line {number} is not an anchor"
            elif anchor.trail != trail:
                reading.other_trails += 1
            elif not hmac.compare_digest(anchor.mac, anchor_mac(key, anchor)):
                reading.problem = reading.problem or (
                    f"{self.path} line {number}: MAC mismatch (forged, or written with "
                    "another key)")
            else:
                reading.anchors.append(anchor)
        return reading


def _parse(line: str, number: int) -> Anchor | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or set(doc) != set(_FIELDS) or any(
            type(doc[name]) is not kind for name, kind in _FIELDS.items()):
        return None
    return Anchor(trail=doc["trail"], rows=doc["rows"], head=doc["head"],
                  stamp_ns=doc["stamp_ns"], mac=doc["mac"], line=number)
