"""The placeholders templates may use, and their values captured from the unified view.

Values are captured from the view when an episode opens (so a technician sees the facts
that made the rule true, even if the alert fires on a timer later); ``since``,
``since_ago``, ``severity`` and ``ended`` are filled in when the text is rendered. A
fact the view does not know is captured as None, never as a made-up value such as
``0.00``: the template then shows an alternative or leaves the words out
(:mod:`agents.audit.templates`). The subscriber's number is only ever available masked
(``{msisdn}``, last four digits kept: :func:`schemas.common.mask_msisdn`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.audit.facts import Env, f_monthly_fee, money
from agents.audit.items import ITEM_KINDS
from schemas.common import mask_msisdn

#: What an unknown placeholder outside an optional segment reads in a technician's text
#: (and what episodes captured for an unknown fact before unknown values were kept as None).
UNKNOWN = "unknown"
_EMPTY: dict[str, Any] = {}
#: Placeholders filled at render time rather than captured when the episode opens.
LIVE = frozenset({"since", "since_ago", "severity", "ended"})
#: Placeholders holding an instant: captured as epoch ms, shown in local time when rendered.
TIMES = frozenset({"topup_time", "deadline", "activated_at", "order_time", "charge_time",
                   "due_by"})


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One placeholder: what it shows and which ``each`` kinds offer it (None: every rule)."""

    doc: str
    kinds: tuple[str, ...] | None = None


PLACEHOLDERS: dict[str, Placeholder] = {
    "subscriber": Placeholder("subscriber id"),
    "msisdn": Placeholder("phone number, masked but its last four digits"),
    "rule": Placeholder("rule id"),
    "item": Placeholder("item id (product, charge or grant id; empty without each)"),
    "severity": Placeholder("current severity"),
    "for": Placeholder("the rule's grace period, e.g. 10m"),
    "since": Placeholder("local time the condition started"),
    "since_ago": Placeholder("how long the condition has held, e.g. 1h20m"),
    "ended": Placeholder("local time the condition cleared (only in the 'resolved' and "
                         "'resolved_summary' annotations)"),
    "bss_status": Placeholder("status BSS last reported"),
    "hss_status": Placeholder("status HSS last reported"),
    "billing_status": Placeholder("status billing last reported"),
    "bss_reason": Placeholder("reason of the BSS suspension (unknown unless suspended)"),
    "hss_reason": Placeholder("reason of the HSS suspension (unknown unless suspended)"),
    "plan": Placeholder("BSS plan id"),
    "plan_networks": Placeholder("generations of the BSS plan, e.g. 4g,5g"),
    "signing": Placeholder("generations HSS signing allows"),
    "balance": Placeholder("billing balance in currency units"),
    "arrears": Placeholder("amount owed: known only while the balance is negative"),
    "monthly_fee": Placeholder("last plan charge plus ordered products' fees"),
    "topup_amount": Placeholder("amount of the last top-up"),
    "topup_time": Placeholder("local time of the last top-up"),
    "deadline": Placeholder("local time of the port-out deadline"),
    "activated_at": Placeholder("local time BSS activated the line"),
    "product": Placeholder("product id (of the item, or the charged item)", ("product", "charge")),
    "product_name": Placeholder("display name from the catalog's names", ("product", "charge")),
    "platform": Placeholder("platform that provisions the product", ("product", "charge")),
    "order_time": Placeholder("local time of the product's last order or cancellation",
                              ("product", "charge")),
    "fee": Placeholder("the product's monthly fee", ("product",)),
    "amount": Placeholder("amount charged or granted", ("charge", "grant")),
    "charge_time": Placeholder("local time of the charge", ("charge",)),
    "due_by": Placeholder("local time the grant was due", ("grant",)),
}


def local_time(t: int | None, offset_min: int) -> str:
    """``YYYY-MM-DD HH:MM`` at the catalog's UTC offset (what customers and agents read).

    >>> local_time(1_795_654_800_000, 480)
    '2026-11-26 09:00'
    """
    if t is None:
        return ""
    dt = datetime.fromtimestamp(t / 1000, UTC) + timedelta(minutes=offset_min)
    return dt.strftime("%Y-%m-%d %H:%M")


def _sys(view: dict[str, Any], system: str, name: str) -> dict[str, Any]:
    return view["systems"].get(system, _EMPTY).get(name) or _EMPTY


class _Cap:
    """What the getters below read: the view, the episode's item and its product."""

    __slots__ = ("item_id", "names", "product", "product_id", "raw", "view")

    def __init__(self, view: dict[str, Any], each: str | None, item_id: str,
                 names: dict[str, str]) -> None:
        raw = ITEM_KINDS[each].find(view, item_id) if each else None
        self.raw = raw = raw or _EMPTY
        self.view = view
        self.item_id = item_id
        self.names = names
        self.product_id = (item_id if each == "product"
                           else raw.get("item") if each == "charge" else None)
        self.product = view["products"].get(self.product_id, _EMPTY) if self.product_id \
            else _EMPTY


def _money(cents: int | None) -> str | None:
    return None if cents is None else money(cents)


def _arrears(view: dict[str, Any]) -> str | None:
    """What is owed: known only while billing's last balance is negative."""
    balance = _sys(view, "billing", "balance").get("v")
    return money(-balance) if balance is not None and balance < 0 else None


def _joined(slot: dict[str, Any], name: str) -> str | None:
    return ",".join(slot[name]) if name in slot else None


# Module-level getters (built once, not per capture: capture runs on every episode opened).
# Instants stay numbers here; render_values formats them when (and if) a text is rendered.
# A getter returns None for a fact the view does not know: the template then shows an
# alternative or leaves the clause out, never a made-up value such as 0.00.
_GETTERS: dict[str, Callable[[_Cap], Any]] = {
    "subscriber": lambda c: c.view["subscriber_id"],
    "msisdn": lambda c: mask_msisdn(c.view["msisdn"]),
    "item": lambda c: c.item_id,
    "bss_status": lambda c: _sys(c.view, "bss", "status").get("v"),
    "hss_status": lambda c: _sys(c.view, "hss", "status").get("v"),
    "billing_status": lambda c: _sys(c.view, "billing", "status").get("v"),
    "bss_reason": lambda c: _sys(c.view, "bss", "status").get("reason"),
    "hss_reason": lambda c: _sys(c.view, "hss", "status").get("reason"),
    "plan": lambda c: _sys(c.view, "bss", "plan").get("v"),
    "plan_networks": lambda c: _joined(_sys(c.view, "bss", "plan"), "networks"),
    "signing": lambda c: _joined(_sys(c.view, "hss", "signing"), "v"),
    "balance": lambda c: _money(_sys(c.view, "billing", "balance").get("v")),
    "arrears": lambda c: _arrears(c.view),
    "monthly_fee": lambda c: _monthly_fee(c.view),
    "topup_amount": lambda c: _money(_sys(c.view, "billing", "topup").get("v")),
    "topup_time": lambda c: _sys(c.view, "billing", "topup").get("t"),
    "deadline": lambda c: (c.view.get("port_out") or _EMPTY).get("deadline"),
    "activated_at": lambda c: _sys(c.view, "bss", "activated").get("t"),
    "product": lambda c: c.product_id,
    "product_name": lambda c: c.names.get(c.product_id or "", c.product_id),
    "platform": lambda c: c.product.get("platform"),
    "order_time": lambda c: (c.product.get("order") or _EMPTY).get("t"),
    "fee": lambda c: _money(c.product.get("fee")),
    "amount": lambda c: _money(c.raw.get("amount")),
    "charge_time": lambda c: c.raw.get("t"),
    "due_by": lambda c: c.raw.get("due_by"),
}


def capture(view: dict[str, Any], each: str | None, item_id: str,
            fields: tuple[str, ...], names: dict[str, str], offset_min: int) -> dict[str, Any]:
    """Values of ``fields`` (minus the live ones) from the view as it is now (None: unknown)."""
    c = _Cap(view, each, item_id, names)
    out: dict[str, Any] = {}
    for f in fields:
        g = _GETTERS.get(f)
        if g is not None:
            v = g(c)
            out[f] = v if v is None or f in TIMES else str(v)
    return out


def render_values(captured: dict[str, Any], offset_min: int) -> dict[str, str | None]:
    """Captured values as text: instants in local time, unknown values None.

    ``"unknown"`` is what episodes captured before unknown values were kept as None
    (state written by an older version) held for a fact the view did not know.
    """
    return {k: None if v is None or v == UNKNOWN
            else local_time(v, offset_min) if k in TIMES else v for k, v in captured.items()}


def _monthly_fee(view: dict[str, Any]) -> str | None:
    return _money(f_monthly_fee(Env(view)))
