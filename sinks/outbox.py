"""What is waiting to reach Alertmanager, in order, with the retry policy: pure, no I/O.

The consumer adds records as it reads them; the sink posts the head batch; the outbox says
what to commit once Alertmanager accepted it, when to try again if it did not, and which
records to give up on. The rules:

* **Order and offsets.** Batches leave in the order records were read; a batch's offsets
  are committed only after a 2xx, so a crash at any point redelivers, never loses.
* **Bounded.** At ``capacity`` records :attr:`Outbox.full` is true and the consumer stops
  reading (pauses its partitions): backpressure, never a dropped alert.
* **Unavailable** (connection error, timeout, 5xx, 429): the same batch again after an
  exponential back-off (``initial_s`` doubling to ``max_s``), forever: an Alertmanager
  down for a minute costs a minute of delay and nothing else.
* **Rejected** (another 4xx: Alertmanager says the request itself is wrong): a batch of
  several is split into single alerts so one bad alert holds back no good one; a single
  alert rejected ``reject_attempts`` times is given up on: the sink writes it to
  ``dead-letters`` and commits past it.

>>> b = Backoff(initial_s=0.5, max_s=4.0)
>>> [b.delay(n) for n in range(1, 7)]
[0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt ``n + 1`` after ``n`` failed attempts (capped exponential)."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.max_s, self.initial_s * self.factor ** (failures - 1))


@dataclass(frozen=True)
class Pending:
    """One record of the input topic on its way out."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    alert: Any  # the parsed record; None: not a valid alert (a dead letter without a post)
    error: Any = None  # why not (a streams.decoding.Rejected)


@dataclass
class Batch:
    items: list[Pending]
    failures: int = 0
    not_before: float = 0.0
    last_error: str = ""


@dataclass
class Outcome:
    """What the sink must do after a post: commit offsets, write dead letters."""

    commit: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    dead: list[tuple[Pending, str]] = field(default_factory=list)
    retry_in: float | None = None


def transient(status: int) -> bool:
    """Connection errors (status 0), timeouts, throttling and server errors: try again."""
    return status == 0 or status == 408 or status == 429 or status >= 500


class Outbox:
    def __init__(self, capacity: int = 10_000, batch_size: int = 500,
                 backoff: Backoff | None = None, reject_attempts: int = 3) -> None:
        self.capacity = capacity
        self.batch_size = batch_size
        self.backoff = backoff or Backoff()
        self.reject_attempts = reject_attempts
        self._queue: deque[Pending] = deque()
        self._head: Batch | None = None
        self._solo = 0  # this many next batches hold one record (isolating a rejection)

    def __len__(self) -> int:
        return len(self._queue) + (len(self._head.items) if self._head else 0)

    @property
    def full(self) -> bool:
        return len(self) >= self.capacity

    def add(self, item: Pending) -> None:
        self._queue.append(item)

    def invalid(self) -> list[Pending]:
        """Records at the head that are not alerts at all: dead letters without a post.
        Removed from the queue; the caller writes them, then commits :meth:`commit_for`."""
        out = []
        while self._head is None and self._queue and self._queue[0].alert is None:
            out.append(self._queue.popleft())
        return out

    def next_batch(self, now: float) -> Batch | None:
        """The batch to post now, or None (empty, or waiting for its back-off)."""
        if self._head is None:
            items: list[Pending] = []
            size = 1 if self._solo else self.batch_size
            self._solo = max(0, self._solo - 1)
            while self._queue and len(items) < size and self._queue[0].alert is not None:
                items.append(self._queue.popleft())
            if not items:
                return None
            self._head = Batch(items)
        if now < self._head.not_before:
            return None
        return self._head

    def wake_at(self) -> float | None:
        """When the head batch may be tried again (None: no batch waiting)."""
        return self._head.not_before if self._head else None

    def accepted(self) -> Outcome:
        """Alertmanager answered 2xx to the head batch."""
        assert self._head is not None
        items, self._head = self._head.items, None
        return Outcome(commit=commit_for(items))

    def failed(self, status: int, error: str, now: float) -> Outcome:
        """The head batch was not accepted (``status`` 0: no HTTP answer)."""
        head = self._head
        assert head is not None
        head.last_error = error
        if not transient(status) and len(head.items) > 1:
            # isolate the bad one(s): singles go first, in order, each with a fresh count
            self._head = Batch([head.items[0]])
            self._queue.extendleft(reversed(head.items[1:]))
            self._solo = len(head.items) - 1
            return Outcome(retry_in=0.0)
        head.failures += 1
        if not transient(status) and head.failures >= self.reject_attempts:
            self._head = None
            return Outcome(commit=commit_for(head.items),
                           dead=[(it, f"Alertmanager rejected it {head.failures} times "
                                  f"(HTTP {status}): {error}") for it in head.items])
        delay = self.backoff.delay(head.failures)
        head.not_before = now + delay
        return Outcome(retry_in=delay)

    def drop_partitions(self, partitions: list[int]) -> None:
        """Partitions revoked: their records will be read again by the new owner."""
        gone = set(partitions)
        self._queue = deque(p for p in self._queue if p.partition not in gone)
        if self._head is not None:
            kept = [p for p in self._head.items if p.partition not in gone]
            self._head = Batch(kept, self._head.failures, self._head.not_before) if kept else None


def commit_for(items: list[Pending]) -> dict[int, int]:
    """Offsets to commit after ``items`` (Kafka's convention: the next offset to read).

    >>> commit_for([Pending(0, 5, None, b"", 1), Pending(1, 2, None, b"", 1), Pending(0, 7, None, b"", 1)])
    {0: 8, 1: 3}
    """
    out: dict[int, int] = {}
    for it in items:
        out[it.partition] = max(out.get(it.partition, -1), it.offset + 1)
    return out
