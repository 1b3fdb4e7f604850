"""What rule expressions can read from the unified view, and which events can change it.

Every function and item field an expression may use is declared here with the
``subscriber-state`` event kinds (and, where it matters, the reporting system) that can
change its value. The compiler turns those declarations into each rule's dependency set,
so an event only evaluates the rules it can affect: the audit's hot path.

Accessors read the view's slots (``{"v": value, "t": epoch ms, ...}``, see
:mod:`agents.unified_view`). When an :class:`Env` is in *explain* mode they also note the
fact and the time it was reported, which gives an episode its evidence and, for rules
without an explicit ``since``, its start: the moment the last of the facts it compared was
reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.unified_view import ORDER_STATES, STATUSES
from agents.unified_view import status_at as _status_at
from schemas.common import Rat, SourceSystem
from schemas.subscriber_state import REPORTED_BY, SuspendReason, ValueTier

STATUS_KINDS = ("opened", "activated", "suspended", "resumed", "closed")
PRODUCT_KINDS = ("product_ordered", "product_cancelled", "product_provisioned",
                 "product_deprovisioned")
BALANCE_KINDS = ("charged", "refunded", "topped_up", "balance_reported")
ALL_KINDS = (*STATUS_KINDS, "plan_changed", *PRODUCT_KINDS, "charged", "refunded", "topped_up",
             "balance_reported", "granted", "signing_changed", "network_registered",
             "port_out_requested", "port_out_cancelled", "profile_changed")
SYSTEMS = tuple(s.value for s in SourceSystem)
#: Systems that report a status (the schema rejects a status from any other): ``status``,
#: ``reason`` and ``status_at`` accept only these, so ``status('mnp')`` is a load error
#: rather than a condition that is never true.
STATUS_SYSTEMS = REPORTED_BY["opened"][0]
#: Systems that report a line's registration: the HSS, or network management (OSS).
REGISTRARS = REPORTED_BY["network_registered"][0]
#: ``time_of(system, fact)``: the facts a system reports, and the kinds that set them.
FACT_KINDS: dict[str, tuple[str, ...]] = {
    "status": STATUS_KINDS, "activated": ("activated",), "plan": ("opened", "plan_changed"),
    "signing": ("signing_changed",), "registered": ("network_registered",),
    "balance": BALANCE_KINDS, "topup": ("topped_up",), "arrears": ("balance_reported",),
}
PROFILE_NAMES = ("star_level", "seed_user", "value_tier", "home_cell", "name", "do_not_disturb")
#: Charge items that are not products (``charged.item``).
NON_PRODUCT_ITEMS = frozenset({"plan", "usage"})

Dep = tuple[str, str | None]   # (event kind, reporting system or None for any)


@dataclass(frozen=True, slots=True)
class Domain:
    """The values a function or item field can take, when they are enumerated.

    The rule checker rejects a literal compared with such a term that is not one of
    ``values`` (``status('bss') == 'actve'``): the comparison could never hold, so the
    rule would be silently dead. ``many`` marks list values (``plan_networks()``,
    ``signing()``) whose *elements* are in ``values`` (``'5g' in signing()``). The values
    come from the schemas' enums and the unified view, never from a copied list.
    """

    what: str
    values: tuple[str, ...]
    many: bool = False


STATUS_DOMAIN = Domain("status", STATUSES)
REASON_DOMAIN = Domain("suspension reason", tuple(r.value for r in SuspendReason))
NETWORKS_DOMAIN = Domain("network generation", tuple(r.value for r in Rat), many=True)
SYSTEM_DOMAIN = Domain("system", tuple(s.value for s in SourceSystem))
ORDER_DOMAIN = Domain("order state", ORDER_STATES)
#: ``profile(name)`` fields whose values the schema enumerates.
PROFILE_DOMAINS = {"value_tier": Domain("value tier", tuple(v.value for v in ValueTier))}
_EMPTY: dict[str, Any] = {}


class Env:
    """One evaluation: the view, the current item of an ``each`` rule, and explain notes."""

    __slots__ = ("explain", "item", "item_id", "refunds", "view")

    def __init__(self, view: dict[str, Any]) -> None:
        self.view = view
        self.item: dict[str, Any] | None = None
        self.item_id: str = ""
        self.explain: dict[str, tuple[str, int | None]] | None = None
        self.refunds: dict[str, int] | None = None

    def refund_times(self) -> dict[str, int]:
        """charge id -> time of its refund (computed once per evaluation)."""
        if self.refunds is None:
            self.refunds = {c["charge_id"]: c["t"] for c in self.view["charges"]
                            if c["kind"] == "refunded"}
        return self.refunds

    def note(self, key: str, text: str, t: int | None) -> None:
        if self.explain is not None:
            self.explain[key] = (text, t)


# --- formatting ----------------------------------------------------------------------------
def iso(t: int | None) -> str:
    """UTC ISO 8601 of epoch ms (milliseconds only when not zero).

    >>> iso(1_795_654_800_000), iso(1_795_654_800_123)
    ('2026-11-26T01:00:00Z', '2026-11-26T01:00:00.123Z')
    """
    if t is None:
        return "none"
    dt = datetime.fromtimestamp(t / 1000, UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{t % 1000:03d}Z" if t % 1000 else f"{text}Z"


def money(cents: int | None) -> str:
    """Cents as currency units with two decimals (``-2300`` -> ``-23.00``)."""
    if cents is None:
        return "unknown"
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def stamp(t: int | None) -> str:
    """A time inside evidence text, formatted only if the episode fires (see :func:`expand`)."""
    return "none" if t is None else f"\u27e8{t}\u27e9"


_STAMP = re.compile("\u27e8(-?\\d+)\u27e9")


def expand(text: str) -> str:
    """Evidence text with its stamps as ISO times.

    >>> expand(reported("active", 1_795_654_800_000))
    'active @ 2026-11-26T01:00:00Z'
    """
    return _STAMP.sub(lambda m: iso(int(m.group(1))), text) if "\u27e8" in text else text


def reported(text: str, t: int | None) -> str:
    return f"{text} @ {stamp(t)}"


# --- functions over the view ---------------------------------------------------------------
def _slot(env: Env, system: str, name: str) -> dict[str, Any] | None:
    return env.view["systems"].get(system, _EMPTY).get(name)


def f_status(env: Env, system: str) -> str | None:
    slot = env.view["systems"].get(system, _EMPTY).get("status")
    if env.explain is not None:
        if slot is None:
            env.note(f"{system}.status", "none", None)
        else:
            why = f" ({slot['reason']})" if slot.get("reason") else ""
            env.note(f"{system}.status", reported(f"{slot['v']}{why}", slot["t"]), slot["t"])
    return slot["v"] if slot else None


def f_reason(env: Env, system: str) -> str | None:
    slot = _slot(env, system, "status")
    reason = slot.get("reason") if slot else None
    if env.explain is not None and slot is not None:
        env.note(f"{system}.status", reported(f"{slot['v']} ({reason})" if reason else slot["v"],
                                         slot["t"]), slot["t"])
    return reason


def f_status_at(env: Env, system: str, t: int | None) -> str | None:
    if t is None:
        return None
    found = _status_at(env.view, system, t)
    if env.explain is not None:
        env.note(f"{system}.status_at", f"{found or 'unknown'} as of {stamp(t)}", None)
    return found


def f_time_of(env: Env, system: str, fact: str) -> int | None:
    slot = _slot(env, system, fact)
    t = slot["t"] if slot else None
    if env.explain is not None:
        env.note(f"{system}.{fact}", reported(str(slot["v"]), t) if slot else "never", t)
    return t


def _plan(env: Env) -> dict[str, Any] | None:
    slot = _slot(env, "bss", "plan")
    if slot is not None and env.explain is not None:
        env.note("bss.plan", reported(f"{slot['v']} [{','.join(slot['networks'])}]", slot["t"]),
                 slot["t"])
    return slot


def f_plan(env: Env) -> str | None:
    slot = _plan(env)
    return slot["v"] if slot else None


def f_plan_networks(env: Env) -> list[str] | None:
    slot = _plan(env)
    return slot["networks"] if slot else None


def f_signing(env: Env) -> list[str] | None:
    slot = _slot(env, "hss", "signing")
    if env.explain is not None:
        env.note("hss.signing", reported(",".join(slot["v"]) or "nothing", slot["t"]) if slot
                 else "never reported", slot["t"] if slot else None)
    return slot["v"] if slot else None


def f_registered(env: Env) -> bool:
    """Whether the line ever attached, as the HSS or network management reported it (the
    first report of either: the view keeps each system's first registration)."""
    found = [(slot["t"], system, slot) for system in REGISTRARS
             if (slot := _slot(env, system, "registered")) is not None]
    if env.explain is not None:
        if found:
            t, system, slot = min(found, key=lambda f: f[0])
            env.note("registered", reported(f"{slot['v']} on {slot.get('cell')} by {system}", t),
                     t)
        else:
            env.note("registered", "never", None)
    return bool(found)


def f_balance(env: Env) -> int | None:
    slot = env.view["systems"].get("billing", _EMPTY).get("balance")
    if slot is None:
        return None
    if env.explain is not None:
        env.note("billing.balance", reported(money(slot["v"]), slot["t"]), slot["t"])
    return slot["v"]


def f_arrears(env: Env) -> int | None:
    slot = _slot(env, "billing", "arrears")
    if slot is not None and env.explain is not None:
        env.note("billing.arrears", reported(money(slot["v"]), slot["t"]), slot["t"])
    return slot["v"] if slot else None


def f_topup_time(env: Env) -> int | None:
    slot = _slot(env, "billing", "topup")
    if slot is not None and env.explain is not None:
        env.note("billing.topup", reported(f"{money(slot['v'])} via {slot.get('channel')}",
                                      slot["t"]), slot["t"])
    return slot["t"] if slot else None


def f_topup_amount(env: Env) -> int | None:
    f_topup_time(env)
    slot = _slot(env, "billing", "topup")
    return slot["v"] if slot else None


def f_monthly_fee(env: Env) -> int | None:
    """Last ``plan`` charge plus the fees of the products ordered now (None: no plan charge
    seen yet, so the fee is unknown)."""
    charges = env.view["charges"]
    i = len(charges) - 1
    while i >= 0:
        c = charges[i]
        if c["item"] == "plan" and c["kind"] == "charged":
            break
        i -= 1
    else:
        return None
    total = charges[i]["amount"]
    for p in env.view["products"].values():
        fee = p.get("fee")
        if fee and (p.get("order") or _EMPTY).get("v") == "ordered":
            total += fee
    if env.explain is not None:
        env.note("billing.monthly_fee", money(total), None)
    return total


def f_product(env: Env, pid: str | None) -> dict[str, Any] | None:
    raw = env.view["products"].get(pid) if pid is not None else None
    if raw is None and env.explain is not None:
        env.note(f"product.{pid}", "never ordered", None)
    return raw


def f_port_out_deadline(env: Env) -> int | None:
    po = env.view.get("port_out")
    if po is None:
        return None
    if env.explain is not None:
        env.note("mnp.port_out", reported(f"to {po.get('recipient')}, deadline {stamp(po['deadline'])}",
                                     po["t"]), po["t"])
    return po["deadline"]


def f_profile(env: Env, name: str) -> Any:
    slot = env.view["profile"].get(name)
    if slot is not None and env.explain is not None:
        env.note(f"profile.{name}", reported(str(slot["v"]), slot["t"]), slot["t"])
    return slot["v"] if slot else None


def f_max(env: Env, *values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def f_min(env: Env, *values: Any) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


# --- the function table --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Function:
    """A function rule expressions may call: implementation, arity, what it depends on.

    ``deps(consts)`` gets the constant arguments (``None`` where an argument is not a
    constant) and returns ``(event kind, system)`` pairs; ``checks`` validates constant
    arguments at load time (index -> allowed values); ``domain(consts)`` says which
    values the result can take, so literals compared with it are checked at load time.
    """

    impl: Callable[..., Any]
    arity: tuple[int, int]
    deps: Callable[[list[Any]], set[Dep]]
    doc: str
    checks: tuple[tuple[int, tuple[str, ...]], ...] = ()
    #: the values its result can take, given its constant arguments (None: not enumerated)
    domain: Callable[[list[Any]], Domain | None] | None = None


def _on(kinds: tuple[str, ...], system: str | None = None) -> Callable[[list[Any]], set[Dep]]:
    return lambda consts: {(k, system) for k in kinds}


def _on_system(kinds_of: Callable[[list[Any]], tuple[str, ...]]) -> Callable[[list[Any]], set[Dep]]:
    return lambda consts: {(k, consts[0]) for k in kinds_of(consts)}


_SYS = ((0, SYSTEMS),)
_STATUS_SYS = ((0, STATUS_SYSTEMS),)
FUNCTIONS: dict[str, Function] = {
    "status": Function(f_status, (1, 1), _on_system(lambda c: STATUS_KINDS),
                       "status a system last reported: opened, active, suspended, closed",
                       _STATUS_SYS, lambda c: STATUS_DOMAIN),
    "reason": Function(f_reason, (1, 1), _on_system(lambda c: STATUS_KINDS),
                       "reason of the system's suspension (arrears, request, ...)", _STATUS_SYS,
                       lambda c: REASON_DOMAIN),
    "status_at": Function(f_status_at, (2, 2), _on_system(lambda c: STATUS_KINDS),
                          "status the system had reported as of instant t", _STATUS_SYS,
                          lambda c: STATUS_DOMAIN),
    "time_of": Function(f_time_of, (2, 2),
                        _on_system(lambda c: FACT_KINDS.get(c[1]) or ()),
                        "when the system last reported the fact", (*_SYS, (1, tuple(FACT_KINDS)))),
    "plan": Function(f_plan, (0, 0), _on(("opened", "plan_changed"), "bss"), "BSS plan id"),
    "plan_networks": Function(f_plan_networks, (0, 0), _on(("opened", "plan_changed"), "bss"),
                              "generations the BSS plan includes",
                              domain=lambda c: NETWORKS_DOMAIN),
    "signing": Function(f_signing, (0, 0), _on(("signing_changed",), "hss"),
                        "generations HSS signing allows", domain=lambda c: NETWORKS_DOMAIN),
    "registered": Function(f_registered, (0, 0),
                           lambda c: {("network_registered", s) for s in REGISTRARS},
                           "the line has attached to the network (HSS or network management)"),
    "balance": Function(f_balance, (0, 0), _on(BALANCE_KINDS, "billing"), "billing balance"),
    "arrears": Function(f_arrears, (0, 0), _on(("balance_reported",), "billing"),
                        "arrears billing reported"),
    "topup_time": Function(f_topup_time, (0, 0), _on(("topped_up",), "billing"),
                           "time of the last top-up"),
    "topup_amount": Function(f_topup_amount, (0, 0), _on(("topped_up",), "billing"),
                             "amount of the last top-up"),
    "monthly_fee": Function(f_monthly_fee, (0, 0),
                            lambda c: {("charged", "billing")} | {(k, None) for k in PRODUCT_KINDS},
                            "last plan charge plus the fees of ordered products"),
    "product": Function(f_product, (1, 1), _on(PRODUCT_KINDS),
                        "a product's record (fields as for each: product) or null"),
    "port_out_deadline": Function(f_port_out_deadline, (0, 0),
                                  _on(("port_out_requested", "port_out_cancelled")),
                                  "deadline of an open port-out request"),
    "profile": Function(f_profile, (1, 1), _on(("profile_changed",)), "a profile field",
                        ((0, PROFILE_NAMES),), lambda c: PROFILE_DOMAINS.get(c[0])),
    "max": Function(f_max, (1, 8), lambda c: set(), "largest non-null argument"),
    "min": Function(f_min, (1, 8), lambda c: set(), "smallest non-null argument"),
}
