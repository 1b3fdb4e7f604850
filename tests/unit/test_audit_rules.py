"""Every audit rule fires after its grace period and resolves when its condition clears."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.audit.testing import AuditHarness
from agents.unified_view import ms
from streams.simulator.catalog import GRACE_S
from tests.unit.helpers import T0, event

SS = "subscriber-state"
MSISDN = "8613800001234"
T0_MS = ms(T0)


def ev(kind: str, at: float, system: str = "bss", **fields):
    return event(SS, kind, at=at, system=system, msisdn=MSISDN, **fields)


def healthy(at: float = 0) -> list[dict]:
    """A subscriber every system agrees on: 4G plan, active, registered, balance 100.00.

    All at one instant, like the simulator's bootstrap: event ids sort in emission order."""
    return [{**e, "event_id": f"boot-{i:02d}"} for i, e in enumerate([
        ev("opened", at, plan_id="plan-4g-39", plan_networks=["4g"]),
        ev("opened", at, "hss", plan_id="plan-4g-39", plan_networks=["4g"]),
        ev("activated", at), ev("activated", at, "hss"), ev("activated", at, "billing"),
        ev("signing_changed", at, "hss", networks=["4g"]),
        ev("network_registered", at, "hss", rat="4g", cell_id="C-00042"),
        ev("balance_reported", at, "billing", balance_cents=10_000, arrears_cents=0),
    ])]


def ordered(p: str, at: float, platform: str = "vas") -> list[dict]:
    return [ev("product_ordered", at, product_id=p, platform=platform, monthly_fee_cents=500),
            ev("product_provisioned", at + 5, platform, product_id=p)]


def charge(cid: str, item: str, at: float, balance: int = 9_000) -> dict:
    return ev("charged", at, "billing", charge_id=cid, item=item, amount_cents=500,
              balance_cents=balance)


def refund(cid: str, at: float) -> dict:
    return ev("refunded", at, "billing", charge_id=cid, amount_cents=500, balance_cents=9_500)


DUE_1H = (T0 + timedelta(seconds=100 + 3600)).isoformat()
# rule: (setup, fault events, start offset s, item, clearing events, cleared at s)
SCENARIOS: dict[str, tuple[list, list, float, str | None, list, float]] = {
    "bss-active-hss-barred": (
        [], [ev("suspended", 100, "hss", reason="fraud")], 100, None,
        [ev("resumed", 700, "hss")], 700),
    "bss-suspended-hss-active": (
        [], [ev("suspended", 100, reason="request")], 100, None,
        [ev("suspended", 700, "hss", reason="request")], 700),
    "product-not-provisioned": (
        [], [ev("product_ordered", 100, product_id="vas-news", platform="vas")], 100, "vas-news",
        [ev("product_provisioned", 1000, "vas", product_id="vas-news")], 1000),
    "cancelled-still-provisioned": (
        ordered("vas-news", 10), [ev("product_cancelled", 100, product_id="vas-news",
                                     platform="vas")], 100, "vas-news",
        [ev("product_deprovisioned", 1000, "vas", product_id="vas-news")], 1000),
    "cancelled-still-charged": (
        [*ordered("vas-news", 10), ev("product_cancelled", 50, product_id="vas-news",
                                      platform="vas"),
         ev("product_deprovisioned", 60, "vas", product_id="vas-news")],
        [charge("CH-1", "vas-news", 100)], 100, "CH-1", [refund("CH-1", 200)], 200),
    "charged-while-suspended": (
        [ev("suspended", 50, reason="request"), ev("suspended", 50, "hss", reason="request")],
        [charge("CH-2", "plan", 100)], 100, "CH-2", [refund("CH-2", 300)], 300),
    "charged-without-product": (
        [], [charge("CH-3", "vas-music", 100)], 100, "CH-3", [refund("CH-3", 300)], 300),
    "topup-still-suspended": (
        [ev("balance_reported", 20, "billing", balance_cents=-500, arrears_cents=500),
         ev("suspended", 30, reason="arrears"), ev("suspended", 40, "hss", reason="arrears")],
        [ev("topped_up", 100, "billing", amount_cents=1000, balance_cents=500)], 100, None,
        [ev("resumed", 800), ev("resumed", 820, "hss")], 820),
    "5g-plan-without-5g-signing": (
        [], [ev("plan_changed", 100, plan_id="plan-5g-129", plan_networks=["4g", "5g"])], 100,
        None, [ev("signing_changed", 2000, "hss", networks=["4g", "5g"])], 2000),
    "activated-not-registered": (
        None, [ev("opened", 0, plan_id="plan-4g-39", plan_networks=["4g"]),
               ev("activated", 100)], 100, None,
        [ev("network_registered", 8000, "hss", rat="4g", cell_id="C-00042")], 8000),
    "grant-not-credited": (
        [], [ev("granted", 100, grant_id="G-1", stage="promised", amount_cents=2000,
                due_by=DUE_1H)], 3700, "G-1",
        [ev("granted", 4300, "billing", grant_id="G-1", stage="credited", amount_cents=2000)],
        4300),
    "port-out-still-active": (
        [], [ev("port_out_requested", 100, "mnp", deadline=DUE_1H, recipient="cmcc")], 3700,
        None, [ev("closed", 4300, "hss")], 4300),
    # agent-only service reminders
    "arrears-suspension-imminent": (
        [], [charge("CH-4", "usage", 100, balance=-500)], 100, None,
        [ev("topped_up", 400, "billing", amount_cents=1000, balance_cents=500)], 400),
    "suspended-for-arrears": (
        [], [ev("suspended", 100, reason="arrears")], 100, None, [ev("resumed", 900)], 900),
    "balance-below-monthly-fee": (
        [charge("CH-5", "plan", 10, balance=10_000)],
        [charge("CH-6", "usage", 100, balance=300)], 100, None,
        [ev("topped_up", 5000, "billing", amount_cents=10_000, balance_cents=10_300)], 5000),
}
GRACE = {**GRACE_S, "arrears-suspension-imminent": 0, "suspended-for-arrears": 0,
         "balance-below-monthly-fee": 3600}


def run_scenario(rule: str) -> tuple[AuditHarness, float]:
    setup, fault, start, _, _, _ = SCENARIOS[rule]
    h = AuditHarness()
    for e in (healthy() if setup is not None else []) + (setup or []) + fault:
        h.send(e)
    return h, start


def test_every_rule_of_the_catalog_has_a_scenario() -> None:
    assert sorted(SCENARIOS) == sorted(r.id for r in AuditHarness().audit.catalog.rules)


@pytest.mark.parametrize("rule", sorted(SCENARIOS))
def test_rule_fires_after_its_grace_and_resolves(rule: str) -> None:
    h, start = run_scenario(rule)
    _, _, _, item, clear, cleared = SCENARIOS[rule]
    grace = GRACE[rule]
    late = h.lateness
    start_ms = T0_MS + int(start * 1000)
    # decided once the watermark (clock - lateness) passes the end of the grace period
    h.advance_to(start_ms + grace * 1000 + late - 1)
    assert h.alerts(rule) == [] and h.hints(rule) == []
    h.advance_to(start_ms + grace * 1000 + late)
    rec = h.audit.catalog.get(rule)
    if rec.technician:
        assert len(h.alerts(rule)) == 1, h.alerts(rule)
    # the hint waits until the episode held for its settle time (the lateness by default)
    assert h.hints(rule) == [] if grace * 1000 < late else len(h.hints(rule)) == rec.agent
    h.advance_to(start_ms + max(grace * 1000, late) + late)
    fired = h.alerts(rule) if rec.technician else h.hints(rule)
    assert len(fired) == 1, fired
    first = fired[0]
    if rec.technician:
        assert first.status == "firing" and first.sequence == 1
        assert ms(first.starts_at) == start_ms
        assert first.labels.get("item") == item and first.labels["rule"] == rule
        assert first.evidence and first.annotations["summary"]
    if rec.agent:
        hint = h.hints(rule)[0]
        assert hint.active and hint.script
        assert hint.kind == ("known_fault" if rec.technician else "service_reminder")
        assert hint.hint_id == (first.fingerprint if rec.technician else hint.hint_id)
    for e in clear:
        h.send(e)
    h.advance_to(T0_MS + cleared * 1000 + late)
    if rec.technician:
        last = h.alerts(rule)[-1]
        assert last.status == "resolved" and last.fingerprint == first.fingerprint
        assert last.sequence == len(h.alerts(rule)) and ms(last.ends_at) == T0_MS + cleared * 1000
    if rec.agent:
        last_hint = h.hints(rule)[-1]
        assert not last_hint.active and last_hint.progress
        assert last_hint.progress != hint.progress and last_hint.expires_at < hint.expires_at
    assert h.states["S00000001"] is None or rule not in str(h.states["S00000001"])


def test_a_transient_shorter_than_the_grace_produces_nothing() -> None:
    h = AuditHarness()
    for e in [*healthy(), ev("product_ordered", 100, product_id="vas-news", platform="vas"),
              ev("suspended", 110, reason="arrears"), ev("product_provisioned", 160, "vas",
                                                          product_id="vas-news"),
              ev("suspended", 170, "hss", reason="arrears")]:
        h.send(e)
    h.advance_to(T0_MS + 86_400_000)
    assert h.alerts() == []
    assert {x.source for x in h.hints()} == {"audit:suspended-for-arrears"}


def test_escalation_sends_one_update_and_resolution_increments_the_sequence() -> None:
    h = AuditHarness()
    for e in [*healthy(), ev("product_ordered", 100, product_id="vas-news", platform="vas")]:
        h.send(e)
    h.advance_to(T0_MS + 100_000 + 3 * 3_600_000)
    seq = [(a.sequence, a.status, a.severity) for a in h.alerts()]
    assert seq == [(1, "firing", "warning"), (2, "firing", "critical")]
    assert ms(h.alerts()[1].starts_at) == T0_MS + 100_000
    assert len(h.hints()) == 1  # escalation is for technicians; the agent's hint stays
    h.send(ev("product_provisioned", 4 * 3600, "vas", product_id="vas-news"))
    assert [(a.sequence, a.status) for a in h.alerts()][-1] == (2, "firing")  # not yet:
    h.advance_to(T0_MS + 4 * 3_600_000 + h.lateness)  # decided at the watermark
    assert [(a.sequence, a.status) for a in h.alerts()][-1] == (3, "resolved")
    assert len({a.fingerprint for a in h.alerts()}) == 1


def test_a_late_event_fires_at_once_with_the_start_of_the_condition() -> None:
    h = AuditHarness()
    for e in healthy():
        h.send(e)
    h.advance_to(T0_MS + 3_600_000)
    h.send(ev("suspended", 100, "hss", reason="fraud"))  # 58 minutes late
    [a] = h.alerts()
    assert ms(a.starts_at) == T0_MS + 100_000 and a.annotations["summary"].endswith("for 5m")
