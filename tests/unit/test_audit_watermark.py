"""Decisions at the event-time watermark: look-alikes settle, delivery order does not matter.

Every case runs through :class:`AuditHarness`, which drives the view and the audit the way
the batched worker does (clock = highest event time, watermark = clock - lateness).
"""

from __future__ import annotations

import itertools

import pytest

from agents.audit import parse_catalog
from agents.audit.catalog import default_catalog_path
from agents.audit.step import Audit
from agents.audit.testing import AuditHarness
from agents.unified_view import MAX_CHARGES, ms
from streams.unit import BatchUnit, DictStore, system_tables
from tests.unit.helpers import T0
from tests.unit.test_audit_rules import DUE_1H, charge, ev, healthy, refund
from tests.unit.test_unit import commit, envelope

T0_MS = ms(T0)
SUSPENDED = [ev("suspended", 50, reason="request"), ev("suspended", 50, "hss", reason="request")]
RULE = "charged-while-suspended"


def other(at: float) -> dict:
    """An unrelated subscriber's report: it only moves the partition's clock."""
    return {**ev("balance_reported", at, "billing", balance_cents=9_000),
            "subscriber_id": "S00000002", "event_id": f"other-{at}"}


def run(events: list[dict], *, until: float = 86_400, lateness_ms: int = 2_000,
        catalog=None, setup: list[dict] = SUSPENDED) -> AuditHarness:
    h = AuditHarness(catalog, lateness_ms=lateness_ms)
    for e in [*healthy(), *setup, *events]:
        h.send(e)
    h.advance_to(T0_MS + int(until * 1000))
    return h


@pytest.mark.parametrize("first", ["charge", "refund"])
def test_a_charge_and_its_refund_at_the_same_instant_settle_in_either_order(first: str) -> None:
    pair = [charge("CH-1", "plan", 100), refund("CH-1", 100)]
    h = run(pair if first == "charge" else pair[::-1])
    assert h.alerts(RULE) == [] and h.hints(RULE) == []


@pytest.mark.parametrize("delay", [0.5, 1.0, 1.9])
def test_a_refund_within_the_lateness_is_a_look_alike(delay: float) -> None:
    h = run([charge("CH-1", "plan", 100), other(100 + delay / 2), refund("CH-1", 100 + delay)])
    assert h.alerts() == [] and h.hints(RULE) == []


def test_a_refund_delivered_out_of_order_within_the_lateness_still_counts() -> None:
    # the refund (t=100.5) is sent after a report dated t=101.5: the watermark (99.5)
    # has not reached the charge yet, so nothing was decided
    h = run([charge("CH-1", "plan", 100), other(101.5), refund("CH-1", 100.5)])
    assert h.alerts() == [] and h.hints(RULE) == []


def test_a_refund_after_the_lateness_resolves_a_fired_alert_without_a_hint() -> None:
    # fired when the watermark passed 100 (clock 102); the refund at 103 reached the
    # worker before the watermark passed the hint's instant (102 = since + settle)
    h = run([charge("CH-1", "plan", 100), other(102), refund("CH-1", 103)])
    assert [(a.sequence, a.status) for a in h.alerts(RULE)] == [(1, "firing"), (2, "resolved")]
    assert ms(h.alerts(RULE)[1].ends_at) == T0_MS + 103_000
    assert h.hints(RULE) == []  # never told a customer, so nothing to withdraw


def test_the_hint_goes_out_after_its_settle_time_and_is_withdrawn_on_resolve() -> None:
    h = run([charge("CH-1", "plan", 100), other(103.9)], until=103.9)
    assert len(h.alerts(RULE)) == 1 and h.hints(RULE) == []
    h.advance_to(T0_MS + 104_000)  # since + settle (2 s) + lateness (2 s)
    [hint] = h.hints(RULE)
    assert hint.active and hint.hint_id == h.alerts(RULE)[0].fingerprint
    h.send(refund("CH-1", 200))
    h.advance_to(T0_MS + 202_000)
    assert [x.active for x in h.hints(RULE)] == [True, False]


def test_a_clear_undone_within_the_lateness_resolves_nothing() -> None:
    # barred at 100 (fires at 5m), unbarred at 700 and barred again at 700.5: the flap is
    # shorter than the lateness, the episode goes on
    h = run([], until=60, setup=[])
    for e in [ev("suspended", 100, "hss", reason="fraud"), other(500),
              ev("resumed", 700, "hss"), ev("suspended", 700.5, "hss", reason="fraud")]:
        h.send(e)
    h.advance_to(T0_MS + 3_800_000)
    assert [(a.status, a.sequence) for a in h.alerts("bss-active-hss-barred")] \
        == [("firing", 1), ("firing", 2)]  # the second is the 1h escalation, not a reopen


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_same_instant_reports_give_the_same_alerts_in_any_delivery_order(order) -> None:
    reports = [ev("port_out_requested", 100, "mnp", deadline=DUE_1H, recipient="cmcc"),
               ev("closed", 3700, "bss"), ev("closed", 3700, "hss")]
    h = run([reports[i] for i in order], setup=[])
    assert h.alerts("port-out-still-active") == []
    late = run([reports[0], reports[1], other(3701), ev("closed", 3700.5, "hss")], setup=[])
    assert late.alerts("port-out-still-active") == []
    missed = run([reports[0], reports[1], other(3703), ev("closed", 3703, "hss")], setup=[])
    assert [a.status for a in missed.alerts("port-out-still-active")] == ["firing", "resolved"]


def test_a_grant_credited_just_before_or_at_its_due_time_raises_nothing() -> None:
    promise = ev("granted", 100, grant_id="G-1", stage="promised", amount_cents=2000,
                 due_by=DUE_1H)
    for at in (3699.5, 3700, 3701):
        credit = ev("granted", at, "billing", grant_id="G-1", stage="credited",
                    amount_cents=2000)
        assert run([promise, credit]).alerts("grant-not-credited") == [], at


def test_a_rule_can_set_its_own_lateness_and_settle_time() -> None:
    text = default_catalog_path().read_text(encoding="utf-8").replace(
        "      - id: charged-while-suspended\n",
        "      - id: charged-while-suspended\n        lateness: 10s\n        settle: 30s\n")
    catalog = parse_catalog(text)
    h = run([charge("CH-1", "plan", 100), other(105), refund("CH-1", 105)], catalog=catalog)
    assert h.alerts(RULE) == []  # 5 s is within this rule's 10 s lateness
    h = run([charge("CH-1", "plan", 100), other(109.9)], until=109.9, catalog=catalog)
    assert h.alerts(RULE) == []
    h.advance_to(T0_MS + 110_000)
    assert len(h.alerts(RULE)) == 1 and h.hints(RULE) == []
    h.advance_to(T0_MS + 139_999)
    assert h.hints(RULE) == []
    h.advance_to(T0_MS + 140_000)  # since + 30 s settle + 10 s lateness
    assert len(h.hints(RULE)) == 1


def test_episodes_of_charges_gone_from_the_view_are_closed_as_expired() -> None:
    events = [charge(f"CH-{i:02d}", "plan", 100 + i) for i in range(MAX_CHARGES + 5)]
    h = run(events)
    state = h.states["S00000001"]
    assert len(state["episodes"]) <= MAX_CHARGES
    expired = [a for a in h.alerts(RULE) if a.status == "resolved"]
    assert len(expired) == 5 and all("expired" in a.annotations for a in expired)


def test_the_worker_fires_at_the_watermark_not_at_the_next_event_of_the_key() -> None:
    """The runtime used to judge a key's timer before its next event by event time alone:
    a refund 0.5 s after its charge fired the charge's alert first."""
    steps = [UnifiedViewStep(), Audit()]
    names = [s.name for s in steps] + list(system_tables(steps))
    unit = BatchUnit(steps, {n: DictStore() for n in names}, worker_id="w", idle_ms=None,
                     lateness_ms=2_000)
    evs = [*healthy(), *SUSPENDED, charge("CH-1", "plan", 100), refund("CH-1", 100.5),
           other(200)]
    unit.process_envelope(envelope("subscriber-state", 0, evs))
    c = commit(unit)
    assert [t for t, _, _ in c.outputs if t in ("alerts", "agent-hints")] == []


from agents.unified_view import UnifiedView as UnifiedViewStep  # noqa: E402
