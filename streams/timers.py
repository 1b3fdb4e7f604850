"""Event-time clocks and timers per partition, for grace periods and deadlines.

A partition's clock is the highest event time seen on it (a watermark): replays and fast
simulations keep their own notion of time, and a late event never moves time backwards.

A live partition that receives nothing would never see its deadlines pass, so after
``idle_ms`` of wall-clock silence its clock follows the wall clock, keeping the delay its
events had (Flink calls this idleness) -- but **only while it is live**: when its last
event was dated within ``live_ms`` of the wall clock it arrived at. Replays of old data,
recordings and accelerated simulations run on event time alone, so the same input gives
the same alerts however long the worker sat idle. What still depends on wall time, by
design: on live traffic, a deadline on a silent partition is judged when the wall clock
says it passed (in production that is the truth: the condition did hold that long).
Following the wall clock changes nothing durable by itself: the clock is persisted with
the next commit that has something to commit (an event, or a timer that fired), so an
idle worker writes nothing. Timers are ``(step, key) -> due`` entries kept in a heap with
lazy deletion; they are changelogged by the unit so they survive restarts.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class PartitionTimers:
    """Clock and pending timers of one partition.

    The clock only follows the topics that timed steps consume (``observe`` is called for
    those only), and with several such topics it is the *minimum* of their highest event
    times, so how the consumer happens to interleave topics never fires a timer early.
    A timer is due once the clock is ``lateness`` past it: reports up to that late are
    still judged in event-time order.

    >>> t = PartitionTimers(lateness=100)
    >>> t.observe("subscriber-state", 1_000, wall_ms=0)
    >>> t.set("audit", "S1", 1_500)
    True
    >>> t.observe("subscriber-state", 1_550, wall_ms=10)
    >>> list(t.due())
    []
    >>> t.observe("subscriber-state", 1_600, wall_ms=20)
    >>> list(t.due())
    [('audit', 'S1', 1500)]
    """

    lateness: int = 0
    clock: int = 0
    wall_seen: int = 0
    #: how far the clock lagged the wall clock when the last event arrived
    lag: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    wall_by_topic: dict[str, int] = field(default_factory=dict)
    due_at: dict[tuple[str, str], int] = field(default_factory=dict)
    heap: list[tuple[int, str, str]] = field(default_factory=list)

    def observe(self, topic: str, event_ms: int, wall_ms: int) -> None:
        """An event of ``topic`` with time ``event_ms`` arrived at wall time ``wall_ms``."""
        seen = self.seen
        if event_ms > seen.get(topic, -1):
            seen[topic] = event_ms
        self.wall_by_topic[topic] = wall_ms
        self.wall_seen = wall_ms
        low = min(seen.values()) if len(seen) > 1 else seen[topic]
        if low > self.clock:
            self.clock = low
        self.lag = wall_ms - self.clock

    def ready(self) -> bool:
        """True when the earliest timer is due (one comparison: called after every event)."""
        heap = self.heap
        return bool(heap) and heap[0][0] <= self.clock - self.lateness

    def advance_idle(self, wall_ms: int, idle_ms: int, live_ms: int) -> None:
        """Let time pass on a partition whose inputs have been silent for ``idle_ms``.

        A silent topic stops holding the clock back; when all are silent and the partition
        is live (its last event lagged the wall clock by at most ``live_ms``), the clock
        follows the wall clock with that lag, from ``idle_ms`` after the last event.
        Idempotent: the result depends on ``wall_ms`` only, not on how often it is called.

        >>> t = PartitionTimers()
        >>> t.observe("subscriber-state", 1_000_000, wall_ms=1_000_500)
        >>> t.advance_idle(1_010_500, idle_ms=5_000, live_ms=300_000); t.clock
        1005000
        >>> old = PartitionTimers()
        >>> old.observe("subscriber-state", 1_000, wall_ms=1_000_500)  # a replay of old data
        >>> old.advance_idle(1_010_500, idle_ms=5_000, live_ms=300_000); old.clock
        1000
        """
        for topic, wall in list(self.wall_by_topic.items()):
            if wall_ms - wall > idle_ms and len(self.seen) > 1:
                self.seen.pop(topic, None)
                self.wall_by_topic.pop(topic, None)
        if self.seen:
            low = min(self.seen.values())
            if low > self.clock:
                self.clock = low
        if self.wall_seen and wall_ms - self.wall_seen > idle_ms and abs(self.lag) <= live_ms:
            target = wall_ms - self.lag - idle_ms
            if target > self.clock:
                self.clock = target

    def get(self, step: str, key: str) -> int | None:
        return self.due_at.get((step, key))

    def set(self, step: str, key: str, due: int | None) -> bool:
        """Schedule (or with ``None`` cancel); True if anything changed."""
        k = (step, key)
        old = self.due_at.get(k)
        if old == due:
            return False
        if due is None:
            del self.due_at[k]
        else:
            self.due_at[k] = due
            heapq.heappush(self.heap, (due, step, key))
        return True

    def due(self) -> Iterator[tuple[str, str, int]]:
        """Pop timers due at the current clock (each once), earliest first."""
        heap = self.heap
        limit = self.clock - self.lateness
        while heap and heap[0][0] <= limit:
            due, step, key = heapq.heappop(heap)
            if self.due_at.get((step, key)) == due:
                del self.due_at[(step, key)]
                yield step, key, due

    def load(self, entries: Iterable[tuple[str, str, int]]) -> None:
        for step, key, due in entries:
            self.set(step, key, due)


TIMER_SEP = "\x1f"


def timer_key(step: str, key: str) -> str:
    """Key of a timer in the changelogged timers table."""
    return f"{step}{TIMER_SEP}{key}"


def split_timer_key(raw: str) -> tuple[str, str]:
    step, _, key = raw.partition(TIMER_SEP)
    return step, key
