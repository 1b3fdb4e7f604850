"""Scoring the audit's alerts against the simulator's ground truth (pure, no Kafka).

An injected (or naturally occurring) inconsistency *must* produce exactly one alert when
its condition held for longer than the rule's grace period plus the allowed lateness, with
the episode start the truth records; a **look-alike** (the truth says ``must_fire: false``:
it cleared within the grace, or for ``for: 0s`` rules within the lateness) must produce
none. Intervals in between (held a little longer than the grace, but shorter than grace +
lateness) may go either way and are left out of both sides. Alerts are matched to truth by
(rule, subscriber, item, start); recall is matched / faults, precision is matched / alerts
(an alert on a look-alike, or on nothing, counts against it). Episodes whose deadline falls
within ``margin`` of the end of the simulated run are left out of both sides: the run
stopped before their outcome was decided.

**Delay beyond grace** is measured on the wall clock: from the moment the information that
the grace period had passed reached Kafka — the CreateTime of the first accepted
``subscriber-state`` record of that subscriber's partition whose event time is at or past
the deadline — to the moment a ``read_committed`` consumer received the alert. It
includes the time the watermark needs to pass the deadline (about the lateness in event
time). Records the worker dead-lettered or would reject never move this clock: one broken
record dated hours ahead would otherwise make every later alert look late.

**Hints withdrawn within their settle time**: an agent hint that went out and was
withdrawn (its episode resolved) less than the rule's settle time after the instant it was
allowed to go out (``since + max(for, settle)``), in event time: the customer was told of
a fault that was gone a moment later.
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


@dataclass(frozen=True, slots=True)
class HintSeen:
    """An agent hint as a consumer received it."""

    hint_id: str
    sequence: int
    active: bool
    rule: str
    subscriber: str


@dataclass
class RuleScore:
    expected: int = 0
    lookalikes: int = 0
    alerts: int = 0
    matched: int = 0
    on_lookalikes: int = 0
    resolved_expected: int = 0
    resolved_ok: int = 0
    hints: int = 0
    hints_withdrawn: int = 0
    hints_withdrawn_early: int = 0
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
    """Per partition, (event time, Kafka CreateTime) of every accepted subscriber-state record.

    >>> c = ClockIndex()
    >>> c.add(0, 0, "S1", 1_000, 10.0); c.add(0, 1, "S2", 9_000_000, 11.0)  # broken: rejected
    >>> c.add(0, 2, "S1", 2_000, 12.0); c.reject(0, 1); c.freeze()
    >>> c.passed_at("S1", 1_500)
    12.0
    """

    def __init__(self) -> None:
        self.events: dict[int, list[tuple[int, int, float]]] = {}
        self.partition_of: dict[str, int] = {}
        self.rejected: set[tuple[int, int]] = set()

    def add(self, partition: int, offset: int, key: str, event_ms: int,
            create_ms: float) -> None:
        self.events.setdefault(partition, []).append((offset, event_ms, create_ms))
        self.partition_of[key] = partition

    def reject(self, partition: int, offset: int) -> None:
        """The worker dead-lettered this record: it must not move the clock."""
        self.rejected.add((partition, offset))

    def freeze(self) -> None:
        """Make the per-partition lists answer 'first record at or past t'."""
        rejected = self.rejected
        for p, evs in self.events.items():
            running: list[tuple[int, float]] = []
            high = -1
            for offset, event_ms, create_ms in sorted(evs):  # the clock is a running max
                if (p, offset) in rejected:
                    continue
                if event_ms > high:
                    high = event_ms
                    running.append((event_ms, create_ms))
            self.events[p] = running  # type: ignore[assignment]

    def passed_at(self, subscriber: str, instant_ms: int) -> float | None:
        """CreateTime of the record that first moved the partition's clock to ``instant_ms``."""
        p = self.partition_of.get(subscriber)
        if p is None:
            return None
        evs = self.events[p]
        i = bisect.bisect_left(evs, (instant_ms, float("-inf")))
        return evs[i][1] if i < len(evs) else None


def must_fire(t: Any, grace_ms: int, lateness_ms: int) -> bool | None:
    """Whether truth ``t`` must raise an alert: True, False, or None (either is right).

    The simulator's explicit ``must_fire`` wins; older truth files and natural intervals
    are judged by how long the condition held against the *evaluated* catalog's grace
    (:func:`streams.simulator.truth.must_fire_ms`).

    >>> from types import SimpleNamespace as NS
    >>> from datetime import datetime, timedelta
    >>> t0 = datetime(2026, 1, 1)
    >>> held = lambda s: NS(start=t0, end=t0 + timedelta(seconds=s))
    >>> [must_fire(held(s), 0, 2_000) for s in (0, 1.5, 3)]
    [False, False, True]
    >>> [must_fire(held(s), 300_000, 2_000) for s in (200, 301, 303)]
    [False, None, True]
    """
    explicit = getattr(t, "must_fire", None)
    if explicit is not None:
        return bool(explicit)
    from streams.simulator.truth import must_fire_ms  # one rule for simulator and scorer

    return must_fire_ms(grace_ms, _ms(t.start), None if t.end is None else _ms(t.end),
                        lateness_ms)


def score(
    truth: Iterable[Any],
    alerts: Iterable[Seen],
    grace_ms: Mapping[str, int],
    *,
    horizon_end_ms: int,
    margin_ms: int | Mapping[str, int],
    lateness_ms: int,
    clock: ClockIndex | None = None,
    hints: Iterable[HintSeen] = (),
    settle_ms: Mapping[str, int] | None = None,
) -> dict[str, RuleScore]:
    """Per-rule scores; ``truth`` holds the simulator's ``Inconsistency`` records."""
    scores = {rule: RuleScore() for rule in grace_ms}
    margins = margin_ms if isinstance(margin_ms, Mapping) else dict.fromkeys(grace_ms, margin_ms)
    expected: dict[tuple[str, str, str | None, int], Any] = {}
    lookalike: set[tuple[str, str, str | None, int]] = set()
    undecided: set[tuple[str, str, str | None, int]] = set()
    for t in truth:
        if t.rule not in grace_ms:
            continue
        start = _ms(t.start)
        due = start + grace_ms[t.rule]
        key = (t.rule, t.subscriber_id, t.item, start)
        must = must_fire(t, grace_ms[t.rule], lateness_ms)
        if must is None or due + lateness_ms > horizon_end_ms - margins[t.rule]:
            undecided.add(key)
            continue
        if not must:
            lookalike.add(key)
            scores[t.rule].lookalikes += 1
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
        if key in lookalike:
            s.on_lookalikes += 1
        t = expected.get(key)
        if t is None:
            continue
        s.matched += 1
        if clock is not None:
            due = a.starts_ms + grace_ms[a.rule]
            passed = clock.passed_at(a.subscriber, due)
            if passed is not None:
                delay = max(0.0, a.arrival_ms - passed)
                s.delays_ms.append(delay)
                s.slowest.append((delay, a.subscriber, due, passed, a.arrival_ms))
        if t.end is not None and _ms(t.end) + lateness_ms <= horizon_end_ms - margins[a.rule]:
            s.resolved_expected += 1
            r = resolved.get(fp)
            if r is not None and r.ends_ms == _ms(t.end):
                s.resolved_ok += 1
    _score_hints(scores, hints, firsts, resolved, grace_ms, settle_ms or {}, lateness_ms)
    return scores


def _score_hints(scores: Mapping[str, RuleScore], hints: Iterable[HintSeen],
                 firsts: Mapping[str, Seen], resolved: Mapping[str, Seen],
                 grace_ms: Mapping[str, int], settle_ms: Mapping[str, int],
                 lateness_ms: int) -> None:
    shown: dict[str, HintSeen] = {}
    withdrawn: set[str] = set()
    for h in hints:
        if h.rule not in scores:
            continue
        if h.active:
            shown.setdefault(h.hint_id, h)
        else:
            withdrawn.add(h.hint_id)
    for hid, h in shown.items():
        s = scores[h.rule]
        s.hints += 1
        if hid not in withdrawn:
            continue
        s.hints_withdrawn += 1
        a, r = firsts.get(hid), resolved.get(hid)
        if a is None or r is None or r.ends_ms is None:
            continue
        settle = settle_ms.get(h.rule, lateness_ms)
        allowed = a.starts_ms + max(grace_ms[h.rule], settle)
        if r.ends_ms - allowed < settle:
            s.hints_withdrawn_early += 1


def totals(scores: Mapping[str, RuleScore]) -> RuleScore:
    out = RuleScore()
    for s in scores.values():
        for name in ("expected", "lookalikes", "alerts", "matched", "on_lookalikes",
                     "resolved_expected", "resolved_ok", "hints", "hints_withdrawn",
                     "hints_withdrawn_early"):
            setattr(out, name, getattr(out, name) + getattr(s, name))
        out.delays_ms.extend(s.delays_ms)
        out.slowest.extend(s.slowest)
    out.slowest.sort(reverse=True)
    return out


def table(scores: Mapping[str, RuleScore]) -> str:
    """The per-rule report a reader understands."""
    head = (f"{'rule':28s} {'faults':>6s} {'alike':>5s} {'alerts':>6s} {'on alike':>8s} "
            f"{'recall':>7s} {'precision':>9s} {'resolved':>9s} {'hints':>5s} "
            f"{'withdrawn':>9s} {'early':>5s} {'p50 delay':>9s} {'p99 delay':>9s}")
    rows = [head, "-" * len(head)]
    for rule, s in [*sorted(scores.items()), ("ALL", totals(scores))]:
        p50, p99 = percentile(s.delays_ms, 0.5), percentile(s.delays_ms, 0.99)
        rows.append(
            f"{rule:28s} {s.expected:6d} {s.lookalikes:5d} {s.alerts:6d} {s.on_lookalikes:8d} "
            f"{s.recall:7.2%} {s.precision:9.2%} {s.resolved_ok:4d}/{s.resolved_expected:<4d} "
            f"{s.hints:5d} {s.hints_withdrawn:9d} {s.hints_withdrawn_early:5d} "
            f"{_sec(p50):>9s} {_sec(p99):>9s}")
    return "\n".join(rows)


def targets(scores: Mapping[str, RuleScore], *, lateness_ms: int, recall: float = 0.995,
            precision: float = 0.995, slack_ms: int = 2_000) -> list[str]:
    """Every missed target, as a sentence naming the rule and the figure (empty: all met).

    >>> s = {"a": RuleScore(expected=10, alerts=10, matched=10, delays_ms=[500.0]),
    ...      "b": RuleScore(expected=10, alerts=11, matched=9, hints_withdrawn_early=1),
    ...      "c": RuleScore()}
    >>> for line in targets(s, lateness_ms=2_000): print(line)
    b: recall 90.00% < 99.50%
    b: precision 81.82% < 99.50%
    b: 1 hints withdrawn within their settle time (target 0)
    c: no fault was decided in this run (run longer, or inject more faults): nothing to judge
    """
    missed = []
    for rule, s in sorted(scores.items()):
        if not s.expected:
            missed.append(f"{rule}: no fault was decided in this run (run longer, or inject "
                          "more faults): nothing to judge")
            continue
        if s.recall < recall:
            missed.append(f"{rule}: recall {s.recall:.2%} < {recall:.2%}")
        if s.precision < precision:
            missed.append(f"{rule}: precision {s.precision:.2%} < {precision:.2%}")
        if s.hints_withdrawn_early:
            missed.append(f"{rule}: {s.hints_withdrawn_early} hints withdrawn within their "
                          "settle time (target 0)")
    p99 = percentile(totals(scores).delays_ms, 0.99)
    if p99 is not None and p99 > lateness_ms + slack_ms:
        missed.append(f"delay beyond grace p99 {p99 / 1000:.2f}s > lateness "
                      f"{lateness_ms / 1000:g}s + {slack_ms / 1000:g}s")
    return missed


def _sec(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"


def _ms(dt: Any) -> int:
    return int(dt.timestamp() * 1000)
