"""When records may leave: the simulated clock, the rate limit, and the progress line.

The simulated clock starts at ``--start`` when the run phase starts and runs ``--speed``
times faster than the wall clock; a record is held until the clock reaches its event
time. ``--rate`` is a token bucket on top (events per wall second). ``speed=0`` and
``rate=0`` mean "no limit". Clock reads are batched: the fast path of :meth:`Pacer.gate`
is two comparisons.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from streams.simulator.clock import iso


class Pacer:
    """Holds records back to the simulated clock and the token bucket."""

    def __init__(self, start_ms: int, speed: float, rate: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 on_wait: Callable[[], None] | None = None) -> None:
        self.start_ms = start_ms
        self.speed = speed
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.on_wait = on_wait
        self.capacity = max(1.0, rate * 0.05) if rate > 0 else math.inf
        self.wall0 = clock()
        self._last = self.wall0
        self._budget = self.capacity
        self.sim_limit = math.inf if speed <= 0 else start_ms
        #: Set when the run must end: waiting stops, the rest is sent unpaced.
        self.abort = False

    def begin(self) -> None:
        """Start the simulated clock now."""
        self.wall0 = self._last = self.clock()
        self._budget = self.capacity

    def sim_now(self) -> int:
        """The simulated time the clock shows now (epoch ms)."""
        if self.speed <= 0:
            return -1
        return self.start_ms + int((self.clock() - self.wall0) * 1000 * self.speed)

    def gate(self, ts_ms: int) -> None:
        """Block until a record stamped ``ts_ms`` may be sent, and take a token."""
        if ts_ms > self.sim_limit or self._budget < 1:
            self._wait(ts_ms)
        self._budget -= 1

    def _refresh(self) -> None:
        now = self.clock()
        if self.speed > 0:
            self.sim_limit = self.start_ms + int((now - self.wall0) * 1000 * self.speed)
        if self.rate > 0:
            self._budget = min(self.capacity, self._budget + (now - self._last) * self.rate)
        self._last = now

    def _wait(self, ts_ms: int) -> None:
        while True:
            self._refresh()
            if self.abort or (ts_ms <= self.sim_limit and self._budget >= 1):
                return
            need = 0.0
            if ts_ms > self.sim_limit:
                need = (ts_ms - self.sim_limit) / 1000 / self.speed
            if self._budget < 1:
                need = max(need, (1 - self._budget) / self.rate)
            if self.on_wait is not None:
                self.on_wait()
            self.sleep(min(max(need, 0.0005), 0.1))


class Progress:
    """Prints one line per second to stderr: records per topic, rate, simulated time."""

    def __init__(self, label: str, *, out: TextIO = sys.stderr, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic, total: int | None = None) -> None:
        self.label = label
        self.out = out
        self.enabled = enabled
        self.clock = clock
        self.total = total
        self.counts: Counter[str] = Counter()
        self.t0 = clock()
        self._next = self.t0 + 1.0
        self._last_n = 0
        self._last_t = self.t0
        self.sim_ms: int | None = None

    def maybe(self) -> bool:
        """Print if a second has passed; True when it did (callers check deadlines then)."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + 1.0
        self.line(now)
        return True

    def line(self, now: float | None = None, final: bool = False) -> None:
        """Print the progress line now (``final``: totals and the average rate)."""
        if not self.enabled:
            return
        now = self.clock() if now is None else now
        n = sum(self.counts.values())
        elapsed = now - self.t0
        rate = (n - self._last_n) / max(now - self._last_t, 1e-9)
        if final:
            rate = n / max(elapsed, 1e-9)
        self._last_n, self._last_t = n, now
        of = f"/{self.total:,}" if self.total else ""
        sim = f" sim {iso(self.sim_ms)[:19]}" if self.sim_ms is not None else ""
        topics = " ".join(f"{t}={c:,}" for t, c in sorted(self.counts.items()))
        word = "done" if final else f"{elapsed:6.1f}s"
        print(f"[{self.label}] {word} {n:,}{of} records, {rate:,.0f}/s{sim} | {topics}",
              file=self.out, flush=True)
