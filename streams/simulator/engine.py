"""The discrete-event core: a heap of timed actions, event ids, and the noise of real feeds.

Every generator is an *action* ``fn(t, *args)`` scheduled at a simulated time; it emits
events stamped ``t`` and schedules follow-ups. Popping the heap in time order makes the
stream event-time ordered by construction, so the few out-of-order events are exactly the
ones deliberately held back (``late_rate``, and look-alikes' clearing reports through
:meth:`Engine.hold_back`) or resent (``duplicate_rate``), and both are listed in the truth
summary. ``invalid_rate`` adds a broken copy next to a valid event (never instead of it),
so dead letters do not change any subscriber's state. While ``exact`` is set (look-alikes),
emitted events get no noise at all.

No Kafka here: the engine yields batches of ``(topic, key, value, event_time_ms)``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from heapq import heappop, heappush
from typing import Any

import orjson

from streams.simulator.catalog import DAY_MS, HOURLY_FACTOR
from streams.simulator.clock import china_hour
from streams.simulator.config import SimConfig
from streams.simulator.invalid import InvalidMaker
from streams.simulator.truthlog import TruthLog

Record = tuple[str, str | None, bytes, int]
"""(logical topic, key, value bytes, event time in epoch ms)."""

#: Cap on the event ids listed in the truth summary (counts are always exact).
MAX_LISTED_IDS = 200_000


class Engine:
    """Scheduler + emitter shared by every generator of one run."""

    def __init__(self, cfg: SimConfig, truth: TruthLog) -> None:
        self.cfg = cfg
        self.truth = truth
        self.start_ms = cfg.start_ms
        self.now = cfg.start_ms
        self.tag = hashlib.sha256(str(cfg.seed).encode()).hexdigest()[:6]
        self.noise = random.Random(f"{cfg.seed}/noise")
        self.invalid = InvalidMaker(random.Random(f"{cfg.seed}/invalid"), cfg.max_event_bytes)
        self.out: list[Record] = []
        self.n_out = 0                       # run-phase records appended so far
        self.max_records: int | None = None
        self.until_ms: int | None = None
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._late: list[tuple[int, int, Record]] = []
        self._seq = 0
        self._eid = 0
        self._ids: dict[str, int] = {}
        self._stop = False
        self._p_invalid = cfg.invalid_rate
        self._p_late = self._p_invalid + cfg.late_rate
        self._p_any = self._p_late + cfg.duplicate_rate
        self.late_ids: list[str] = []
        self.duplicate_ids: list[str] = []
        self.late_count = 0
        self.duplicate_count = 0
        self.invalid_count = 0
        self.finished = False
        #: > 0 while an action must emit exactly what it says (look-alikes): no noise.
        self.exact = 0

    # --- ids --------------------------------------------------------------------------
    def eid(self) -> str:
        """Next event id; ids sort in generation order (ties in event time keep order)."""
        self._eid += 1
        return f"{self.tag}-{self._eid:010d}"

    def next_id(self, prefix: str) -> str:
        """Next id of some entity (call, charge, complaint...), e.g. ``CH3fa2c1-00000042``."""
        n = self._ids.get(prefix, 0) + 1
        self._ids[prefix] = n
        return f"{prefix}{self.tag}-{n:08d}"

    # --- scheduling -------------------------------------------------------------------
    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(t, *args)`` at simulated time ``t`` (never before now)."""
        self._seq += 1
        heappush(self._heap, (max(t, self.now), self._seq, fn, args))

    def every(self, per_day: float, fn: Callable[[int], None], rng: random.Random,
              diurnal: bool = True) -> None:
        """Run ``fn(t)`` as a Poisson process of ``per_day`` events per simulated day,
        following the daily traffic curve when ``diurnal``."""
        if per_day <= 0:
            return
        mean_gap = DAY_MS / per_day

        def tick(t: int) -> None:
            """One event of the process, then schedule the next after an exponential gap."""
            fn(t)
            factor = HOURLY_FACTOR[china_hour(t)] if diurnal else 1.0
            self.at(t + int(rng.expovariate(1.0) * mean_gap / factor) + 1, tick)

        self.at(self.now + int(rng.expovariate(1.0) * mean_gap), tick)

    def stop(self) -> None:
        """Finish after the current action; held-back late events are still sent."""
        self._stop = True

    # --- emission ---------------------------------------------------------------------
    def emit(self, topic: str, key: str | None, payload: dict[str, Any]) -> None:
        """Serialise one event stamped now; maybe also break, delay or duplicate it."""
        rec = (topic, key, orjson.dumps(payload), self.now)
        if self.exact:
            self.out.append(rec)
            self.n_out += 1
            return
        r = self.noise.random()
        if r >= self._p_any:
            self.out.append(rec)
            self.n_out += 1
            return
        if r < self._p_invalid:
            self.out.append(rec)
            self.n_out += 1
            bad, line = self.invalid.make(rec, payload, self._other_key(topic, key), self.n_out)
            self.out.append(bad)
            self.n_out += 1
            self.invalid_count += 1
            self.truth.write(line)
        elif r < self._p_late:
            delay = int(self.noise.uniform(10_000, self.cfg.late_max_s * 1000))
            self._hold(self.now + delay, rec)
            self.late_count += 1
            if len(self.late_ids) < MAX_LISTED_IDS:
                self.late_ids.append(payload["event_id"])
        else:
            self.out.append(rec)
            self.n_out += 1
            self._hold(self.now + int(self.noise.uniform(0, 60_000)), rec)
            self.duplicate_count += 1
            if len(self.duplicate_ids) < MAX_LISTED_IDS:
                self.duplicate_ids.append(payload["event_id"])

    def mark(self) -> int:
        """Position in the current action's output, for :meth:`clear_first` and
        :meth:`hold_back` (records emitted since are ``out[mark:]``)."""
        return len(self.out)

    def clear_first(self, brk: int, clr: int) -> None:
        """Deliver the records emitted since ``clr`` before those emitted in
        ``[brk, clr)`` (same action, so same event time): the reverse delivery order."""
        out = self.out
        out[brk:] = out[clr:] + out[brk:clr]

    def hold_back(self, since: int, release: int) -> list[str]:
        """Send the records emitted since ``since`` late: after every record dated before
        ``release`` (the mechanism of ``late_rate``); they are listed as out of order."""
        held = self.out[since:]
        del self.out[since:]
        self.n_out -= len(held)
        ids = []
        for rec in held:
            self._hold(release, rec)
            self.late_count += 1
            eid = orjson.loads(rec[2])["event_id"]
            ids.append(eid)
            if len(self.late_ids) < MAX_LISTED_IDS:
                self.late_ids.append(eid)
        return ids

    def _hold(self, release: int, rec: Record) -> None:
        self._seq += 1
        heappush(self._late, (release, self._seq, rec))

    def _other_key(self, topic: str, key: str | None) -> str:
        """A key that is valid-looking but belongs to someone else (mis-partitioned record)."""
        if topic == "network-kpis":
            return "46001-999999-9" if key != "46001-999999-9" else "46001-999998-9"
        return f"S{(int(key[1:]) + 1) % 10**8:08d}" if key and key[1:].isdigit() else "S00000001"

    # --- the run loop -----------------------------------------------------------------
    def run(self) -> Iterator[list[Record]]:
        """Yield batches of records in emission order until stopped, then drain."""
        heap, late = self._heap, self._late
        while heap and not self._stop:
            if self.max_records is not None and self.n_out >= self.max_records:
                break
            t = heap[0][0]
            if self.until_ms is not None and t > self.until_ms:
                break
            _, _, fn, args = heappop(heap)
            while late and late[0][0] <= t:
                self.out.append(heappop(late)[2])
                self.n_out += 1
            self.now = t
            fn(t, *args)
            if self.out:
                batch, self.out = self.out, []
                yield batch
        while late:
            self.out.append(heappop(late)[2])
            self.n_out += 1
        if self.out:
            batch, self.out = self.out, []
            yield batch
        self.finished = True
