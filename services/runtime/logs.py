"""Rate-limited logging: a repeated error is one line per interval, with a count, not a flood.

During a broker outage every retry, every client reconnect attempt and every poison record
would otherwise log a line (or a traceback) each time: thousands a minute, burying the one
line that says what is wrong. Here a repeated line is let through once per `interval_s` for
its key, and the next line that passes says how many were held back meanwhile.

- `RateLimitedLog`: for roadstream's own messages, keyed by the caller (e.g. the error class);
- `RateLimitFilter` / `rate_limit_loggers`: for libraries' loggers (aiokafka's per-attempt
  connection errors, FastStream's handler tracebacks), keyed by logger, level and message
  template. Only WARNING and above are limited; INFO and DEBUG pass untouched.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

#: How often one kind of repeated line is logged [s].
LOG_INTERVAL_S = 10.0
#: Keys remembered at most (oldest forgotten first): bounds memory against varying messages.
MAX_KEYS = 1024


class RateLimiter:
    """Lets one event per key through every `interval_s` and counts the ones held back.

    `clock` returns seconds (monotonic); tests pass their own.
    """

    def __init__(self, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        # key -> [time of the last line let through, lines held back since]
        self._seen: OrderedDict[Hashable, list[float]] = OrderedDict()

    def allow(self, key: Hashable) -> int | None:
        """None to hold this one back; else the number held back since the last one let through."""
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            return None
        held = int(entry[1]) if entry is not None else 0
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_KEYS:
            self._seen.popitem(last=False)
        return held


def _held_note(held: int, interval_s: float) -> str:
    return f" ({held} more like this in the last {interval_s:g} s not logged)" if held else ""


class RateLimitedLog:
    """A logger whose repeated lines (same caller-given key) come once per `interval_s`."""

    def __init__(self, logger: logging.Logger, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.limiter = RateLimiter(interval_s, clock)

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless a line of `key` was logged within the interval.

        Returns whether it was logged. The line carries the count of those held back.
        """
        held = self.limiter.allow(key)
        if held is None:
            return False
        self.logger.log(level, msg + _held_note(held, self.limiter.interval_s).replace("%", "%%"),
                        *args)
        return True


class RateLimitFilter(logging.Filter):
    """A logging filter: lines at `level` or above repeat once per `interval_s` per template."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S, level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.level = level
        self.limiter = RateLimiter(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat within the interval; the next line let through tells the count."""
        if record.levelno < self.level:
            return True
        error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        held = self.limiter.allow((record.name, record.levelno, str(record.msg), error))
        if held is None:
            return False
        if held:
            # a copy of the text, formatted now: the note must not be read as a format string
            record.msg = record.getMessage() + _held_note(held, self.limiter.interval_s)
            record.args = None
        return True


def rate_limit_loggers(names: Iterable[str], interval_s: float = LOG_INTERVAL_S) -> None:
    """Attach one `RateLimitFilter` to each named logger (once: calling again changes nothing).

    A logger's filters see only the lines logged on it, not its children's: name every
    logger (`kafka_client_loggers`).
    """
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter(interval_s))


def kafka_client_loggers() -> list[str]:
    """The aiokafka loggers that exist now (each module makes its own on import)."""
    known = list(logging.root.manager.loggerDict)
    return ["aiokafka", *sorted(n for n in known if n.startswith("aiokafka."))]
