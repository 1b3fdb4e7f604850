"""The operator's source systems: every ``subscriber-state`` event is emitted here.

Each method builds the event exactly as the contract in ``schemas.subscriber_state``
describes it, applies it to the subscriber's view of that system, and lets the tracker
re-check the audit conditions. Keeping "emit" and "apply" in one place is what makes the
ground truth exact: the simulator cannot change a view without sending the event that
tells the consumers about it.
"""

from __future__ import annotations

from typing import Any

from streams.simulator import catalog as cat
from streams.simulator.clock import CHINA, UTC_PLUS0
from streams.simulator.engine import Engine
from streams.simulator.model import Tracker
from streams.simulator.population import Sub

TOPIC = "subscriber-state"
_STATUS = {"activated": "active", "suspended": "suspended", "resumed": "active",
           "closed": "closed", "opened": "opened"}


def state_payload(eid: str, t: int, sub: Sub, system: str, kind: str) -> dict[str, Any]:
    """Common fields of a state event; HSS reports in UTC, everything else in China time."""
    fmt = UTC_PLUS0 if system == "hss" else CHINA
    return {"schema_version": 1, "event_id": eid, "event_time": fmt.format(t),
            "subscriber_id": sub.sid, "msisdn": sub.msisdn, "system": system, "kind": kind}


class Systems:
    """BSS, HSS, billing, VAS, PCRF and MNP, as seen through the events they report."""

    def __init__(self, eng: Engine, tracker: Tracker) -> None:
        self.eng = eng
        self.tracker = tracker

    def _p(self, sub: Sub, system: str, kind: str) -> dict[str, Any]:
        return state_payload(self.eng.eid(), self.eng.now, sub, system, kind)

    def _send(self, sub: Sub, payload: dict[str, Any]) -> None:
        self.eng.emit(TOPIC, sub.sid, payload)
        self.tracker.check(sub, self.eng.now)

    # --- lifecycle --------------------------------------------------------------------
    def opened(self, sub: Sub, system: str) -> None:
        """开户 in ``system`` with the subscriber's plan."""
        p = self._p(sub, system, "opened")
        p["plan_id"] = sub.plan
        p["plan_networks"] = list(cat.PLAN_BY_ID[sub.plan].networks)
        self._set_status(sub, system, "opened", None)
        self._send(sub, p)

    def status(self, sub: Sub, system: str, kind: str, reason: str | None = None) -> None:
        """activated / suspended (with reason) / resumed / closed, as ``system`` sees it."""
        p = self._p(sub, system, kind)
        if kind == "suspended":
            p["reason"] = reason
        self._set_status(sub, system, _STATUS[kind], reason)
        if kind == "activated" and system == "bss":
            sub.activated = True
        self._send(sub, p)

    @staticmethod
    def _set_status(sub: Sub, system: str, status: str, reason: str | None) -> None:
        if system == "bss":
            sub.bss, sub.bss_reason = status, reason
        elif system == "hss":
            sub.hss, sub.hss_reason = status, reason
        else:
            sub.billing = status

    def plan_changed(self, sub: Sub, plan_id: str) -> None:
        """BSS changes the plan; HSS signing is the HSS's own event."""
        p = self._p(sub, "bss", "plan_changed")
        p["plan_id"] = plan_id
        p["plan_networks"] = list(cat.PLAN_BY_ID[plan_id].networks)
        sub.plan = plan_id
        self._send(sub, p)

    def signing(self, sub: Sub, networks: tuple[str, ...]) -> None:
        """HSS 网别签约: the generations the subscriber may use."""
        p = self._p(sub, "hss", "signing_changed")
        p["networks"] = list(networks)
        sub.signing = networks
        self._send(sub, p)

    def registered(self, sub: Sub, rat: str) -> None:
        """First network attach after activation, on the home cell."""
        p = self._p(sub, "hss", "network_registered")
        p["rat"] = rat
        p["cell_id"] = sub.home.cell_id if sub.home else None
        sub.registered = True
        self._send(sub, p)

    # --- products ---------------------------------------------------------------------
    def ordered(self, sub: Sub, product: cat.Product) -> None:
        """业务订购 in BSS; the product's platform must provision it."""
        p = self._p(sub, "bss", "product_ordered")
        p["product_id"] = product.product_id
        p["platform"] = product.platform
        p["monthly_fee_cents"] = product.monthly_fee_cents
        state = sub.products.get(product.product_id)
        sub.products[product.product_id] = [True, state[1] if state else None]
        sub.ever.add(product.product_id)
        self._send(sub, p)

    def cancelled(self, sub: Sub, product: cat.Product) -> None:
        """业务退订 in BSS; the platform must switch it off."""
        p = self._p(sub, "bss", "product_cancelled")
        p["product_id"] = product.product_id
        p["platform"] = product.platform
        sub.products[product.product_id][0] = False
        self._send(sub, p)

    def provisioned(self, sub: Sub, product: cat.Product, on: bool) -> None:
        """The product's platform switches it on (``on``) or off."""
        kind = "product_provisioned" if on else "product_deprovisioned"
        p = self._p(sub, product.platform, kind)
        p["product_id"] = product.product_id
        state = sub.products[product.product_id]
        state[1] = on
        if not state[0] and not on:
            del sub.products[product.product_id]   # cancelled and switched off: gone
        self._send(sub, p)

    # --- money ------------------------------------------------------------------------
    def charge(self, sub: Sub, item: str, amount: int, charge_id: str | None = None) -> str:
        """扣费; opens the charge rules this charge violates (grace 0: at the charge)."""
        charge_id = charge_id or self.eng.next_id("CH")
        sub.balance -= amount
        p = self._p(sub, "billing", "charged")
        p["charge_id"] = charge_id
        p["item"] = item
        p["amount_cents"] = amount
        p["balance_cents"] = sub.balance
        self.eng.emit(TOPIC, sub.sid, p)
        t = self.eng.now
        if sub.bss in ("suspended", "closed"):
            self.tracker.open_point(sub, "charged-while-suspended", charge_id, t)
        if item not in ("plan", "usage"):
            state = sub.products.get(item)
            if item not in sub.ever:
                self.tracker.open_point(sub, "charged-without-product", charge_id, t)
            elif state is None or not state[0]:
                self.tracker.open_point(sub, "cancelled-still-charged", charge_id, t)
        return charge_id

    def refund(self, sub: Sub, charge_id: str, amount: int) -> None:
        """退费 of a charge; ends the charge rules it violated."""
        sub.balance += amount
        p = self._p(sub, "billing", "refunded")
        p["charge_id"] = charge_id
        p["amount_cents"] = amount
        p["balance_cents"] = sub.balance
        self.eng.emit(TOPIC, sub.sid, p)
        self.tracker.refund(sub, charge_id, self.eng.now)

    def top_up(self, sub: Sub, amount: int, channel: str) -> None:
        """充值; clearing arrears while suspended starts ``topup-still-suspended``."""
        sub.balance += amount
        p = self._p(sub, "billing", "topped_up")
        p["amount_cents"] = amount
        p["balance_cents"] = sub.balance
        p["channel"] = channel
        arrears = ((sub.bss == "suspended" and sub.bss_reason == "arrears")
                   or (sub.hss == "suspended" and sub.hss_reason == "arrears"))
        if arrears and sub.balance > 0:
            sub.topup_pending = True
        self._send(sub, p)

    def balance(self, sub: Sub) -> None:
        """Billing's balance report (no state change)."""
        p = self._p(sub, "billing", "balance_reported")
        p["balance_cents"] = sub.balance
        p["arrears_cents"] = max(0, -sub.balance)
        self.eng.emit(TOPIC, sub.sid, p)

    def grant_promised(self, sub: Sub, grant_id: str, amount: int, due_by: int) -> None:
        """BSS promises a grant (赠送) that billing must credit by ``due_by``."""
        p = self._p(sub, "bss", "granted")
        p["grant_id"] = grant_id
        p["stage"] = "promised"
        p["amount_cents"] = amount
        p["due_by"] = CHINA.format(due_by)
        sub.grants[grant_id] = [due_by, False, False, amount]
        self.eng.emit(TOPIC, sub.sid, p)
        self.eng.at(due_by, self._grant_due, sub, grant_id)

    def grant_credited(self, sub: Sub, grant_id: str) -> None:
        """Billing credits a promised grant (ends ``grant-not-credited``)."""
        grant = sub.grants.get(grant_id)
        if grant is None:
            return
        grant[1] = True
        p = self._p(sub, "billing", "granted")
        p["grant_id"] = grant_id
        p["stage"] = "credited"
        p["amount_cents"] = grant[3]
        sub.balance += grant[3]
        self._send(sub, p)
        del sub.grants[grant_id]

    def _grant_due(self, t: int, sub: Sub, grant_id: str) -> None:
        grant = sub.grants.get(grant_id)
        if grant is not None:
            grant[2] = True
            self.tracker.check(sub, t)

    # --- portability and profile ------------------------------------------------------
    def port_out_requested(self, sub: Sub, deadline: int, recipient: str) -> None:
        """MNP 携号转网 request; HSS must stop service by ``deadline``."""
        p = self._p(sub, "mnp", "port_out_requested")
        p["deadline"] = CHINA.format(deadline)
        p["recipient"] = recipient
        sub.port_out = [deadline, False]
        self.eng.emit(TOPIC, sub.sid, p)
        self.eng.at(deadline, self._port_out_due, sub)

    def _port_out_due(self, t: int, sub: Sub) -> None:
        if sub.port_out is not None:
            sub.port_out[1] = True
            self.tracker.check(sub, t)

    def profile(self, sub: Sub, **changes: Any) -> None:
        """Profile fields that changed (star_level, seed_user, value_tier, home_cell...)."""
        p = self._p(sub, "bss", "profile_changed")
        p.update(changes)
        self.eng.emit(TOPIC, sub.sid, p)
