"""Dead-letter events, aggregated: one safety event per source, error class and window.

A burst of bad input (a fuzzer, a broken producer) would otherwise put one `safety.events`
entry, and so one audit row, per rejected record: thousands of identical rows burying the
events that matter. Here the records one service rejects are gathered per (event type,
source topic, error class) over a window of `window_s`, opened by the first of them; at the
window's end (and when the service stops) one event goes out carrying the count, the first
and last (partition, offset), and the first record's error message as the example.

Event types: ``dead_letter`` (a copy is in the DLQ; ``truncated`` counts the copies cut to
fit) and ``record_skipped`` (not even a truncated copy could be written: the record is gone,
its offset moved on).

`DeadLetterEvents` is pure bookkeeping on an injected clock; `DeadLetters` (deadletter.py)
schedules its flushes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.messages import EventRefs, Payload, Severity
from services.messages.base import ID_MAX_CHARS
from services.runtime.delivery import Record
from services.runtime.events import safety_event

#: Aggregation window of dead-letter events [s] (the default of `dead_letter_window_s`).
WINDOW_S = 10.0
#: The example error message is cut to this many characters.
MAX_ERROR_CHARS = 1000
#: Distinct vehicles counted per window at most (bounds memory under a flood of odd keys).
MAX_VEHICLES = 1024

DEAD_LETTER = "dead_letter"
RECORD_SKIPPED = "record_skipped"
EVENT_TYPES = (DEAD_LETTER, RECORD_SKIPPED)


def vehicle_of(record: Record) -> str:
    """The vehicle a record's key names (``vehicle`` or ``vehicle/camera``), cut to an id's size."""
    return (record.key or b"").decode(errors="replace").split("/")[0][:ID_MAX_CHARS]


@dataclass
class Window:
    """The records of one key (event type, topic, error class) since the window opened."""

    opened_s: float
    type: str
    topic: str
    dlq_topic: str
    error_class: str
    example: str
    first: tuple[int, int]  # (partition, offset)
    last: tuple[int, int]
    count: int = 0
    truncated: int = 0
    produce_error: str = ""
    vehicles: set[str] = field(default_factory=set)


class DeadLetterEvents:
    """Gathers a service's rejected records into one safety event per key and window.

    `emit` publishes an event (the runtime's, acknowledged by the brokers). `clock` returns
    seconds (monotonic); tests pass their own.
    """

    def __init__(self, service: str, emit: Callable[[Payload], Awaitable[None]], *,
                 window_s: float = WINDOW_S, run_id: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.service = service
        self.window_s = window_s
        self.run_id = run_id
        self._emit = emit
        self._clock = clock
        self._open: dict[tuple[str, str, str], Window] = {}
        self._ended: list[Window] = []  # ended while records kept coming, not emitted yet

    def add(self, type_: str, record: Record, error: BaseException, *, dlq_topic: str,
            truncated: bool = False, produce_error: BaseException | None = None) -> None:
        """Count one rejected record in its window (opening one if none is open)."""
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown dead-letter event type {type_!r}; known: {EVENT_TYPES}")
        key = (type_, record.topic, type(error).__name__)
        where = (record.partition, record.offset)
        now = self._clock()
        window = self._open.get(key)
        if window is not None and now - window.opened_s >= self.window_s:
            # its window has ended (not emitted yet): this record opens the next one
            self._ended.append(self._open.pop(key))
            window = None
        if window is None:
            message = str(error)[:MAX_ERROR_CHARS] or type(error).__name__
            window = self._open[key] = Window(
                opened_s=now, type=type_, topic=record.topic, dlq_topic=dlq_topic,
                error_class=type(error).__name__, example=message, first=where, last=where)
        window.count += 1
        window.last = where
        window.truncated += int(truncated)
        if produce_error is not None and not window.produce_error:
            window.produce_error = f"{type(produce_error).__name__}: {produce_error}"[
                :MAX_ERROR_CHARS]
        if len(window.vehicles) < MAX_VEHICLES:
            window.vehicles.add(vehicle_of(record))

    @property
    def pending(self) -> int:
        """Windows not emitted yet (open, or ended and waiting for the next flush)."""
        return len(self._open) + len(self._ended)

    def next_due_s(self) -> float | None:
        """When the next flush is due (on `clock`), or None when there is nothing to emit."""
        if self._ended:
            return self._clock()
        if not self._open:
            return None
        return min(w.opened_s for w in self._open.values()) + self.window_s

    async def flush(self, *, everything: bool = False) -> int:
        """Emit one event per window that has ended (every open one with `everything`).

        Returns the number emitted. When emitting fails (Kafka unreachable), the error
        propagates and the windows not yet emitted stay, for the next flush.
        """
        now = self._clock()
        sent = 0
        while self._ended:
            await self._emit(self.event(self._ended[0]))
            self._ended.pop(0)
            sent += 1
        for key, window in list(self._open.items()):
            if everything or now - window.opened_s >= self.window_s:
                await self._emit(self.event(window))
                del self._open[key]
                sent += 1
        return sent

    def event(self, window: Window) -> Payload:
        """The safety event of one window."""
        vehicles = window.vehicles
        details: dict[str, object] = {
            "error_class": window.error_class, "error": window.example,
            "dlq_topic": window.dlq_topic, "count": window.count,
            "first": {"partition": window.first[0], "offset": window.first[1]},
            "last": {"partition": window.last[0], "offset": window.last[1]},
            "window_s": self.window_s, "vehicles": len(vehicles)}
        if window.type == DEAD_LETTER:
            details["truncated"] = window.truncated
        if window.produce_error:
            details["produce_error"] = window.produce_error
        return safety_event(
            source=self.service, type_=window.type, severity=Severity.WARNING,
            # one vehicle: its id, as before aggregation; several: none in particular
            vehicle_id=next(iter(vehicles)) if len(vehicles) == 1 else "",
            details=details,
            refs=EventRefs(topic=window.topic, partition=window.first[0],
                           offset=window.first[1]),
            run_id=self.run_id)
