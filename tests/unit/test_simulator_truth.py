"""The truth agrees with the events: what it claims is visible in the stream itself.

Open injected faults are checked against the project's own unified view
(``agents.unified_view``) folded from the emitted ``subscriber-state`` events, so the
truth is tied to what a consumer can actually see, not to the simulator's internals.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.unified_view import apply_event, new_view, status_of
from schemas.registry import decode
from streams.simulator.truth import (
    AttenuatingLine,
    Churn,
    ComplaintTruth,
    Decoy,
    DegradingCell,
    Inconsistency,
    InvalidInput,
    ProtectedContact,
    TerminalMismatch,
)
from tests.unit.test_simulator import Run, simulate


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return simulate(tmp_path_factory.mktemp("sim-truth"), seed=5, events=20_000)


@pytest.fixture(scope="module")
def events(run: Run) -> dict[str, list[Any]]:
    bad = {run.bootstrap + r.seq for r in run.truth if isinstance(r, InvalidInput)}
    out: dict[str, list[Any]] = defaultdict(list)
    for i, (topic, _key, value, _ts) in enumerate(run.records):
        if i not in bad:
            out[topic].append(decode(topic, value))
    return out


def _views(events: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, Any]] = {}
    for ev in events["subscriber-state"]:
        view = views.setdefault(ev.subscriber_id, new_view(ev.subscriber_id, ev.msisdn))
        apply_event(view, ev)
    return views


def _still_visible(rule: str, item: str | None, view: dict[str, Any],
                   charges: dict[str, set[str]]) -> bool:
    bss, hss = status_of(view, "bss"), status_of(view, "hss")
    product = view["products"].get(item or "", {})
    order = product.get("order", {}).get("v")
    provisioned = product.get("prov", {}).get("v")
    if rule == "bss-active-hss-barred":
        return bss == "active" and hss == "suspended"
    if rule == "bss-suspended-hss-active":
        return bss in ("suspended", "closed") and hss == "active"
    if rule == "product-not-provisioned":
        return order == "ordered" and not provisioned
    if rule == "cancelled-still-provisioned":
        return order == "cancelled" and provisioned is True
    if rule in ("cancelled-still-charged", "charged-while-suspended", "charged-without-product"):
        return item in charges["charged"] and item not in charges["refunded"]
    if rule == "topup-still-suspended":
        return "suspended" in (bss, hss)
    if rule == "5g-plan-without-5g-signing":
        plan = view["systems"]["bss"]["plan"]["networks"]
        return "5g" in plan and "5g" not in view["systems"]["hss"]["signing"]["v"]
    if rule == "activated-not-registered":
        return "activated" in view["systems"]["bss"] and "registered" not in view["systems"].get(
            "hss", {})
    if rule == "grant-not-credited":
        grant = view["grants"][item]
        return "promised" in grant and "credited" not in grant
    if rule == "port-out-still-active":
        return view["port_out"] is not None and hss == "active"
    raise AssertionError(rule)


def test_open_injected_faults_are_visible_in_the_unified_view(run: Run, events: Any) -> None:
    views = _views(events)
    charges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for ev in events["subscriber-state"]:
        if ev.kind in ("charged", "refunded"):
            charges[ev.subscriber_id][ev.kind].add(ev.charge_id)
    checked = defaultdict(int)
    for r in run.truth:
        if isinstance(r, Inconsistency) and r.injected and r.end is None:
            view = views[r.subscriber_id]
            assert _still_visible(r.rule, r.item, view, charges[r.subscriber_id]), r
            checked[r.rule] += 1
    assert len(checked) == 12


def test_complaints_churn_and_contacts_happen_where_the_truth_says(run: Run, events: Any) -> None:
    opened = {c.complaint_id: c for c in events["complaints"] if c.stage == "opened"}
    port_outs = {(e.subscriber_id, e.event_time) for e in events["subscriber-state"]
                 if e.kind == "port_out_requested"}
    requests = {r.request_id: r for r in events["contact-requests"]}
    seen = defaultdict(int)
    for r in run.truth:
        if isinstance(r, ComplaintTruth):
            event = opened[r.complaint_id]
            assert (event.subscriber_id, event.event_time) == (r.subscriber_id, r.opened_at)
            assert (event.channel, event.severity, event.category) == (
                r.channel, r.severity, r.category)
            assert r.precursors and all(p.at < r.opened_at for p in r.precursors)
        elif isinstance(r, Churn):
            assert (r.subscriber_id, r.port_out_at) in port_outs
            assert all(p.at <= r.port_out_at for p in r.precursors)
        elif isinstance(r, Decoy):
            if r.kind == "complaint_without_precursors":
                assert opened[r.complaint_id].subscriber_id == r.subscriber_id
            else:
                assert r.precursors and all(p.at <= r.at for p in r.precursors)
        elif isinstance(r, ProtectedContact):
            request = requests[r.request_id]
            assert (request.subscriber_id, request.purpose, request.channel) == (
                r.subscriber_id, r.purpose, r.channel)
            seen[r.expected] += 1
            if r.purpose == "service":
                assert r.expected == "allow" and "seed_user" in r.reasons
        else:
            continue
        seen[r.type] += 1
    assert seen["complaint"] and seen["churn"] and seen["decoy"]
    assert seen["allow"] and seen["suppress"]


def test_network_truth_shows_in_kpis(run: Run, events: Any) -> None:
    kpis = events["network-kpis"]
    cells = defaultdict(list)
    lines = defaultdict(list)
    for k in kpis:
        (cells[k.cell_id] if k.kind == "cell_kpi" else lines[k.line_id]).append(k)
    degraded = [r for r in run.truth if isinstance(r, DegradingCell)]
    checked = 0
    for r in degraded:
        after = [k for k in cells[r.cell_id] if k.event_time >= r.ramp_end
                 and (r.end is None or k.event_time < r.end)]
        for k in after:
            value = {"drop_rate": k.drop_rate, "call_setup_success": k.call_setup_success,
                     "throughput_mbps": k.throughput_mbps}[r.metric]
            if r.metric == "throughput_mbps":
                assert value < r.from_ * 0.6
            else:
                assert abs(value - r.to) < abs(r.from_ - r.to) * 0.5
            checked += 1
    assert checked > 10
    attenuating = [r for r in run.truth if isinstance(r, AttenuatingLine)]
    checked = 0
    for r in attenuating:
        late = [m for m in lines[r.line_id] if m.event_time >= r.reaches_end_at]
        assert all(m.onu_rx_power_dbm < -27.0 for m in late)
        assert all(m.measured_mbps < 0.7 * min(m.contracted_mbps, m.terminal_max_mbps)
                   for m in late)
        checked += len(late)
    assert checked > 3
    for r in run.truth:
        if isinstance(r, TerminalMismatch):
            assert r.terminal_max_mbps < r.contracted_mbps
            assert all(m.measured_mbps <= r.terminal_max_mbps for m in lines[r.line_id])


def test_dropped_call_precursors_are_real_dropped_calls(run: Run, events: Any) -> None:
    calls = defaultdict(list)
    for c in events["call-events"]:
        if c.kind == "network_call" and c.result == "dropped":
            calls[c.subscriber_id].append(c.event_time)
    found = 0
    for r in run.truth:
        if isinstance(r, ComplaintTruth):
            for p in r.precursors:
                if p.kind == "dropped_calls":
                    extra: dict[str, Any] = p.model_extra or {}
                    last = datetime.fromisoformat(extra["last_at"])
                    window = [t for t in calls[r.subscriber_id]
                              if p.at <= t <= last + timedelta(milliseconds=1)]
                    assert len(window) >= extra["count"]
                    found += 1
    assert found


def test_truth_file_round_trips_through_the_models(run: Run, tmp_path: Path) -> None:
    lines = run.truth_path.read_bytes().splitlines()
    assert len(lines) == len(run.truth)
    assert run.truth[0].type == "run" and run.truth[-1].type == "summary"
