"""Annotation templates: a fixed, documented set of ``{placeholders}``.

Annotations are what people read: the technician's summary and fix guidance, the script
the agent reads to the customer, the expected resolution. They are ``str.format``-style
templates, but they are never passed to ``str.format``: the loader splits them into
literal text and placeholder names (rejecting ``{x.attr}``, ``{x[0]}``, ``!r`` and format
specs, which would let a rule file reach into Python objects) and rendering only joins
strings. The subscriber's number is only ever available masked (``{msisdn}``, last four
digits kept: :func:`schemas.common.mask_msisdn`).

Values are captured from the view when an episode opens (so a technician sees the facts
that made the rule true, even if the alert fires on a timer later); ``since``,
``since_ago``, ``severity`` and ``ended`` are filled in when the text is rendered.

>>> t = Template.parse("{product} not provisioned on {platform} for {since_ago}", "product")
>>> t.render({"product": "vas-news", "platform": "vas", "since_ago": "12m"})
'vas-news not provisioned on vas for 12m'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from string import Formatter
from typing import Any

from agents.audit.facts import Env, f_monthly_fee, money
from agents.audit.items import ITEM_KINDS
from schemas.common import mask_msisdn

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
    "ended": Placeholder("local time the condition cleared (only in the 'resolved' annotation)"),
    "bss_status": Placeholder("status BSS last reported"),
    "hss_status": Placeholder("status HSS last reported"),
    "billing_status": Placeholder("status billing last reported"),
    "bss_reason": Placeholder("reason of the BSS suspension"),
    "hss_reason": Placeholder("reason of the HSS suspension"),
    "plan": Placeholder("BSS plan id"),
    "plan_networks": Placeholder("generations of the BSS plan, e.g. 4g,5g"),
    "signing": Placeholder("generations HSS signing allows"),
    "balance": Placeholder("billing balance in currency units"),
    "arrears": Placeholder("amount owed (0.00 when the balance is positive)"),
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


class TemplateError(ValueError):
    """A template uses an unknown placeholder or a construct templates do not allow."""


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: ``parts`` alternate literal text and placeholder names."""

    parts: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(f for _, f in self.parts if f)

    @classmethod
    def parse(cls, text: str, each: str | None, *, resolved: bool = False) -> Template:
        """Split ``text``; raises :class:`TemplateError` naming the bad placeholder."""
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(f"{exc}; write literal braces as {{{{ and }}}}") from None
        for literal, field, spec, conversion in parsed:
            if field is None:
                parts.append((literal, None))
                continue
            if spec or conversion:
                raise TemplateError(f"placeholder {{{field}}} must not have a format or "
                                    "conversion: write just {name}")
            ph = PLACEHOLDERS.get(field)
            if ph is None:
                raise TemplateError(f"unknown placeholder {{{field}}}; known: "
                                    + ", ".join(sorted(PLACEHOLDERS)))
            if ph.kinds is not None and each not in ph.kinds:
                raise TemplateError(f"placeholder {{{field}}} needs 'each: "
                                    f"{' or '.join(ph.kinds)}' on the rule")
            if field == "ended" and not resolved:
                raise TemplateError("placeholder {ended} is only known in the 'resolved' "
                                    "annotation")
            parts.append((literal, field))
        return cls(tuple(parts))

    def render(self, values: dict[str, str]) -> str:
        return "".join(lit + (values.get(f, "") if f else "") for lit, f in self.parts)


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


# Module-level getters (built once, not per capture: capture runs on every episode opened).
# Instants stay numbers here; render_values formats them when (and if) a text is rendered.
_GETTERS: dict[str, Callable[[_Cap], Any]] = {
    "subscriber": lambda c: c.view["subscriber_id"],
    "msisdn": lambda c: mask_msisdn(c.view["msisdn"]),
    "item": lambda c: c.item_id,
    "bss_status": lambda c: _sys(c.view, "bss", "status").get("v", "unknown"),
    "hss_status": lambda c: _sys(c.view, "hss", "status").get("v", "unknown"),
    "billing_status": lambda c: _sys(c.view, "billing", "status").get("v", "unknown"),
    "bss_reason": lambda c: _sys(c.view, "bss", "status").get("reason") or "",
    "hss_reason": lambda c: _sys(c.view, "hss", "status").get("reason") or "",
    "plan": lambda c: _sys(c.view, "bss", "plan").get("v", ""),
    "plan_networks": lambda c: ",".join(_sys(c.view, "bss", "plan").get("networks", ())),
    "signing": lambda c: ",".join(_sys(c.view, "hss", "signing").get("v", ())),
    "balance": lambda c: money(_sys(c.view, "billing", "balance").get("v")),
    "arrears": lambda c: money(max(0, -(_sys(c.view, "billing", "balance").get("v") or 0))),
    "monthly_fee": lambda c: _monthly_fee(c.view),
    "topup_amount": lambda c: money(_sys(c.view, "billing", "topup").get("v")),
    "topup_time": lambda c: _sys(c.view, "billing", "topup").get("t"),
    "deadline": lambda c: (c.view.get("port_out") or _EMPTY).get("deadline"),
    "activated_at": lambda c: _sys(c.view, "bss", "activated").get("t"),
    "product": lambda c: c.product_id or "",
    "product_name": lambda c: c.names.get(c.product_id or "", c.product_id or ""),
    "platform": lambda c: c.product.get("platform", ""),
    "order_time": lambda c: (c.product.get("order") or _EMPTY).get("t"),
    "fee": lambda c: money(c.product.get("fee")),
    "amount": lambda c: money(c.raw.get("amount")),
    "charge_time": lambda c: c.raw.get("t"),
    "due_by": lambda c: c.raw.get("due_by"),
}


def capture(view: dict[str, Any], each: str | None, item_id: str,
            fields: tuple[str, ...], names: dict[str, str], offset_min: int) -> dict[str, Any]:
    """Values of ``fields`` (minus the live ones) from the view as it is now."""
    c = _Cap(view, each, item_id, names)
    out: dict[str, Any] = {}
    for f in fields:
        g = _GETTERS.get(f)
        if g is not None:
            v = g(c)
            out[f] = v if f in TIMES else str(v)
    return out


def render_values(captured: dict[str, Any], offset_min: int) -> dict[str, str]:
    """Captured values as text: instants in local time."""
    return {k: local_time(v, offset_min) if k in TIMES else v for k, v in captured.items()}


def _monthly_fee(view: dict[str, Any]) -> str:
    return money(f_monthly_fee(Env(view)))
