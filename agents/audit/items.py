"""What ``each: product | charge | grant`` rules iterate, and the fields of one item.

An event of an item's own kind (``product_ordered`` for a product, ``charged`` /
``refunded`` for a charge, ``granted`` for a grant) names the item it changes, so the
audit re-evaluates only that item; :class:`ItemKind` records which event attribute names
it. Field getters note the facts they read when the environment explains (evidence).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agents.audit.facts import (
    ORDER_DOMAIN,
    PRODUCT_KINDS,
    SYSTEM_DOMAIN,
    Domain,
    Env,
    money,
    reported,
    stamp,
)


def _order(env: Env, raw: dict[str, Any], rid: str) -> dict[str, Any] | None:
    slot = raw.get("order")
    if slot is not None and env.explain is not None:
        env.note(f"product.{rid}.order", reported(slot["v"], slot["t"]), slot["t"])
    return slot


def _prov(env: Env, raw: dict[str, Any], rid: str) -> dict[str, Any] | None:
    slot = raw.get("prov")
    if env.explain is not None:
        env.note(f"product.{rid}.provisioned",
                 reported(f"{str(slot['v']).lower()} by {slot.get('by')}", slot["t"]) if slot
                 else f"never by {raw.get('platform')}", slot["t"] if slot else None)
    return slot


def _v(slot: dict[str, Any] | None) -> Any:
    return slot["v"] if slot else None


def _t(slot: dict[str, Any] | None) -> int | None:
    return slot["t"] if slot else None


def _charge(env: Env, raw: dict[str, Any], rid: str) -> dict[str, Any]:
    if env.explain is not None:
        env.note(f"charge.{rid}", reported(f"{money(raw['amount'])} for {raw['item']}", raw["t"]), raw["t"])
    return raw


def _refund(env: Env, rid: str) -> int | None:
    t = env.refund_times().get(rid)
    if env.explain is not None:
        env.note(f"charge.{rid}.refund", stamp(t), t)
    return t


def _grant(env: Env, raw: dict[str, Any], rid: str) -> dict[str, Any]:
    if env.explain is not None:
        p, c = raw.get("promised"), raw.get("credited")
        text = (f"promised {money(raw.get('amount'))}"
                + (f" @ {stamp(p['t'])}" if p else " (not seen)")
                + f", due {stamp(raw.get('due_by'))}, credited "
                + (reported(money(c["v"]), c["t"]) if c else "never"))
        env.note(f"grant.{rid}", text, max(_t(p) or 0, _t(c) or 0) or None)
    return raw


Getter = Callable[[Env, dict[str, Any], str], Any]

PRODUCT_FIELDS: dict[str, Getter] = {
    "id": lambda env, raw, rid: rid,
    "platform": lambda env, raw, rid: raw.get("platform"),
    "order": lambda env, raw, rid: _v(_order(env, raw, rid)),
    "order_time": lambda env, raw, rid: _t(_order(env, raw, rid)),
    "provisioned": lambda env, raw, rid: _v(_prov(env, raw, rid)),
    "prov_time": lambda env, raw, rid: _t(_prov(env, raw, rid)),
    "fee": lambda env, raw, rid: raw.get("fee"),
}
#: Product fields with enumerated values (for ``item.<field>`` and ``product(id).<field>``).
PRODUCT_DOMAINS: dict[str, Domain] = {"order": ORDER_DOMAIN, "platform": SYSTEM_DOMAIN}
CHARGE_FIELDS: dict[str, Getter] = {
    "id": lambda env, raw, rid: rid,
    "item": lambda env, raw, rid: _charge(env, raw, rid)["item"],
    "amount": lambda env, raw, rid: _charge(env, raw, rid)["amount"],
    "time": lambda env, raw, rid: _charge(env, raw, rid)["t"],
    "kind": lambda env, raw, rid: raw["kind"],
    "refunded": lambda env, raw, rid: _refund(env, rid) is not None,
    "refund_time": lambda env, raw, rid: _refund(env, rid),
}
GRANT_FIELDS: dict[str, Getter] = {
    "id": lambda env, raw, rid: rid,
    "promised": lambda env, raw, rid: _v(_grant(env, raw, rid).get("promised")) is not None,
    "promised_time": lambda env, raw, rid: _t(_grant(env, raw, rid).get("promised")),
    "credited": lambda env, raw, rid: _v(_grant(env, raw, rid).get("credited")) is not None,
    "credit_time": lambda env, raw, rid: _t(_grant(env, raw, rid).get("credited")),
    "due_by": lambda env, raw, rid: _grant(env, raw, rid).get("due_by"),
    "amount": lambda env, raw, rid: raw.get("amount"),
}


@dataclass(frozen=True, slots=True)
class ItemKind:
    """What ``each: <kind>`` iterates: its fields, the events that change one item (and the
    event attribute naming that item), and how to list and find items in a view.
    ``domains`` are the fields whose values are enumerated (checked in comparisons)."""

    name: str
    fields: dict[str, Getter]
    kinds: tuple[str, ...]
    event_attr: str
    domains: dict[str, Domain] = field(default_factory=dict)

    def items(self, view: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        if self.name == "charge":
            return ((c["charge_id"], c) for c in view["charges"] if c["kind"] == "charged")
        return iter((view["products"] if self.name == "product" else view["grants"]).items())

    def find(self, view: dict[str, Any], item_id: str) -> dict[str, Any] | None:
        if self.name == "charge":
            for c in reversed(view["charges"]):
                if c["charge_id"] == item_id and c["kind"] == "charged":
                    return c
            return None
        return (view["products"] if self.name == "product" else view["grants"]).get(item_id)


ITEM_KINDS: dict[str, ItemKind] = {
    "product": ItemKind("product", PRODUCT_FIELDS, PRODUCT_KINDS, "product_id", PRODUCT_DOMAINS),
    "charge": ItemKind("charge", CHARGE_FIELDS, ("charged", "refunded"), "charge_id"),
    "grant": ItemKind("grant", GRANT_FIELDS, ("granted",), "grant_id"),
}
