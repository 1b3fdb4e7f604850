"""The alerts currently firing, by fingerprint, and when each is due to be sent again.

Alertmanager forgets a firing alert once its ``endsAt`` passes, so whoever owns it must
keep saying it still fires (Prometheus re-sends every ``resend_delay``, 1 min). The sink
keeps, per owned partition of ``alerts``, the latest record (highest ``sequence``) of every
firing episode; a resolved record removes the episode (it is sent once, through the
outbox, with its ``endsAt``). Recently closed fingerprints are remembered (bounded) so a
stale firing record read after its resolution cannot bring the episode back. Pure: the
clock is passed in.

>>> f = FiringAlerts(resend_interval_s=60)
>>> f.apply(0, "aa", 1, "firing", "p1"), f.apply(0, "aa", 1, "firing", "dup")
(True, False)
>>> f.due(now=10.0)
[('aa', 'p1')]
>>> f.sent(["aa"], now=10.0); f.due(now=69.0), [k for k, _ in f.due(now=70.0)]
([], ['aa'])
>>> f.apply(0, "aa", 2, "resolved", "r"), f.due(now=500.0), f.apply(0, "aa", 1, "firing", "old")
(True, [], False)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass
class Entry(Generic[P]):
    sequence: int
    payload: P
    last_sent: float | None = None


class FiringAlerts(Generic[P]):
    """Firing episodes per partition; ``payload`` is whatever the caller re-sends."""

    def __init__(self, resend_interval_s: float, closed_memory: int = 100_000) -> None:
        self.resend_interval_s = resend_interval_s
        self.closed_memory = closed_memory
        self._by_partition: dict[int, dict[str, Entry[P]]] = {}
        self._closed: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_partition.values())

    def apply(self, partition: int, fingerprint: str, sequence: int, status: str,
              payload: P, scheduled: float | None = None) -> bool:
        """Take one record into account; False if it is older than what is known (the
        caller still delivers it: a duplicate post is harmless).

        ``scheduled``: when the caller sends this record itself (read live: the outbox
        posts it), so the next re-send is one interval later; None (rebuilt at start):
        due for a re-send at once.
        """
        closed = self._closed.get(fingerprint)
        if closed is not None and sequence <= closed:
            return False
        firing = self._by_partition.setdefault(partition, {})
        known = firing.get(fingerprint)
        if known is not None and sequence <= known.sequence:
            return False
        if status == "resolved":
            firing.pop(fingerprint, None)
            self._closed[fingerprint] = sequence
            self._closed.move_to_end(fingerprint)
            while len(self._closed) > self.closed_memory:
                self._closed.popitem(last=False)
        else:
            last = known.last_sent if known is not None else None
            firing[fingerprint] = Entry(sequence, payload, scheduled if scheduled is not None
                                        else last)
        return True

    def due(self, now: float, limit: int | None = None) -> list[tuple[str, P]]:
        """Firing alerts never sent or last sent ``resend_interval_s`` ago or more."""
        out: list[tuple[str, P]] = []
        for firing in self._by_partition.values():
            for fp, e in firing.items():
                if e.last_sent is None or now - e.last_sent >= self.resend_interval_s:
                    out.append((fp, e.payload))
                    if limit is not None and len(out) >= limit:
                        return out
        return out

    def next_due(self) -> float | None:
        """When the next re-send falls due (None: nothing firing; -inf: one never sent)."""
        times = [float("-inf") if e.last_sent is None else e.last_sent + self.resend_interval_s
                 for firing in self._by_partition.values() for e in firing.values()]
        return min(times) if times else None

    def sent(self, fingerprints: list[str], now: float) -> None:
        """Alertmanager accepted these (as firing) at ``now``."""
        wanted = set(fingerprints)
        for firing in self._by_partition.values():
            for fp in wanted.intersection(firing):
                firing[fp].last_sent = now

    def forget(self, partition: int, fingerprint: str) -> None:
        """Stop re-sending an alert (Alertmanager rejected it for good: a dead letter)."""
        self._by_partition.get(partition, {}).pop(fingerprint, None)

    def drop_partitions(self, partitions: list[int]) -> None:
        """Partitions this sink no longer owns (rebalance): their new owner re-sends them."""
        for p in partitions:
            self._by_partition.pop(p, None)
