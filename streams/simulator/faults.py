"""Deliberate cross-system faults, one injector per audit rule.

An injector picks a subscriber no other flow is working on, registers ``(rule, item)`` as
injected *before* emitting the event that breaks consistency (so the tracker labels the
interval), and holds the subscriber's lock until the fault is fixed. About a third of the
faults are fixed later: status faults well after their grace period (2.5-5x), point
faults (charges, grants, port-out deadlines) 15 minutes to 3 hours after they start.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from streams.simulator import catalog as cat
from streams.simulator.clock import iso
from streams.simulator.engine import Engine
from streams.simulator.flows_state import StateFlows
from streams.simulator.population import Population, Sub, ms_between, pick_where
from streams.simulator.systems import Systems

FIXED_SHARE = 1 / 3
_PAID = tuple(p for p in cat.PRODUCTS if p.monthly_fee_cents)


class Faults:
    """``inject(t, rule)`` breaks one subscriber's consistency for that rule."""

    def __init__(self, eng: Engine, sys: Systems, flows: StateFlows, pop: Population,
                 rng: random.Random) -> None:
        self.eng = eng
        self.sys = sys
        self.flows = flows
        self.pop = pop
        self.rng = rng
        self.planned: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.victims: list[Sub] = []

    # --- entry points -------------------------------------------------------------------
    def planned_inject(self, t: int, rule: str) -> None:
        """Scheduled by the director: a fault on whoever is eligible now."""
        self.inject(t, rule)

    def inject(self, t: int, rule: str, sub: Sub | None = None,
               fixed: bool | None = None) -> dict[str, Any] | None:
        """Inject now; returns ``{"rule", "item", "at"}`` or None if nobody was eligible."""
        self.planned[rule] += 1
        fixed = self.rng.random() < FIXED_SHARE if fixed is None else fixed
        method = getattr(self, "_" + rule.replace("-", "_").replace("5g", "five_g"))
        done = method(t, sub, fixed)
        if done is None:
            self.skipped[rule] += 1
            return None
        self.injected[rule] += 1
        return done

    def _take(self, sub: Sub | None, ok: Any) -> Sub | None:
        if sub is not None:
            return sub if sub.usable and ok(sub) else None
        return pick_where(self.rng, self.pop.subs, lambda s: s.usable and not s.story and ok(s),
                          tries=64)

    def _mark(self, sub: Sub, rule: str, item: str | None, fixed: bool, how: str,
              fix_at: int | None) -> None:
        sub.injected[(rule, item)] = {
            "fault_id": self.eng.next_id("F"), "fix_planned": fixed, "how": how,
            **({"fix_at": iso(fix_at)} if fix_at is not None else {}),
        }
        if sub not in self.victims:
            self.victims.append(sub)

    def _fix_delay(self, rule: str) -> int:
        grace = cat.GRACE_S[rule]
        if grace:
            return ms_between(self.rng, grace * 2.5, grace * 5)
        return ms_between(self.rng, 15 * 60, 3 * 3600)

    def _soon(self) -> int:
        """Delay to a deadline (grant due, port-out): 30 min-3 h, shorter in short runs so
        the deadline still falls inside the epoch the fault was planned for."""
        horizon = self.eng.cfg.horizon_s
        low = min(1800.0, 0.1 * horizon)
        return ms_between(self.rng, low, max(low, min(3 * 3600.0, 0.3 * horizon)))

    def _lead(self, low_s: float, high_s: float) -> int:
        """Delay of a fault's lead-in steps, capped at 15% of the epoch so that faults
        planned late in a short run still happen before it ends."""
        high = min(high_s, 0.15 * self.eng.cfg.horizon_s)
        return ms_between(self.rng, min(low_s, high / 2), high)

    # --- status rules -------------------------------------------------------------------
    def _bss_active_hss_barred(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: s.hss == "active")
        if sub is None:
            return None
        fix = t + self._fix_delay("bss-active-hss-barred") if fixed else None
        self._mark(sub, "bss-active-hss-barred", None, fixed,
                   "HSS barred the line while BSS shows it active", fix)
        sub.lock += 1
        self.sys.status(sub, "hss", "suspended", self.rng.choice(("fraud", "regulatory")))
        if fix is not None:
            self.eng.at(fix, self.flows._hss_resume, sub, True)
        return {"rule": "bss-active-hss-barred", "item": None, "at": t}

    def _bss_suspended_hss_active(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: s.hss == "active")
        if sub is None:
            return None
        sub.lock += 1
        self.sys.charge(sub, "plan", max(sub.balance, 0) + self.rng.randint(100, 3000))
        when = t + self._lead(60, 600)
        fix = when + self._fix_delay("bss-suspended-hss-active") if fixed else None
        self._mark(sub, "bss-suspended-hss-active", None, fixed,
                   "BSS suspended for arrears, HSS never barred", fix)
        self.eng.at(when, self.flows._suspend, sub, "arrears", False, False)
        if fix is not None:
            self.eng.at(fix, self.flows._hss, sub, "suspended", "arrears")
            self.eng.at(fix + ms_between(self.rng, 1800, 4 * 3600), self.flows._arrears_top_up,
                        sub)
        return {"rule": "bss-suspended-hss-active", "item": None, "at": when}

    def _topup_still_suspended(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: s.hss == "active")
        if sub is None:
            return None
        sub.lock += 1
        self.sys.charge(sub, "plan", max(sub.balance, 0) + self.rng.randint(100, 3000))
        suspend = t + self._lead(60, 600)
        self.eng.at(suspend, self.flows._suspend, sub, "arrears", True, False)
        top_up = suspend + self._lead(600, 3600)
        fix = top_up + self._fix_delay("topup-still-suspended") if fixed else None
        self.eng.at(top_up, self._stuck_top_up, sub, fixed, fix)
        if fix is not None:
            self.eng.at(fix, self.flows._resume, sub, True)
        return {"rule": "topup-still-suspended", "item": None, "at": top_up}

    def _stuck_top_up(self, t: int, sub: Sub, fixed: bool, fix: int | None) -> None:
        self._mark(sub, "topup-still-suspended", None, fixed,
                   "top-up cleared the arrears but BSS did not resume", fix)
        self.flows._arrears_top_up(t, sub, resume=False)

    def _five_g_plan_without_five_g_signing(self, t: int, sub: Sub | None,
                                            fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: "5g" not in s.signing)
        if sub is None:
            return None
        fix = t + self._fix_delay("5g-plan-without-5g-signing") if fixed else None
        self._mark(sub, "5g-plan-without-5g-signing", None, fixed,
                   "upgraded to a 5G plan, HSS signing not updated", fix)
        sub.lock += 1
        self.sys.plan_changed(sub, self.rng.choice(cat.PLANS_5G).plan_id)
        if fix is not None:
            self.eng.at(fix, self.flows._sign, sub)
        return {"rule": "5g-plan-without-5g-signing", "item": None, "at": t}

    def _activated_not_registered(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        if sub is not None:
            return None  # only new lines can be "activated, never registered"
        grace = cat.GRACE_S["activated-not-registered"]
        after = self.rng.uniform(grace * 2.5, grace * 4) if fixed else 0.0
        sub = self.flows.new_subscriber(t, register_after_s=after)
        self._mark(sub, "activated-not-registered", None, fixed,
                   "new line activated in BSS, never attached to the network", None)
        return {"rule": "activated-not-registered", "item": None, "at": t}

    def _port_out_still_active(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: s.hss == "active")
        if sub is None:
            return None
        variant = "not_executed" if self.rng.random() < 2 / 3 else "hss_left_active"
        how = ("port-out not executed by the deadline" if variant == "not_executed" else
               "BSS closed the ported line, HSS left it active")
        self._mark(sub, "port-out-still-active", None, fixed, how, None)
        if variant == "hss_left_active":
            self._mark(sub, "bss-suspended-hss-active", None, fixed, how, None)
        fix_after = self.rng.uniform(1800, 3 * 3600) if fixed else None
        self.flows.port_out(t, sub, [], variant, fix_after, t + self._soon())
        return {"rule": "port-out-still-active", "item": None, "at": t}

    # --- products -----------------------------------------------------------------------
    def _product_not_provisioned(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: len(s.products) < len(cat.PRODUCTS))
        if sub is None:
            return None
        product = self.rng.choice([p for p in cat.PRODUCTS if p.product_id not in sub.products])
        fix = t + self._fix_delay("product-not-provisioned") if fixed else None
        self._mark(sub, "product-not-provisioned", product.product_id, fixed,
                   f"ordered in BSS, {product.platform} never provisioned it", fix)
        sub.lock += 1
        self.sys.ordered(sub, product)
        if fix is not None:
            self.eng.at(fix, self._provision_and_unlock, sub, product)
        return {"rule": "product-not-provisioned", "item": product.product_id, "at": t}

    def _provision_and_unlock(self, t: int, sub: Sub, product: cat.Product) -> None:
        self.flows._provision(t, sub, product)
        sub.lock -= 1

    def _cancelled_still_provisioned(self, t: int, sub: Sub | None,
                                     fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: any(v[0] and v[1] for v in s.products.values()))
        if sub is None:
            return None
        pid = self.rng.choice(sorted(p for p, v in sub.products.items() if v[0] and v[1]))
        product = cat.PRODUCT_BY_ID[pid]
        fix = t + self._fix_delay("cancelled-still-provisioned") if fixed else None
        self._mark(sub, "cancelled-still-provisioned", pid, fixed,
                   f"cancelled in BSS, {product.platform} kept it on", fix)
        sub.lock += 1
        self.sys.cancelled(sub, product)
        if fix is not None:
            self.eng.at(fix, self._deprovision_and_unlock, sub, product)
        return {"rule": "cancelled-still-provisioned", "item": pid, "at": t}

    def _deprovision_and_unlock(self, t: int, sub: Sub, product: cat.Product) -> None:
        self.flows._deprovision(t, sub, product)
        sub.lock -= 1

    # --- charges ------------------------------------------------------------------------
    def _charge_fault(self, t: int, sub: Sub, rule: str, item: str, amount: int, fixed: bool,
                      how: str) -> None:
        charge_id = self.eng.next_id("CH")
        fix = t + self._fix_delay(rule) if fixed else None
        self._mark(sub, rule, charge_id, fixed, how, fix)
        self.sys.charge(sub, item, amount, charge_id)
        if fix is not None:
            self.eng.at(fix, self._refund, sub, charge_id, amount)

    def _refund(self, t: int, sub: Sub, charge_id: str, amount: int) -> None:
        self.sys.refund(sub, charge_id, amount)

    def _cancelled_still_charged(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: any(v[0] and v[1] and cat.PRODUCT_BY_ID[p]
                                            .monthly_fee_cents for p, v in s.products.items()))
        if sub is None:
            return None
        pid = self.rng.choice(sorted(p for p, v in sub.products.items() if v[0] and v[1]
                                     and cat.PRODUCT_BY_ID[p].monthly_fee_cents))
        product = cat.PRODUCT_BY_ID[pid]
        sub.lock += 1
        self.sys.cancelled(sub, product)
        self.eng.at(t + ms_between(self.rng, 5, 120), self.flows._deprovision, sub, product)
        when = t + self._lead(300, 3600)
        self.eng.at(when, self._late_charge, sub, product, fixed)
        return {"rule": "cancelled-still-charged", "item": pid, "at": when}

    def _late_charge(self, t: int, sub: Sub, product: cat.Product, fixed: bool) -> None:
        self._charge_fault(t, sub, "cancelled-still-charged", product.product_id,
                           product.monthly_fee_cents, fixed,
                           f"billing charged {product.product_id} after its cancellation")
        sub.lock -= 1

    def _charged_while_suspended(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: s.hss == "active")
        if sub is None:
            return None
        sub.lock += 1
        self.flows._suspend(t, sub, "request", True, False)
        when = t + self._lead(600, 3600)
        self.eng.at(when, self._suspended_charge, sub, fixed)
        self.eng.at(when + ms_between(self.rng, 3 * 3600, 24 * 3600), self.flows._resume, sub,
                    True)
        return {"rule": "charged-while-suspended", "item": None, "at": when}

    def _suspended_charge(self, t: int, sub: Sub, fixed: bool) -> None:
        fee = cat.PLAN_BY_ID[sub.plan].monthly_fee_cents
        self._charge_fault(t, sub, "charged-while-suspended", "plan", fee, fixed,
                           "monthly fee charged during a requested suspension (报停)")

    def _charged_without_product(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, _unowned_paid)
        if sub is None:
            return None
        product = self.rng.choice([p for p in _PAID if p.product_id not in sub.ever])
        self._charge_fault(t, sub, "charged-without-product", product.product_id,
                           product.monthly_fee_cents, fixed,
                           f"billing charged {product.product_id}, never ordered")
        return {"rule": "charged-without-product", "item": product.product_id, "at": t}

    def _grant_not_credited(self, t: int, sub: Sub | None, fixed: bool) -> dict | None:
        sub = self._take(sub, lambda s: True)
        if sub is None:
            return None
        gid = self.eng.next_id("G")
        due = t + self._soon()
        fix = due + self._fix_delay("grant-not-credited") if fixed else None
        self._mark(sub, "grant-not-credited", gid, fixed,
                   "grant promised by BSS, billing never credited it", fix)
        self.sys.grant_promised(sub, gid, self.rng.choice((1000, 2000, 5000, 10_000)), due)
        if fix is not None:
            self.eng.at(fix, self.flows._credit, sub, gid)
        return {"rule": "grant-not-credited", "item": gid, "at": due}


def _unowned_paid(sub: Sub) -> bool:
    return any(p.product_id not in sub.ever for p in _PAID)
