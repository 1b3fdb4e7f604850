"""The unified view: what each source system last reported about a subscriber.

Seed 001's "一键综合查询" and the audit's input. Each fact is stored with the event time
of the report that set it and is only replaced by a report at least as recent, so late,
out-of-order and duplicated events leave the same view as an orderly stream (last writer
wins by event time, ties broken by event id for determinism).

Facts are filed under the system that reported them. The schema only accepts a kind from
the systems that report it (:data:`schemas.subscriber_state.REPORTED_BY`), and every such
report lands where an audit function reads it: a registration from network management
counts like one from the HSS (``registered()`` reads both).

Times are epoch milliseconds (UTC) to keep the changelogged state small and fast to parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.core import EventContext, Result, State
from schemas.registry import SUBSCRIBER_STATE
from schemas.subscriber_state import GrantStage

#: How many recent charges the view keeps (the audit compares them with products).
MAX_CHARGES = 20
#: How many status reports per system the view keeps, so a late charge can be judged
#: against the status at its own time.
MAX_HISTORY = 8

_STATUS_BY_KIND = {
    "opened": "opened",
    "activated": "active",
    "suspended": "suspended",
    "resumed": "active",
    "closed": "closed",
}
#: Every status ``status(system)`` can return: what the view writes, so the rule checker
#: (``foresight rules check``) can reject a literal no report ever produces.
STATUSES: tuple[str, ...] = tuple(dict.fromkeys(_STATUS_BY_KIND.values()))
#: A product's order state as the view records it (``product_ordered`` / ``product_cancelled``).
ORDER_STATES: tuple[str, str] = ("ordered", "cancelled")


def ms(dt: Any) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(dt.timestamp() * 1000)


def new_view(subscriber_id: str, msisdn: str) -> State:
    return {
        "subscriber_id": subscriber_id,
        "msisdn": msisdn,
        "systems": {},
        "products": {},
        "charges": [],
        "grants": {},
        "port_out": None,
        "profile": {},
        "first_event_ms": None,
        "last_event_ms": 0,
    }


def _newer(slot: Mapping[str, Any] | None, t: int, event_id: str) -> bool:
    """True if a report at (t, event_id) may overwrite ``slot`` (last writer wins)."""
    if slot is None:
        return True
    st = slot.get("t", -1)
    return t > st or (t == st and event_id >= slot.get("id", ""))


def _set(container: dict[str, Any], name: str, value: dict[str, Any], t: int, eid: str) -> bool:
    if _newer(container.get(name), t, eid):
        value["t"] = t
        value["id"] = eid
        container[name] = value
        return True
    return False


def apply_event(view: State, ev: Any, t: int | None = None) -> None:
    """Fold one ``subscriber-state`` event into ``view`` in place (``t``: its time in ms)."""
    if t is None:
        t = ms(ev.event_time)
    eid = ev.event_id
    kind = ev.kind
    system = ev.system
    systems: dict[str, Any] = view["systems"]
    sysview = systems.setdefault(system, {})
    view["msisdn"] = ev.msisdn
    if view["first_event_ms"] is None or t < view["first_event_ms"]:
        view["first_event_ms"] = t
    view["last_event_ms"] = max(view["last_event_ms"], t)

    if kind in _STATUS_BY_KIND:
        status = _STATUS_BY_KIND[kind]
        reason = ev.reason if kind == "suspended" else None
        _set(sysview, "status", {"v": status, "reason": reason}, t, eid)
        history: list[list[Any]] = sysview.setdefault("history", [])
        entry = [t, status, eid]
        if entry not in history:
            history.append(entry)
            history.sort()
            del history[:-MAX_HISTORY]
        if kind == "activated":
            _set(sysview, "activated", {"v": True}, t, eid)
        if kind in ("opened",):
            _set(sysview, "plan", {"v": ev.plan_id, "networks": list(ev.plan_networks)},
                 t, eid)
    elif kind == "plan_changed":
        _set(sysview, "plan", {"v": ev.plan_id, "networks": list(ev.plan_networks)},
             t, eid)
    elif kind in ("product_ordered", "product_cancelled"):
        p = view["products"].setdefault(ev.product_id, {"platform": ev.platform})
        p["platform"] = ev.platform
        if kind == "product_ordered":
            p["fee"] = ev.monthly_fee_cents
        ordered, cancelled = ORDER_STATES
        _set(p, "order", {"v": ordered if kind == "product_ordered" else cancelled}, t, eid)
    elif kind in ("product_provisioned", "product_deprovisioned"):
        p = view["products"].setdefault(ev.product_id, {"platform": system})
        _set(p, "prov", {"v": kind == "product_provisioned", "by": system}, t, eid)
    elif kind in ("charged", "refunded"):
        charges: list[dict[str, Any]] = view["charges"]
        entry = {"charge_id": ev.charge_id, "kind": kind, "amount": ev.amount_cents, "t": t,
                 "item": getattr(ev, "item", None)}
        key = (ev.charge_id, kind)
        if all((c["charge_id"], c["kind"]) != key for c in charges):
            charges.append(entry)
            charges.sort(key=lambda c: (c["t"], c["charge_id"]))
            del charges[:-MAX_CHARGES]
        if ev.balance_cents is not None:
            _set(sysview, "balance", {"v": ev.balance_cents}, t, eid)
    elif kind == "topped_up":
        _set(sysview, "topup", {"v": ev.amount_cents, "channel": ev.channel}, t, eid)
        _set(sysview, "balance", {"v": ev.balance_cents}, t, eid)
    elif kind == "balance_reported":
        _set(sysview, "balance", {"v": ev.balance_cents}, t, eid)
        _set(sysview, "arrears", {"v": ev.arrears_cents}, t, eid)
    elif kind == "granted":
        g = view["grants"].setdefault(ev.grant_id, {})
        if ev.stage == GrantStage.PROMISED:
            g["amount"] = ev.amount_cents
            g["due_by"] = ms(ev.due_by) if ev.due_by else None
            _set(g, "promised", {"v": True}, t, eid)
        else:
            _set(g, "credited", {"v": ev.amount_cents}, t, eid)
    elif kind == "signing_changed":
        _set(sysview, "signing", {"v": sorted(ev.networks)}, t, eid)
    elif kind == "network_registered":
        reg = sysview.get("registered")
        if reg is None or t < reg["t"]:  # keep the first registration
            sysview["registered"] = {"v": ev.rat, "cell": ev.cell_id, "t": t, "id": eid}
    elif kind in ("port_out_requested", "port_out_cancelled"):
        cur = view["port_out"]
        if _newer(cur, t, eid):
            view["port_out"] = (
                {"deadline": ms(ev.deadline), "recipient": ev.recipient, "t": t, "id": eid}
                if kind == "port_out_requested" else None
            )
    elif kind == "profile_changed":
        prof: dict[str, Any] = view["profile"]
        for name in ("star_level", "seed_user", "value_tier", "home_cell", "name", "do_not_disturb"):
            value = getattr(ev, name)
            if value is not None:
                _set(prof, name, {"v": value}, t, eid)


def status_of(view: State, system: str) -> str | None:
    """The status ``system`` last reported, or None if it never did."""
    slot = view["systems"].get(system, {}).get("status")
    return slot["v"] if slot else None


def status_at(view: State, system: str, t: int) -> str | None:
    """The status ``system`` had reported as of instant ``t`` (None if unknown then).

    >>> v = new_view("S001", "8613800001234")
    >>> v["systems"]["bss"] = {"history": [[10, "active", "a"], [20, "suspended", "b"]]}
    >>> status_at(v, "bss", 15), status_at(v, "bss", 25), status_at(v, "bss", 5)
    ('active', 'suspended', None)
    """
    found = None
    for ht, status, _ in view["systems"].get(system, {}).get("history", ()):
        if ht <= t:
            found = status
        else:
            break
    return found


def profile_value(view: State, name: str, default: Any = None) -> Any:
    slot = view["profile"].get(name)
    return slot["v"] if slot else default


class UnifiedView:
    """Pipeline step that keeps the unified view table (one entry per subscriber)."""

    name = "unified-view"
    topics = frozenset({SUBSCRIBER_STATE})
    reads: tuple[str, ...] = ()

    def key_of(self, event: Any) -> str | None:
        return event.subscriber_id

    def apply(
        self, state: State | None, event: Any, ctx: EventContext, reads: Mapping[str, State | None]
    ) -> Result:
        view = state if state is not None else new_view(event.subscriber_id, event.msisdn)
        apply_event(view, event, ctx.event_ms or None)
        return Result(view)
