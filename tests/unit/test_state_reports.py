"""Nothing valid is ignored: every ``subscriber-state`` report the schema accepts changes
what the audit can read from the unified view, and every other (kind, system) pair is
rejected when decoded, with a message naming the systems that report the kind."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from agents.audit.facts import FUNCTIONS, PROFILE_NAMES, SYSTEMS, Env
from agents.audit.items import ITEM_KINDS
from agents.unified_view import apply_event, new_view
from schemas.registry import SUBSCRIBER_STATE, decode
from schemas.subscriber_state import REPORTED_BY
from tests.unit.helpers import event

SID, MSISDN = "S00000001", "8613800001234"
FAR = 2**62


def _decode(kind: str, system: str, at: float, **fields: Any) -> Any:
    ev = event(SUBSCRIBER_STATE, kind, at=at, system=system, msisdn=MSISDN, **fields)
    return decode(SUBSCRIBER_STATE, orjson.dumps(ev))


def _baseline() -> dict[str, Any]:
    """A view with something for every report to change: a charge to refund, a port-out to
    cancel, a promised grant; nothing else."""
    view = new_view(SID, MSISDN)
    for kind, system, fields in [
        ("charged", "billing", {"charge_id": "CH-1", "item": "plan", "amount_cents": 100,
                                "balance_cents": None}),
        ("port_out_requested", "mnp", {"deadline": "2026-11-27T00:00:00+08:00"}),
        ("granted", "bss", {}),
    ]:
        apply_event(view, _decode(kind, system, 0, **fields))
    return view


def audit_facts(view: dict[str, Any]) -> dict[Any, Any]:
    """Every fact rule expressions can read from ``view``: every function for every
    argument the catalog allows, and every field of every item.

    Not ``time_of``: it tells when a system reported a fact under any name, so it would see
    a report no rule can read the content of (the HSS-only ``registered()`` of old)."""
    env = Env(view)
    out: dict[Any, Any] = {}
    for name, fn in FUNCTIONS.items():
        allowed = dict(fn.checks)
        if name in ("max", "min", "duration", "time_of"):
            continue
        if name == "status_at":
            args = [(s, FAR) for s in allowed[0]]
        elif name == "product":
            args = [("VAS-MUSIC",)]
        elif name == "profile":
            args = [(p,) for p in PROFILE_NAMES]
        elif fn.arity[0] == 1:
            args = [(s,) for s in allowed[0]]
        else:
            args: list[tuple[Any, ...]] = [()]
        for a in args:
            out[(name, *a)] = fn.impl(env, *a)
    for kind, items in ITEM_KINDS.items():
        for item_id, raw in items.items(view):
            env.item, env.item_id = raw, item_id
            for field, getter in items.fields.items():
                out[(kind, item_id, field)] = getter(env, raw, item_id)
    return out


# every kind x every system, and both grant stages
CASES = [(kind, system, {}) for kind in REPORTED_BY for system in SYSTEMS]
CASES += [("granted", system, {"stage": "credited"}) for system in SYSTEMS]


def _accepted(kind: str, system: str, fields: dict[str, Any]) -> bool:
    if kind == "granted":
        return system == ("billing" if fields.get("stage") == "credited" else "bss")
    return system in REPORTED_BY[kind][0]


@pytest.mark.parametrize(("kind", "system", "fields"), CASES,
                         ids=[f"{k}-{s}{'-' + f['stage'] if f else ''}" for k, s, f in CASES])
def test_a_valid_report_changes_what_the_audit_reads(kind: str, system: str,
                                                     fields: dict[str, Any]) -> None:
    if kind == "charged":   # a new charge (the baseline's CH-1 is there to be refunded)
        fields = {**fields, "charge_id": "CH-2", "balance_cents": None}
    if not _accepted(kind, system, fields):
        with pytest.raises(ValidationError, match="is reported by"):
            _decode(kind, system, 10, **fields)
        return
    view = _baseline()
    before = audit_facts(view)
    apply_event(view, _decode(kind, system, 10, **fields))
    assert audit_facts(view) != before, f"{kind} from {system} changes nothing the audit reads"


def test_every_system_reports_something_and_every_kind_has_a_reporter() -> None:
    reporters = {s for systems, _ in REPORTED_BY.values() for s in systems}
    assert reporters == set(SYSTEMS)
    assert all(systems for systems, _ in REPORTED_BY.values())


def test_a_product_platform_must_provision_products() -> None:
    with pytest.raises(ValidationError, match="products are provisioned by vas or pcrf or hss"):
        _decode("product_ordered", "bss", 0, platform="billing")


def test_registration_by_network_management_counts() -> None:
    view = new_view(SID, MSISDN)
    env = Env(view)
    assert FUNCTIONS["registered"].impl(env) is False
    apply_event(view, _decode("network_registered", "network", 5, rat="4g"))
    assert FUNCTIONS["registered"].impl(env) is True
    assert ("network_registered", "network") in FUNCTIONS["registered"].deps([])
