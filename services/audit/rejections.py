"""Safety events the audit refused (unsigned, forged, replayed): counted, logged once per window.

A producer without the events key, or an attacker with produce rights on `safety.events`,
may send thousands of events a second. None of them enters the trail; each is counted by
reason, and the log gets one `audit` line per window of `window_s` with the counts since the
last line and one example, never one line per event. The first rejection after a quiet
window is logged at once, so an operator learns of it without waiting.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from services.runtime.logs import LOG_INTERVAL_S

log = logging.getLogger("services.audit.service")


class Rejections:
    """Totals of refused events by reason, and their aggregated log lines.

    `clock` returns seconds (monotonic); tests pass their own.
    """

    def __init__(self, window_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self.totals: Counter[str] = Counter()
        self._clock = clock
        self._pending: Counter[str] = Counter()  # since the last line
        self._example = ""
        self._last_line_s: float | None = None

    def add(self, reason: str, example: str) -> str | None:
        """Count one refused event; return the log line when one is due now (else None)."""
        self.totals[reason] += 1
        self._pending[reason] += 1
        if not self._example:
            self._example = example
        return self.flush()

    def flush(self, *, everything: bool = False) -> str | None:
        """Log (and return) the line of the counts since the last one, when its window has
        passed (or with `everything`, at stop); None when nothing is due."""
        now = self._clock()
        if not self._pending:
            return None
        if (not everything and self._last_line_s is not None
                and now - self._last_line_s < self.window_s):
            return None
        since = ("" if self._last_line_s is None
                 else f" in the last {now - self._last_line_s:.0f} s")
        counts = ", ".join(f"{r}={n}" for r, n in sorted(self._pending.items()))
        line = (f"audit: refused {sum(self._pending.values())} safety events{since}, not in "
                f"the trail ({counts}); e.g. {self._example}")
        log.warning("%s", line)
        self._pending.clear()
        self._example = ""
        self._last_line_s = now
        return line
