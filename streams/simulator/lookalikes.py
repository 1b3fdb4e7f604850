"""Benign look-alikes of every audit fault: conditions that hold, but not for long enough.

For each rule the audit checks, the same facts that make a fault are reported, and then
cleared before any alert is due. The audit must stay silent on all of them; the truth
marks them ``must_fire: false`` with the variant in ``lookalike``:

``clears_within_grace``
    the clearing report comes 10-60% of the grace period after the condition started
    (grace-0 rules: 10-50% of the allowed lateness ``--lateness``), in order.
``same_instant``
    the breaking and the clearing report carry the same event time (a charge and its
    refund, BSS suspension and HSS barring, an order and its provisioning, a grant
    credited exactly at its due time, the HSS closing a ported line at the deadline...),
    delivered in order (``detail.delivery: in_order``) or the clearing report first
    (``clear_first``). The interval has ``end == start``.
``clears_out_of_order``
    the clearing report has its true event time but is sent late (``clear_late``): after
    a report of the same subscriber dated 30-50% of the lateness after it, through the
    engine's late-event mechanism. Grace-0 rules clear 0-25% of the lateness after the
    start; grace rules 5-20% of the lateness *before* the grace period ends, so the report
    that arrives first is already dated past the due instant, by less than the lateness.

Each look-alike takes a subscriber nobody else is working on (``usable``, no story, no
open condition, nothing injected) and holds its ``lock`` until it is over, so no fault,
story or normal flow touches the same subscriber meanwhile: a look-alike never overlaps
a real fault of the same (rule, subscriber, item). Everything a look-alike emits is
exact (no late, duplicated or broken copies), so the stream shows precisely what the
truth says. Variants rotate per rule (so each gets a third), same-instant deliveries
alternate; rates: ``--lookalike-rate`` look-alikes per injected fault (default 1).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from streams.simulator import catalog as cat
from streams.simulator.clock import iso
from streams.simulator.engine import Engine
from streams.simulator.population import Population, Sub, ms_between, new_subscriber, pick_where
from streams.simulator.systems import Systems

KINDS = ("clears_within_grace", "same_instant", "clears_out_of_order")
_PAID = tuple(p for p in cat.PRODUCTS if p.monthly_fee_cents)
_FOUR_G = frozenset(p.plan_id for p in cat.PLANS_4G)

Emit = Callable[[int], None]
After = Callable[[int, Sub], None]


def _free(sub: Sub) -> bool:
    """Nobody works on ``sub``: no lock, story, open condition or pending injection."""
    return sub.usable and not sub.story and not sub.open and not sub.injected


class Lookalikes:
    """``inject(t, rule)`` starts one benign look-alike of ``rule``'s fault."""

    def __init__(self, eng: Engine, sys: Systems, pop: Population, rng: random.Random) -> None:
        self.eng = eng
        self.sys = sys
        self.pop = pop
        self.rng = rng
        self.lateness = eng.cfg.lateness_ms
        self.planned: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        #: look-alikes whose condition never showed (a bug if ever non-zero)
        self.missed: Counter[str] = Counter()
        self._turn: Counter[str] = Counter()

    # --- planning -----------------------------------------------------------------------
    def plan_epoch(self, t: int, horizon_ms: int) -> None:
        """Schedule this epoch's look-alikes, stratified over 3-60% of it like the faults."""
        m = self.eng.cfg.lookalikes_per_epoch
        if not m:
            return
        span = 0.57 * horizon_ms
        for rule in cat.RULES:
            for i in range(m):
                when = t + int(0.03 * horizon_ms + span * (i + self.rng.random()) / m)
                self.eng.at(when, self.inject, rule)

    def inject(self, t: int, rule: str) -> bool:
        """Start the next variant of ``rule``'s look-alike now; False if nobody was free."""
        n = self._turn[rule]
        kind = KINDS[n % len(KINDS)]
        if kind == "same_instant":
            delivery = "in_order" if (n // len(KINDS)) % 2 == 0 else "clear_first"
        else:
            delivery = "in_order" if kind == "clears_within_grace" else "clear_late"
        self.planned[rule] += 1
        method = getattr(self, "_" + rule.replace("-", "_").replace("5g", "five_g"))
        self.eng.exact += 1
        try:
            done = method(t, kind, delivery)
        finally:
            self.eng.exact -= 1
        if not done:
            self.skipped[rule] += 1
            return False
        self._turn[rule] += 1
        return True

    # --- timing -------------------------------------------------------------------------
    def _clear_after(self, rule: str, kind: str) -> int:
        """Milliseconds from the start of the condition to its clearing report."""
        grace, late, rng = cat.GRACE_S[rule] * 1000, self.lateness, self.rng
        if kind == "same_instant":
            return 0
        if kind == "clears_within_grace":
            return max(1, int(rng.uniform(0.1, 0.6) * grace if grace
                              else rng.uniform(0.1, 0.5) * late))
        if grace:   # out of order: just before the due instant, reported after it
            return max(grace // 2, grace - int(rng.uniform(0.05, 0.2) * late))
        return max(1, int(rng.uniform(0.0, 0.25) * late))

    def _lead(self, low_s: float, high_s: float) -> int:
        """Delay of a set-up step, capped at 10% of the epoch (short runs)."""
        high = min(high_s, 0.1 * self.eng.cfg.horizon_s)
        return ms_between(self.rng, min(low_s, high / 2), high)

    def _soon(self) -> int:
        """Delay to a deadline (grant due, port-out): 20 min-2 h, shorter in short runs."""
        horizon = self.eng.cfg.horizon_s
        low = min(1200.0, 0.05 * horizon)
        return ms_between(self.rng, low, max(low, min(2 * 3600.0, 0.2 * horizon)))

    def _at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        """Schedule ``fn(t, *args)``; what it emits is exact (no noise)."""
        self.eng.at(t, self._exactly, fn, args)

    def _exactly(self, t: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.eng.exact += 1
        try:
            fn(t, *args)
        finally:
            self.eng.exact -= 1

    # --- the episode --------------------------------------------------------------------
    def _episode(self, start: int, sub: Sub, rule: str, item: str | None, kind: str,
                 delivery: str, how: str, brk: Emit, clr: Emit,
                 after: After | None = None, *, mark_now: bool = False) -> None:
        """Condition from ``start`` (``brk`` emits what breaks it, at ``start``) to its
        clearing report (``clr``), delivered as ``delivery`` says; then ``after`` and the
        subscriber is unlocked. ``mark_now``: the condition starts by itself at ``start``
        (a deadline), so the key is registered already."""
        key = (rule, item)
        d = self._clear_after(rule, kind)
        end = start + d
        filler = end + int(self.rng.uniform(0.3, 0.5) * self.lateness) \
            if delivery == "clear_late" else None
        how = self._how(how, d, None if filler is None else filler - start, delivery)
        meta: dict[str, Any] = {
            "lookalike": kind, "lookalike_id": self.eng.next_id("LA"), "how": how,
            "delivery": delivery, "clear_at": iso(end),
            **({"clear_sent_after": iso(filler)} if filler is not None else {}),
        }
        if mark_now:
            sub.injected[key] = meta
        same = kind == "same_instant"
        self._at(start, self._break, sub, key, meta, brk, clr, delivery, same)
        if not same:
            self._at(end, self._clear, sub, clr, filler)
        if filler is not None:
            self._at(filler, self._filler, sub)
        done = filler + 1 if filler is not None else end
        self._at(done, self._done, sub, key, after)

    def _break(self, t: int, sub: Sub, key: tuple[str, str | None], meta: dict[str, Any],
               brk: Emit, clr: Emit, delivery: str, same: bool) -> None:
        sub.injected[key] = meta
        m0 = self.eng.mark()
        brk(t)
        if same:
            m1 = self.eng.mark()
            clr(t)
            if delivery == "clear_first":
                self.eng.clear_first(m0, m1)

    def _clear(self, t: int, sub: Sub, clr: Emit, filler: int | None) -> None:
        m = self.eng.mark()
        clr(t)
        if filler is not None:
            self.eng.hold_back(m, filler + 1)

    def _filler(self, t: int, sub: Sub) -> None:
        """A later report of the same subscriber (same partition), sent before the clear."""
        self.sys.balance(sub)

    def _done(self, t: int, sub: Sub, key: tuple[str, str | None], after: After | None) -> None:
        if sub.injected.pop(key, None) is not None:
            self.missed[key[0]] += 1    # the condition never showed: nothing was written
        if after is None:
            sub.lock -= 1
        else:
            after(t, sub)               # unlocks when it is over

    def _resume_later(self, t: int, sub: Sub) -> None:
        """End a requested suspension 10 min-1 h later (all systems at once), unlock."""
        self._at(t + self._lead(600, 3600), self._resume_and_unlock, sub)

    def _resume_and_unlock(self, t: int, sub: Sub) -> None:
        self._resume_all(t, sub)
        sub.lock -= 1

    def _take(self, ok: Callable[[Sub], bool]) -> Sub | None:
        sub = pick_where(self.rng, self.pop.subs, lambda s: _free(s) and ok(s), tries=64)
        if sub is not None:
            sub.lock += 1
        return sub

    @staticmethod
    def _how(what: str, d: int, filler: int | None, delivery: str) -> str:
        if filler is not None:
            return (f"{what}; cleared {d / 1000:.3f} s after it started, that report sent "
                    f"after one dated {(filler - d) / 1000:.3f} s later")
        if d:
            return f"{what}; cleared {d / 1000:.3f} s after it started"
        return f"{what}; at the same instant" + (
            ", the clearing report delivered first" if delivery == "clear_first" else "")

    # --- systems in one go --------------------------------------------------------------
    def _suspend_all(self, t: int, sub: Sub, reason: str) -> None:
        for system in ("bss", "billing", "hss"):
            self.sys.status(sub, system, "suspended", reason)

    def _resume_all(self, t: int, sub: Sub) -> None:
        for system in ("bss", "billing", "hss"):
            self.sys.status(sub, system, "resumed")

    # --- status rules -------------------------------------------------------------------
    def _bss_active_hss_barred(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: s.hss == "active")
        if sub is None:
            return False
        self._suspend_all(t, sub, "request")
        start = t + self._lead(60, 600)

        def brk(at: int) -> None:
            self.sys.status(sub, "bss", "resumed")
            self.sys.status(sub, "billing", "resumed")

        def clr(at: int) -> None:
            self.sys.status(sub, "hss", "resumed")

        self._episode(start, sub, "bss-active-hss-barred", None, kind, delivery,
                      "BSS resumed a requested suspension, HSS un-barred", brk, clr)
        return True

    def _bss_suspended_hss_active(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: s.hss == "active")
        if sub is None:
            return False

        def brk(at: int) -> None:
            self.sys.status(sub, "bss", "suspended", "request")
            self.sys.status(sub, "billing", "suspended", "request")

        def clr(at: int) -> None:
            self.sys.status(sub, "hss", "suspended", "request")

        self._episode(t, sub, "bss-suspended-hss-active", None, kind, delivery,
                      "BSS suspended the line (报停), HSS barred it", brk, clr, self._resume_later)
        return True

    def _topup_still_suspended(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: s.hss == "active")
        if sub is None:
            return False
        self.sys.charge(sub, "plan", max(sub.balance, 0) + self.rng.randint(100, 3000))
        suspend = t + self._lead(30, 300)
        self._at(suspend, self._suspend_all, sub, "arrears")
        start = suspend + self._lead(600, 3600)

        def brk(at: int) -> None:
            amount = -sub.balance + self.rng.choice((1000, 3000, 5000, 10_000))
            self.sys.top_up(sub, amount, self.rng.choice(cat.TOPUP_CHANNELS))

        def clr(at: int) -> None:
            self._resume_all(at, sub)

        self._episode(start, sub, "topup-still-suspended", None, kind, delivery,
                      "top-up cleared the arrears, BSS and HSS resumed", brk, clr)
        return True

    def _five_g_plan_without_five_g_signing(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: s.plan in _FOUR_G and "5g" not in s.signing)
        if sub is None:
            return False
        plan = self.rng.choice(cat.PLANS_5G)

        def brk(at: int) -> None:
            self.sys.plan_changed(sub, plan.plan_id)

        def clr(at: int) -> None:
            self.sys.signing(sub, plan.networks)

        self._episode(t, sub, "5g-plan-without-5g-signing", None, kind, delivery,
                      "upgraded to a 5G plan, HSS signed 5G", brk, clr)
        return True

    def _activated_not_registered(self, t: int, kind: str, delivery: str) -> bool:
        sub = new_subscriber(self.rng, self.pop)
        sub.lock += 1
        self.sys.opened(sub, "bss")
        self.sys.profile(sub, star_level=sub.star, seed_user=sub.seed, value_tier=sub.tier,
                         home_cell=sub.home.cell_id if sub.home else None,
                         do_not_disturb=sub.dnd)
        self._at(t + ms_between(self.rng, 2, 20), self._hss_open, sub)
        start = t + ms_between(self.rng, 30, 120)
        hss_after = ms_between(self.rng, 5, 60)   # well before any registration below

        def brk(at: int) -> None:
            self.sys.status(sub, "bss", "activated")
            self.sys.status(sub, "billing", "activated")
            opening_credit, sub.balance = sub.balance, 0
            self.sys.top_up(sub, opening_credit, "store")
            if kind != "same_instant":
                self._at(at + hss_after, self._hss_active, sub)

        def clr(at: int) -> None:
            if kind == "same_instant":
                self._hss_active(at, sub)
            rat = "5g" if "5g" in sub.signing and self.rng.random() < 0.7 else "4g"
            self.sys.registered(sub, rat)

        self._episode(start, sub, "activated-not-registered", None, kind, delivery,
                      "new line activated, registered on the network", brk, clr)
        return True

    def _hss_open(self, t: int, sub: Sub) -> None:
        self.sys.opened(sub, "hss")
        self.sys.signing(sub, cat.PLAN_BY_ID[sub.plan].networks)

    def _hss_active(self, t: int, sub: Sub) -> None:
        self.sys.status(sub, "hss", "activated")

    def _port_out_still_active(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: s.hss == "active")
        if sub is None:
            return False
        deadline = t + self._soon()
        self.sys.port_out_requested(sub, deadline, self.rng.choice(("cmcc", "ctcc", "cbn")))
        self.eng.truth.write({"type": "churn", "subscriber_id": sub.sid, "port_out_at": iso(t),
                              "precursors": []})

        def close_bss(at: int) -> None:
            self.sys.status(sub, "bss", "closed")
            self.sys.status(sub, "billing", "closed")

        def brk(at: int) -> None:
            if kind == "same_instant":
                close_bss(at)

        def clr(at: int) -> None:
            self.sys.status(sub, "hss", "closed")

        if kind == "same_instant":
            how = "port-out deadline: BSS, billing and HSS closed the line"
        else:
            self._at(deadline - ms_between(self.rng, 5, 60), close_bss)
            how = "port-out: BSS closed the line just before the deadline, HSS after it"
        self._episode(deadline, sub, "port-out-still-active", None, kind, delivery, how,
                      brk, clr, mark_now=True)
        sub.lock += 1   # closed for good: never free again
        return True

    # --- products -----------------------------------------------------------------------
    def _product_not_provisioned(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: len(s.products) < len(cat.PRODUCTS))
        if sub is None:
            return False
        product = self.rng.choice([p for p in cat.PRODUCTS if p.product_id not in sub.products])

        def brk(at: int) -> None:
            self.sys.ordered(sub, product)

        def clr(at: int) -> None:
            self.sys.provisioned(sub, product, True)

        self._episode(t, sub, "product-not-provisioned", product.product_id, kind, delivery,
                      f"ordered in BSS, {product.platform} provisioned it", brk, clr)
        return True

    def _cancelled_still_provisioned(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: any(v[0] and v[1] for v in s.products.values()))
        if sub is None:
            return False
        pid = self.rng.choice(sorted(p for p, v in sub.products.items() if v[0] and v[1]))
        product = cat.PRODUCT_BY_ID[pid]

        def brk(at: int) -> None:
            self.sys.cancelled(sub, product)

        def clr(at: int) -> None:
            self.sys.provisioned(sub, product, False)

        self._episode(t, sub, "cancelled-still-provisioned", pid, kind, delivery,
                      f"cancelled in BSS, {product.platform} switched it off", brk, clr)
        return True

    # --- charges ------------------------------------------------------------------------
    def _charge_episode(self, start: int, sub: Sub, rule: str, item: str, amount: int,
                        kind: str, delivery: str, what: str,
                        after: After | None = None) -> None:
        charge_id = self.eng.next_id("CH")

        def brk(at: int) -> None:
            self.sys.charge(sub, item, amount, charge_id)

        def clr(at: int) -> None:
            self.sys.refund(sub, charge_id, amount)

        self._episode(start, sub, rule, charge_id, kind, delivery,
                      f"{what}, refunded", brk, clr,
                      after)

    def _cancelled_still_charged(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: any(v[0] and v[1] and cat.PRODUCT_BY_ID[p]
                                       .monthly_fee_cents for p, v in s.products.items()))
        if sub is None:
            return False
        pid = self.rng.choice(sorted(p for p, v in sub.products.items() if v[0] and v[1]
                                     and cat.PRODUCT_BY_ID[p].monthly_fee_cents))
        product = cat.PRODUCT_BY_ID[pid]
        self.sys.cancelled(sub, product)
        self._at(t + ms_between(self.rng, 5, 60), self._deprovision, sub, product)
        self._charge_episode(t + self._lead(300, 1800), sub, "cancelled-still-charged", pid,
                             product.monthly_fee_cents, kind, delivery,
                             f"billing charged {pid} after its cancellation")
        return True

    def _deprovision(self, t: int, sub: Sub, product: cat.Product) -> None:
        self.sys.provisioned(sub, product, False)

    def _charged_while_suspended(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: s.hss == "active")
        if sub is None:
            return False
        self._suspend_all(t, sub, "request")
        self._charge_episode(t + self._lead(300, 1800), sub, "charged-while-suspended", "plan",
                             cat.PLAN_BY_ID[sub.plan].monthly_fee_cents, kind, delivery,
                             "monthly fee charged during a requested suspension (报停)",
                             self._resume_later)
        return True

    def _charged_without_product(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: any(p.product_id not in s.ever for p in _PAID))
        if sub is None:
            return False
        product = self.rng.choice([p for p in _PAID if p.product_id not in sub.ever])
        self._charge_episode(t, sub, "charged-without-product", product.product_id,
                             product.monthly_fee_cents, kind, delivery,
                             f"billing charged {product.product_id}, never ordered")
        return True

    # --- grants -------------------------------------------------------------------------
    def _grant_not_credited(self, t: int, kind: str, delivery: str) -> bool:
        sub = self._take(lambda s: True)
        if sub is None:
            return False
        gid = self.eng.next_id("G")
        due = t + self._soon()
        self.sys.grant_promised(sub, gid, self.rng.choice((500, 1000, 2000, 5000)), due)

        def brk(at: int) -> None:
            if kind == "same_instant":
                self.sys.balance(sub)   # billing reports at the due instant, then credits

        def clr(at: int) -> None:
            self.sys.grant_credited(sub, gid)

        how = ("grant due: billing reported the balance and credited it" if kind == "same_instant"
               else "billing credited the grant after its due time")
        self._episode(due, sub, "grant-not-credited", gid, kind, delivery, how, brk, clr,
                      mark_now=True)
        return True
