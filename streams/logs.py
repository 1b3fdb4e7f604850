"""Logs an operator can read: one line per problem per minute, not one per poll.

While the broker is away, aiokafka logs an ERROR on every reconnect attempt and every failed
fetch (over a thousand lines in 30 s, measured), librdkafka does the same on stderr, and
the lines that matter drown. :class:`RepeatFilter` lets the first record of each kind
through and then one per interval, saying how many it held back; :class:`Throttle` does
the same for our own warnings. Records are grouped by logger, level and message template
(not the formatted text), so a message with a changing number is still one kind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

#: Loggers whose repeated records are throttled (the clients' connection chatter).
CHATTY = ("aiokafka", "faust.transport", "kafka.librdkafka")


class Throttle:
    """Allows one event per key per ``interval_s``; counts the ones it held back.

    >>> t = Throttle(60.0, clock=iter([0.0, 1.0, 61.0]).__next__)
    >>> t.allow("x"), t.allow("x"), t.allow("x"), t.suppressed("x")
    (True, False, True, 0)
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}
        self.released = 0  # held-back count of the last allowed event

    def allow(self, key: Hashable) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        self.released = self._held.pop(key, 0)
        return True

    def suppressed(self, key: Hashable) -> int:
        return self._held.get(key, 0)


class RepeatFilter(logging.Filter):
    """A logging filter: the first record of a kind passes, then one per ``interval_s``.

    Applied to the handlers, so it sees every logger's records; only loggers under
    ``prefixes`` are throttled (our own code logs state changes, not per-poll noise).
    """

    def __init__(self, interval_s: float = 60.0, prefixes: tuple[str, ...] = CHATTY) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.throttle = Throttle(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg)[:200])
        if not self.throttle.allow(key):
            return False
        held = self.throttle.released
        if held:
            record.msg = f"{record.msg} ({held} similar messages in the last minute suppressed)"
        return True


def install(interval_s: float = 60.0) -> RepeatFilter:
    """Put one :class:`RepeatFilter` on every handler of the root logger (after the logging
    set-up, which Faust's worker does itself)."""
    flt = RepeatFilter(interval_s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    return flt


def librdkafka_logger() -> logging.Logger:
    """The logger librdkafka's own messages go to (``logger=`` of confluent-kafka clients),
    so they are throttled and formatted like everything else instead of written raw to
    stderr."""
    return logging.getLogger("kafka.librdkafka")


def client_logging(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` with librdkafka's messages routed to :func:`librdkafka_logger`."""
    return {**conf, "logger": librdkafka_logger()}
