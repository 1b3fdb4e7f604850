"""Exact ground truth for the cross-system audit: when each rule's condition held.

After every ``subscriber-state`` event the simulator emits, :meth:`Tracker.check`
re-evaluates the subscriber's conditions from what each system last reported (the same
facts the audit folds into its unified view) and opens or closes intervals. Closed
intervals become ``inconsistency`` truth lines; ones still open at the end of the run are
written with ``end: null``. Charge rules are point conditions: they start at the charge and
end at its refund. Time-triggered rules (grant due, port-out deadline) are checked by an
action scheduled at the deadline.

An interval is ``injected`` when a fault injector registered ``(rule, item)`` for the
subscriber before causing it; everything else is the benign noise of the normal flow.
A look-alike (``streams.simulator.lookalikes``) registers its key the same way, with the
variant under ``"lookalike"``: it is written with ``must_fire: false`` even when it held
for no time at all (a same-instant reversal), where other zero-length intervals are not.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from streams.simulator import catalog as cat
from streams.simulator.clock import iso
from streams.simulator.population import Sub
from streams.simulator.truth import must_fire_ms
from streams.simulator.truthlog import TruthLog

CHARGE_RULES = ("charged-while-suspended", "charged-without-product", "cancelled-still-charged")
STATUS_RULES = frozenset(r for r in cat.RULES if r not in CHARGE_RULES)
_FIVE_G_PLANS = frozenset(p.plan_id for p in cat.PLANS_5G)


def conditions(sub: Sub) -> set[tuple[str, str | None]]:
    """Which status-like rules hold for ``sub`` right now, as ``(rule, item)``."""
    cur: set[tuple[str, str | None]] = set()
    bss, hss = sub.bss, sub.hss
    if bss == "active" and hss == "suspended":
        cur.add(("bss-active-hss-barred", None))
    elif bss in ("suspended", "closed") and hss == "active":
        cur.add(("bss-suspended-hss-active", None))
    for pid, (ordered, provisioned) in sub.products.items():
        if ordered and not provisioned:
            cur.add(("product-not-provisioned", pid))
        elif not ordered and provisioned:
            cur.add(("cancelled-still-provisioned", pid))
    if sub.topup_pending:
        if bss == "suspended" or hss == "suspended":
            cur.add(("topup-still-suspended", None))
        else:
            sub.topup_pending = False
    if sub.plan in _FIVE_G_PLANS and "5g" not in sub.signing:
        cur.add(("5g-plan-without-5g-signing", None))
    if sub.activated and not sub.registered:
        cur.add(("activated-not-registered", None))
    for gid, grant in sub.grants.items():
        if grant[2] and not grant[1]:
            cur.add(("grant-not-credited", gid))
    po = sub.port_out
    if po is not None and po[1] and hss == "active":
        cur.add(("port-out-still-active", None))
    return cur


class Tracker:
    """Opens and closes condition intervals and writes them to the truth log."""

    def __init__(self, truth: TruthLog, lateness_ms: int = 2000) -> None:
        self.truth = truth
        self.lateness_ms = lateness_ms
        #: (rule, "injected" | "lookalike" | "transient") -> intervals written
        self.written: Counter[tuple[str, str]] = Counter()
        #: (rule, look-alike variant) -> look-alike intervals written
        self.lookalikes: Counter[tuple[str, str]] = Counter()

    def check(self, sub: Sub, t: int) -> None:
        """Re-evaluate ``sub``'s status rules after an event at ``t``; open/close intervals."""
        cur = conditions(sub)
        open_ = sub.open
        for key in cur:
            if key not in open_:
                open_[key] = t
        if len(open_) > len(cur):  # something open is no longer current
            # sorted: set order varies with PYTHONHASHSEED, the truth file must not
            for key in sorted((k for k in open_ if k[0] in STATUS_RULES and k not in cur),
                              key=lambda k: (k[0], k[1] or "")):
                self.close(sub, key, t)

    def open_point(self, sub: Sub, rule: str, item: str, t: int) -> None:
        """A charge rule holds from this charge on (grace 0) until a refund."""
        sub.open[(rule, item)] = t

    def close(self, sub: Sub, key: tuple[str, str | None], t: int | None) -> None:
        """End an interval at ``t`` (None: still open at the end of the run) and write it."""
        start = sub.open.pop(key)
        meta = sub.injected.pop(key, None)
        if t is not None and t <= start and (meta is None or "lookalike" not in meta):
            return  # held for no time at all: invisible to any consumer
        self.write(sub, key, start, t, meta)

    def write(self, sub: Sub, key: tuple[str, str | None], start: int, end: int | None,
              meta: dict[str, Any] | None) -> None:
        """One ``inconsistency`` truth line."""
        rule, item = key
        detail = dict(meta) if meta else {}
        lookalike = detail.pop("lookalike", None)
        if lookalike is not None:
            # still open at the end: the run stopped before its clearing report
            fire: bool | None = False if end is not None else None
            self.written[(rule, "lookalike")] += 1
            self.lookalikes[(rule, lookalike)] += 1
        elif meta is not None:
            # an injected fault is built to outlast grace + lateness; say so only if it did
            fire = must_fire_ms(cat.GRACE_S[rule] * 1000, start, end, self.lateness_ms)
            self.written[(rule, "injected")] += 1
        else:
            fire = None    # natural: decided from the interval's length (truth.must_fire)
            self.written[(rule, "transient")] += 1
        self.truth.write({
            "type": "inconsistency", "rule": rule, "subscriber_id": sub.sid, "item": item,
            "start": iso(start), "end": iso(end) if end is not None else None,
            "injected": meta is not None, "detail": detail,
            "must_fire": fire, "lookalike": lookalike,
        })

    def refund(self, sub: Sub, charge_id: str, t: int) -> None:
        """A refund ends every charge rule its charge violated."""
        for rule in CHARGE_RULES:
            if (rule, charge_id) in sub.open:
                self.close(sub, (rule, charge_id), t)

    def has_open_fault(self, sub: Sub, t: int) -> bool:
        """An injected fault has outlived its grace: the audit should be alerting by now."""
        for key, start in sub.open.items():
            meta = sub.injected.get(key)
            if (meta is not None and "lookalike" not in meta
                    and start + cat.GRACE_S[key[0]] * 1000 + 60_000 <= t):
                return True
        return False

    def finish(self, subs: list[Sub]) -> None:
        """Write every interval still open at the end of the run with ``end: null``."""
        for sub in subs:
            for key in sorted(sub.open, key=lambda k: (sub.open[k], k[0], k[1] or "")):
                self.close(sub, key, None)
