"""What became of each frame of a fuzz run: served, dead-lettered with its own error, or lost; pure.

A frame's fate is read from the outside, from what the perception service published: a
`perception.objects` result names its frame by (run id, vehicle, camera, seq), and the fuzz
gives every frame its index as seq; a `camera.frames.dlq` record names its frame by the source
topic, partition and offset in its headers. A frame is right when

- valid: served exactly once, never dead-lettered;
- bad: dead-lettered exactly once, never served, with error class ``FrameError`` and a message
  that starts with its own location (``camera.frames[partition]@offset: ``) and matches the
  pattern of its kind (`FuzzFrame.error`).

Everything else is counted by what went wrong (missing, duplicate, served though bad, rejected
though valid, wrong error), per kind.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.bench.fuzz import FuzzFrame
from services.messages import CAMERA_FRAMES, PerceptionObjects

ERROR_CLASS = "FrameError"
_EXAMPLES = 20  # wrong fates listed in the summary, besides the counts


@dataclass
class _Fate:
    kind: str
    expect_valid: bool
    error: str
    where: str  # the record's location, as the service's errors start
    served: int = 0
    dead: list[tuple[str, str]] = field(default_factory=list)  # (error class, message)

    def verdict(self) -> str:
        """``ok``, or what went wrong with this frame."""
        if not self.served and not self.dead:
            return "missing"
        if self.expect_valid:
            if self.dead:
                return "rejected_valid"
            return "ok" if self.served == 1 else "duplicate"
        if self.served:
            return "served_bad"
        cls, message = self.dead[0]
        prefix = f"{self.where}: "
        own = (cls == ERROR_CLASS and message.startswith(prefix)
               and re.match(self.error, message[len(prefix):]) is not None)
        if not own:
            return "wrong_error"
        return "ok" if len(self.dead) == 1 else "duplicate"


class FuzzTally:
    """The fate of every frame of one fuzz run, fed with what was sent and what came out."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.frames: dict[int, _Fate] = {}
        self.by_offset: dict[tuple[int, int], int] = {}
        # Outcomes can arrive before the producer's acknowledgement told where their frame
        # landed: they wait here until `sent`; what is left at the end matches no frame.
        self._early_results: Counter[int] = Counter()
        self._early_dead: dict[tuple[int, int], list[tuple[str, str]]] = {}
        self.accounted = 0  # frames with any outcome so far

    def sent(self, frame: FuzzFrame, partition: int, offset: int) -> None:
        """Record a produced frame at its partition and offset."""
        fate = _Fate(frame.kind, frame.expect_valid, frame.error,
                     f"{CAMERA_FRAMES.name}[{partition}]@{offset}")
        self.frames[frame.index] = fate
        self.by_offset[(partition, offset)] = frame.index
        fate.served = self._early_results.pop(frame.index, 0)
        fate.dead = self._early_dead.pop((partition, offset), [])
        if fate.served or fate.dead:
            self.accounted += 1

    def _touch(self, fate: _Fate) -> None:
        if fate.served + len(fate.dead) == 1:
            self.accounted += 1

    def result(self, result: PerceptionObjects) -> None:
        """A `perception.objects` message; results of other runs are ignored."""
        if result.run_id != self.run_id:
            return
        fate = self.frames.get(result.source.seq)
        if fate is None:
            self._early_results[result.source.seq] += 1
            return
        fate.served += 1
        self._touch(fate)

    def dead_letter(self, headers: dict[str, str]) -> None:
        """A `camera.frames.dlq` record's headers (dead letters of other topics match no frame)."""
        try:
            where = (int(headers["dlq-source-partition"]), int(headers["dlq-source-offset"]))
        except (KeyError, ValueError):
            where = (-1, -1)
        if headers.get("dlq-source-topic") != CAMERA_FRAMES.name:
            where = (-2, -2)
        error = (headers.get("dlq-error-class", ""), headers.get("dlq-error-message", ""))
        index = self.by_offset.get(where)
        if index is None:
            self._early_dead.setdefault(where, []).append(error)
            return
        fate = self.frames[index]
        fate.dead.append(error)
        self._touch(fate)

    @property
    def complete(self) -> bool:
        """Every sent frame has an outcome."""
        return self.accounted == len(self.frames)

    def summary(self) -> dict[str, Any]:
        """Counts per kind and in total, and the first wrong fates with what came out."""
        kinds: dict[str, Counter[str]] = {}
        examples: list[dict[str, Any]] = []
        for index, fate in sorted(self.frames.items()):
            verdict = fate.verdict()
            counts = kinds.setdefault(fate.kind, Counter())
            counts["sent"] += 1
            counts[verdict] += 1
            counts["served"] += fate.served
            counts["dead_lettered"] += len(fate.dead)
            if verdict != "ok" and len(examples) < _EXAMPLES:
                examples.append({"index": index, "kind": fate.kind, "verdict": verdict,
                                 "where": fate.where, "expected": fate.error,
                                 "served": fate.served, "dead_letters": fate.dead[:2]})
        total: Counter[str] = Counter()
        for counts in kinds.values():
            total.update(counts)
        valid = [f for f in self.frames.values() if f.expect_valid]
        return {
            "frames": len(self.frames), "valid_sent": len(valid),
            "valid_served": sum(1 for f in valid if f.served >= 1),
            "bad_sent": len(self.frames) - len(valid),
            "bad_dead_lettered_own_error": sum(1 for f in self.frames.values()
                                               if not f.expect_valid and f.verdict() == "ok"),
            **{k: total[k] for k in ("ok", "missing", "duplicate", "served_bad", "rejected_valid",
                                     "wrong_error")},
            "duplicate_deliveries": sum(max(0, f.served + len(f.dead) - 1)
                                        for f in self.frames.values()),
            "unmatched_results": sum(self._early_results.values()),
            "unmatched_dead_letters": sum(map(len, self._early_dead.values())),
            "kinds": {k: dict(sorted(c.items())) for k, c in sorted(kinds.items())},
            "wrong": examples,
        }
