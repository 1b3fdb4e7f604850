"""Normal life of a subscriber as the operator's systems record it (``subscriber-state``).

Each flow is a chain of actions with realistic lags between systems: BSS sells a product,
its platform provisions it seconds to a couple of minutes later, billing charges it; BSS
suspends for arrears, HSS bars a little later; a top-up resumes BSS, then billing, then HSS.
Those lags are the benign, short-lived inconsistencies the audit must *not* alert on. A
subscriber in the middle of a multi-step flow is ``lock``-ed so no other flow (or fault
injection) interleaves a contradictory step.
"""

from __future__ import annotations

import random
from typing import Any

from streams.simulator import catalog as cat
from streams.simulator.clock import iso
from streams.simulator.engine import Engine
from streams.simulator.population import Population, Sub, ms_between, new_subscriber, pick_where
from streams.simulator.systems import Systems


def _usable(sub: Sub) -> bool:
    return sub.usable


def _usable_free(sub: Sub) -> bool:
    return sub.usable and not sub.story


class StateFlows:
    """Schedules and runs the normal state-changing flows."""

    def __init__(self, eng: Engine, sys: Systems, pop: Population, rng: random.Random) -> None:
        self.eng = eng
        self.sys = sys
        self.pop = pop
        self.rng = rng

    def start(self) -> None:
        """Schedule the normal flows; customers suspended at the start pay up later."""
        n = len(self.pop.subs)
        rates = cat.RATES_PER_SUB_DAY
        every = self.eng.every
        for name, fn, diurnal in (
            ("product_order", self.product_order, True),
            ("product_cancel", self.product_cancel, True),
            ("usage_charge", self.usage_charge, False),
            ("monthly_bill", self.monthly_bill, False),
            ("top_up", self.top_up, True),
            ("balance_report", self.balance_report, False),
            ("plan_change", self.plan_change, True),
            ("grant", self.grant, True),
            ("profile_change", self.profile_change, True),
            ("arrears", self.arrears, False),
            ("request_suspension", self.request_suspension, True),
            ("new_subscriber", self.new_subscriber, True),
            ("port_out", self.port_out_flow, True),
        ):
            every(rates[name] * n, fn, self.rng, diurnal)
        # Customers already suspended for arrears at the start pay up over the first hours.
        for sub in self.pop.subs:
            if sub.bss == "suspended" and self.rng.random() < 0.8:
                sub.lock += 1
                self.eng.at(self.eng.now + ms_between(self.rng, 60, 8 * 3600),
                            self._arrears_top_up, sub)

    def _pick(self, ok: Any = _usable) -> Sub | None:
        return pick_where(self.rng, self.pop.subs, ok)

    # --- products ---------------------------------------------------------------------
    def product_order(self, t: int) -> None:
        """BSS sells a product; its platform provisions it 2 s to 4 min later."""
        sub = self._pick()
        if sub is None:
            return
        product = self.rng.choices(cat.PRODUCTS, weights=[p.weight for p in cat.PRODUCTS])[0]
        if product.product_id in sub.products:
            return
        self.sys.ordered(sub, product)
        delay = min(int(self.rng.lognormvariate(3.2, 0.8) * 1000) + 2000, 240_000)
        self.eng.at(t + delay, self._provision, sub, product)

    def _provision(self, t: int, sub: Sub, product: cat.Product) -> None:
        state = sub.products.get(product.product_id)
        if state is None or not state[0] or state[1]:
            return
        self.sys.provisioned(sub, product, True)
        if product.monthly_fee_cents and self.rng.random() < 0.8:
            self.eng.at(t + ms_between(self.rng, 30, 300), self._first_charge, sub, product)

    def _first_charge(self, t: int, sub: Sub, product: cat.Product) -> None:
        state = sub.products.get(product.product_id)
        if state and state[0] and sub.bss == "active":
            self.sys.charge(sub, product.product_id, product.monthly_fee_cents)

    def product_cancel(self, t: int) -> None:
        """BSS cancels a provisioned product; the platform switches it off shortly after."""
        sub = self._pick(lambda s: s.usable and any(v[0] and v[1] for v in s.products.values()))
        if sub is None:
            return
        held = sorted(pid for pid, v in sub.products.items() if v[0] and v[1])
        product = cat.PRODUCT_BY_ID[self.rng.choice(held)]
        self.sys.cancelled(sub, product)
        delay = min(int(self.rng.lognormvariate(3.0, 0.8) * 1000) + 2000, 240_000)
        self.eng.at(t + delay, self._deprovision, sub, product)

    def _deprovision(self, t: int, sub: Sub, product: cat.Product) -> None:
        state = sub.products.get(product.product_id)
        if state is not None and not state[0] and state[1]:
            self.sys.provisioned(sub, product, False)

    # --- money ------------------------------------------------------------------------
    def usage_charge(self, t: int) -> None:
        """Daily usage settlement, never more than the balance (no accidental arrears)."""
        sub = self._pick(lambda s: s.usable and s.balance > 0)
        if sub is not None:
            self.sys.charge(sub, "usage", min(sub.balance, self.rng.randint(20, 1500)))

    def monthly_bill(self, t: int) -> None:
        """Plan and product fees; a bill larger than the balance leads to arrears."""
        sub = self._pick()
        if sub is None:
            return
        self.sys.charge(sub, "plan", cat.PLAN_BY_ID[sub.plan].monthly_fee_cents)
        for pid in sorted(sub.products):
            ordered, _ = sub.products[pid]
            fee = cat.PRODUCT_BY_ID[pid].monthly_fee_cents
            if ordered and fee:
                self.sys.charge(sub, pid, fee)
        if sub.balance < 0:
            self._into_arrears(t, sub)

    def top_up(self, t: int) -> None:
        """充值, mostly by customers whose balance runs low."""
        sub = self._pick()
        if sub is not None and (sub.balance < 3000 or self.rng.random() < 0.25):
            amount = self.rng.choice((3000, 5000, 10_000, 10_000, 20_000, 30_000, 50_000))
            self.sys.top_up(sub, amount, self.rng.choice(cat.TOPUP_CHANNELS))

    def balance_report(self, t: int) -> None:
        """Billing's periodic balance and arrears view."""
        sub = self._pick(lambda s: s.billing in ("active", "suspended"))
        if sub is not None:
            self.sys.balance(sub)

    def grant(self, t: int) -> None:
        """BSS promises a grant, billing credits it well before ``due_by``."""
        sub = self._pick()
        if sub is None:
            return
        gid = self.eng.next_id("G")
        due = t + ms_between(self.rng, 1800, 6 * 3600)
        self.sys.grant_promised(sub, gid, self.rng.choice((500, 1000, 2000, 5000)), due)
        credit_at = t + int((due - t) * self.rng.uniform(0.02, 0.8))
        self.eng.at(credit_at, self._credit, sub, gid)

    def _credit(self, t: int, sub: Sub, gid: str) -> None:
        self.sys.grant_credited(sub, gid)

    # --- arrears ----------------------------------------------------------------------
    def arrears(self, t: int) -> None:
        """A bill larger than the balance: the usual road to 欠费停机."""
        sub = self._pick()
        if sub is None:
            return
        self.sys.charge(sub, "plan", cat.PLAN_BY_ID[sub.plan].monthly_fee_cents)
        if sub.balance >= 0:
            self.sys.charge(sub, "usage", sub.balance + self.rng.randint(100, 3000))
        self._into_arrears(t, sub)

    def _into_arrears(self, t: int, sub: Sub, hss_follows: bool = True,
                      recover: bool = True) -> None:
        sub.lock += 1
        self.eng.at(t + 1000, self._balance, sub)
        when = t + ms_between(self.rng, 120, 900)
        self.eng.at(when, self._suspend, sub, "arrears", hss_follows, recover)

    def _balance(self, t: int, sub: Sub) -> None:
        self.sys.balance(sub)

    def _suspend(self, t: int, sub: Sub, reason: str, hss_follows: bool, recover: bool) -> None:
        self.sys.status(sub, "bss", "suspended", reason)
        self.eng.at(t + ms_between(self.rng, 0, 5), self._billing, sub, "suspended", reason)
        if hss_follows:
            self.eng.at(t + ms_between(self.rng, 10, 90), self._hss, sub, "suspended", reason)
        if recover and reason == "arrears" and self.rng.random() < 0.85:
            self.eng.at(t + ms_between(self.rng, 1200, 12 * 3600), self._arrears_top_up, sub,
                        True)
        elif recover and reason == "request":
            self.eng.at(t + ms_between(self.rng, 2 * 3600, 48 * 3600), self._resume, sub, True)

    def _billing(self, t: int, sub: Sub, kind: str, reason: str | None) -> None:
        self.sys.status(sub, "billing", kind, reason)

    def _hss(self, t: int, sub: Sub, kind: str, reason: str | None) -> None:
        self.sys.status(sub, "hss", kind, reason)

    def _arrears_top_up(self, t: int, sub: Sub, resume: bool = True) -> None:
        amount = -sub.balance + self.rng.choice((1000, 3000, 5000, 10_000))
        self.sys.top_up(sub, amount, self.rng.choice(cat.TOPUP_CHANNELS))
        if resume:
            self.eng.at(t + ms_between(self.rng, 20, 180), self._resume, sub, True)
        # resume=False: a fault injector decided BSS will not resume (topup-still-suspended)

    def _resume(self, t: int, sub: Sub, unlock: bool, hss_follows: bool = True) -> None:
        self.sys.status(sub, "bss", "resumed")
        self.eng.at(t + ms_between(self.rng, 0, 5), self._billing, sub, "resumed", None)
        if hss_follows:
            self.eng.at(t + ms_between(self.rng, 10, 90), self._hss_resume, sub, unlock)
        elif unlock:
            sub.lock -= 1

    def _hss_resume(self, t: int, sub: Sub, unlock: bool) -> None:
        self.sys.status(sub, "hss", "resumed")
        if unlock:
            sub.lock -= 1

    def request_suspension(self, t: int) -> None:
        """报停: the customer suspends the line for a while (travel, second phone)."""
        sub = self._pick()
        if sub is not None:
            sub.lock += 1
            self._suspend(t, sub, "request", True, True)

    # --- plans, profile ---------------------------------------------------------------
    def plan_change(self, t: int) -> None:
        """套餐变更; HSS follows with the new plan's signing 20 s to 5 min later."""
        sub = self._pick()
        if sub is None:
            return
        plan = self.rng.choice([p for p in cat.PLANS if p.plan_id != sub.plan])
        self.sys.plan_changed(sub, plan.plan_id)
        if tuple(plan.networks) != sub.signing:
            sub.lock += 1
            self.eng.at(t + ms_between(self.rng, 20, 300), self._sign, sub)

    def _sign(self, t: int, sub: Sub) -> None:
        self.sys.signing(sub, cat.PLAN_BY_ID[sub.plan].networks)
        sub.lock -= 1

    def profile_change(self, t: int) -> None:
        """Star level, home cell, do-not-disturb or seed flag changes in the CRM."""
        sub = self._pick()
        if sub is None:
            return
        what = self.rng.choices(("star", "home", "dnd", "seed"), weights=(5, 3, 1, 1))[0]
        if what == "star":
            sub.star = min(7, max(0, sub.star + self.rng.choice((-1, 1))))
            sub.tier = cat.TIER_BY_STAR[sub.star]
            self.sys.profile(sub, star_level=sub.star, value_tier=sub.tier)
        elif what == "home":
            sub.home = self.pop.cells[self.rng.randrange(len(self.pop.cells))]
            self.sys.profile(sub, home_cell=sub.home.cell_id)
        elif what == "dnd":
            sub.dnd = not sub.dnd
            self.sys.profile(sub, do_not_disturb=sub.dnd)
        else:
            sub.seed = not sub.seed if sub.star >= 3 else False
            self.sys.profile(sub, seed_user=sub.seed)

    # --- joining and leaving ----------------------------------------------------------
    def new_subscriber(self, t: int, register_after_s: float | None = None) -> Sub:
        """开户 → 激活 → 入网: BSS and HSS open, activate, then the phone registers."""
        sub = new_subscriber(self.rng, self.pop)
        sub.lock += 1
        self.sys.opened(sub, "bss")
        self.sys.profile(sub, star_level=sub.star, seed_user=sub.seed, value_tier=sub.tier,
                         home_cell=sub.home.cell_id if sub.home else None,
                         do_not_disturb=sub.dnd)
        self.eng.at(t + ms_between(self.rng, 2, 20), self._hss_open, sub)
        activate = t + ms_between(self.rng, 30, 120)
        self.eng.at(activate, self._activate, sub, register_after_s)
        return sub

    def _hss_open(self, t: int, sub: Sub) -> None:
        self.sys.opened(sub, "hss")
        self.sys.signing(sub, cat.PLAN_BY_ID[sub.plan].networks)

    def _activate(self, t: int, sub: Sub, register_after_s: float | None) -> None:
        self.sys.status(sub, "bss", "activated")
        self.sys.status(sub, "billing", "activated")
        opening_credit, sub.balance = sub.balance, 0
        self.sys.top_up(sub, opening_credit, "store")
        self.eng.at(t + ms_between(self.rng, 5, 60), self._hss, sub, "activated", None)
        if register_after_s is None:
            register_after_s = self.rng.uniform(60, 40 * 60)
        if register_after_s > 0:
            self.eng.at(t + int(register_after_s * 1000), self._register, sub)

    def _register(self, t: int, sub: Sub) -> None:
        if not sub.registered:
            rat = "5g" if "5g" in sub.signing and self.rng.random() < 0.7 else "4g"
            self.sys.registered(sub, rat)
            sub.lock -= 1

    def port_out_flow(self, t: int) -> None:
        """An ordinary port-out, executed on time (a churn without a story)."""
        sub = self._pick(_usable_free)
        if sub is not None:
            self.port_out(t, sub, [])

    def port_out(self, t: int, sub: Sub, precursors: list[dict[str, Any]],
                 variant: str | None = None, fix_after_s: float | None = None,
                 deadline: int | None = None) -> None:
        """携号转网: MNP request with a deadline, then BSS, billing and HSS close before it.

        ``variant`` (fault injection): ``not_executed`` leaves every system active past
        the deadline, ``hss_left_active`` closes BSS and billing but not HSS. With
        ``fix_after_s`` the missing closures happen that long after the deadline.
        """
        sub.lock += 1
        deadline = deadline or t + ms_between(self.rng, 2 * 3600, 6 * 3600)
        self.sys.port_out_requested(sub, deadline, self.rng.choice(("cmcc", "ctcc", "cbn")))
        self.eng.truth.write({"type": "churn", "subscriber_id": sub.sid, "port_out_at": iso(t),
                              "precursors": precursors})
        close_at = t + int((deadline - t) * self.rng.uniform(0.4, 0.85))
        late = deadline + int(fix_after_s * 1000) if fix_after_s is not None else None
        if variant == "not_executed":
            if late is not None:
                self.eng.at(late, self._close, sub, True)
        elif variant == "hss_left_active":
            self.eng.at(close_at, self._close, sub, False)
            if late is not None:
                self.eng.at(late, self._hss, sub, "closed", None)
        else:
            self.eng.at(close_at, self._close, sub, True)

    def _close(self, t: int, sub: Sub, hss_follows: bool) -> None:
        self.sys.status(sub, "bss", "closed")
        self.eng.at(t + ms_between(self.rng, 0, 5), self._billing, sub, "closed", None)
        if hss_follows:
            self.eng.at(t + ms_between(self.rng, 10, 90), self._hss, sub, "closed", None)
