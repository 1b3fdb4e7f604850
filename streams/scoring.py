"""Scoring the audit's alerts against the simulator's ground truth (pure, no Kafka).

An injected (or naturally occurring) inconsistency *should* produce exactly one alert when
its condition held for longer than the rule's grace period, with the episode start the
truth records. Alerts are matched to truth by (rule, subscriber, item, start); recall is
matched / expected, precision is matched / alerts. Episodes whose deadline falls within
``margin`` of the end of the simulated run are left out of both sides: the run stopped
before their outcome was decided.

**Delay beyond grace** is measured on the wall clock: from the moment the information
that the grace period had passed reached Kafka — the CreateTime of the first
``subscriber-state`` record of that subscriber's partition whose event time is at or
past the deadline plus the timer lateness — to the moment a ``read_committed`` consumer
received the alert. In production, with event time close to the wall clock, that is how
long after the grace period a technician sees the alert.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Seen:
    """An alert as a consumer received it."""

    arrival_ms: float
    fingerprint: str
    sequence: int
    status: str
    rule: str
    subscriber: str
    item: str | None
    starts_ms: int
    ends_ms: int | None


@dataclass
class RuleScore:
    expected: int = 0
    alerts: int = 0
    matched: int = 0
    resolved_expected: int = 0
    resolved_ok: int = 0
    delays_ms: list[float] = field(default_factory=list)
    #: (delay ms, subscriber, due ms, moment the clock passed it, arrival) of each alert
    slowest: list[tuple[float, str, int, float, float]] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.matched / self.expected if self.expected else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.alerts if self.alerts else 1.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile.

    >>> percentile([1, 2, 3, 4], 0.5), percentile([], 0.5)
    (2, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


class ClockIndex:
    """Per partition, (event time, Kafka CreateTime) of every subscriber-state record."""

    def __init__(self) -> None:
        self.events: dict[int, list[tuple[int, float]]] = {}
        self.partition_of: dict[str, int] = {}

    def add(self, partition: int, key: str, event_ms: int, create_ms: float) -> None:
        self.events.setdefault(partition, []).append((event_ms, create_ms))
        self.partition_of[key] = partition

    def freeze(self) -> None:
        """Make the per-partition lists answer 'first record at or past t'."""
        for p, evs in self.events.items():
            running: list[tuple[int, float]] = []
            high = -1
            for event_ms, create_ms in evs:  # in offset order: the clock is a running max
                if event_ms > high:
                    high = event_ms
                    running.append((event_ms, create_ms))
            self.events[p] = running

    def passed_at(self, subscriber: str, instant_ms: int) -> float | None:
        """CreateTime of the record that first moved the partition's clock to ``instant_ms``."""
        p = self.partition_of.get(subscriber)
        if p is None:
            return None
        evs = self.events[p]
        i = bisect.bisect_left(evs, (instant_ms, float("-inf")))
        return evs[i][1] if i < len(evs) else None


def score(
    truth: Iterable[Any],
    alerts: Iterable[Seen],
    grace_ms: Mapping[str, int],
    *,
    horizon_end_ms: int,
    margin_ms: int,
    lateness_ms: int,
    clock: ClockIndex | None = None,
) -> dict[str, RuleScore]:
    """Per-rule scores; ``truth`` holds the simulator's ``Inconsistency`` records."""
    scores = {rule: RuleScore() for rule in grace_ms}
    expected: dict[tuple[str, str, str | None, int], Any] = {}
    undecided: set[tuple[str, str, str | None, int]] = set()
    for t in truth:
        if t.rule not in grace_ms:
            continue
        start = _ms(t.start)
        end = _ms(t.end) if t.end is not None else None
        due = start + grace_ms[t.rule]
        key = (t.rule, t.subscriber_id, t.item, start)
        if end is not None and end - start <= grace_ms[t.rule]:
            continue  # cleared within its grace: must not alert
        if due + lateness_ms > horizon_end_ms - margin_ms:
            undecided.add(key)
            continue
        expected[key] = t
        scores[t.rule].expected += 1
    firsts: dict[str, Seen] = {}
    resolved: dict[str, Seen] = {}
    for a in alerts:
        if a.status == "resolved":
            resolved.setdefault(a.fingerprint, a)
        elif a.sequence == 1:
            firsts.setdefault(a.fingerprint, a)
    for fp, a in firsts.items():
        key = (a.rule, a.subscriber, a.item, a.starts_ms)
        if key in undecided or a.rule not in scores:
            continue
        s = scores[a.rule]
        s.alerts += 1
        t = expected.get(key)
        if t is None:
            continue
        s.matched += 1
        if clock is not None:
            due = a.starts_ms + grace_ms[a.rule]
            passed = clock.passed_at(a.subscriber, due + lateness_ms)
            if passed is not None:
                delay = max(0.0, a.arrival_ms - passed)
                s.delays_ms.append(delay)
                s.slowest.append((delay, a.subscriber, due, passed, a.arrival_ms))
        if t.end is not None and _ms(t.end) + lateness_ms <= horizon_end_ms - margin_ms:
            s.resolved_expected += 1
            r = resolved.get(fp)
            if r is not None and r.ends_ms == _ms(t.end):
                s.resolved_ok += 1
    return scores


def totals(scores: Mapping[str, RuleScore]) -> RuleScore:
    out = RuleScore()
    for s in scores.values():
        out.expected += s.expected
        out.alerts += s.alerts
        out.matched += s.matched
        out.resolved_expected += s.resolved_expected
        out.resolved_ok += s.resolved_ok
        out.delays_ms.extend(s.delays_ms)
        out.slowest.extend(s.slowest)
    out.slowest.sort(reverse=True)
    return out


def table(scores: Mapping[str, RuleScore]) -> str:
    """The per-rule report a reader understands."""
    head = (f"{'rule':30s} {'expected':>8s} {'alerts':>7s} {'matched':>7s} {'recall':>7s} "
            f"{'precision':>9s} {'resolved':>9s} {'p50 delay':>9s} {'p99 delay':>9s}")
    rows = [head, "-" * len(head)]
    for rule, s in [*sorted(scores.items()), ("ALL", totals(scores))]:
        p50, p99 = percentile(s.delays_ms, 0.5), percentile(s.delays_ms, 0.99)
        rows.append(
            f"{rule:30s} {s.expected:8d} {s.alerts:7d} {s.matched:7d} {s.recall:7.2%} "
            f"{s.precision:9.2%} {s.resolved_ok:4d}/{s.resolved_expected:<4d} "
            f"{_sec(p50):>9s} {_sec(p99):>9s}")
    return "\n".join(rows)


def _sec(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"


def _ms(dt: Any) -> int:
    return int(dt.timestamp() * 1000)
