"""Look-alikes: benign conditions that must not alert, exactly as the truth describes them.

A seeded run without Kafka (the path of ``foresight simulate --no-kafka``) must contain,
for every audit rule, look-alikes of each variant with ``must_fire: false``; the records
behind them must show what the variant promises (same event time in both delivery orders,
a clearing report sent after a later-dated one but within the lateness), and folding the
subscriber's events in event-time order through the project's unified view must show the
condition exactly during the truth's ``[start, end)``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest

from agents.unified_view import apply_event, new_view, status_of
from schemas.registry import decode
from streams.cli import main
from streams.simulator.catalog import GRACE_S
from streams.simulator.config import SimConfig
from streams.simulator.truth import (
    LOOKALIKE_KINDS,
    Inconsistency,
    InvalidInput,
    RuleId,
    load_truth,
    must_fire,
    parse_truth_line,
)
from tests.unit.test_simulator import Run, simulate

LATENESS_MS = 3000   # not the default, so the test notices if --lateness is ignored


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return simulate(tmp_path_factory.mktemp("sim-lookalikes"), seed=21, events=9000,
                    subscribers=1000, faults_per_rule=6, lookalike_rate=2.0,
                    lateness_s=LATENESS_MS / 1000)


@pytest.fixture(scope="module")
def lookalikes(run: Run) -> list[Inconsistency]:
    """Look-alikes that ended (a run bounded by --events may stop in the middle of one)."""
    every = [r for r in run.truth if isinstance(r, Inconsistency) and r.lookalike]
    ended = [r for r in every if r.end is not None]
    end_of_run = run.truth[-1].end
    for r in every:
        if r.end is None:   # stopped before its clearing report: undecidable
            assert r.must_fire is None and datetime.fromisoformat(
                r.detail["clear_at"]) >= end_of_run, r
    assert len(every) - len(ended) <= 12
    return ended


@pytest.fixture(scope="module")
def state(run: Run) -> list[tuple[int, Any]]:
    """(position in the stream, decoded event) of every valid subscriber-state record."""
    bad = {run.bootstrap + r.seq for r in run.truth if isinstance(r, InvalidInput)}
    return [(i, decode(topic, value)) for i, (topic, _k, value, _ts) in enumerate(run.records)
            if topic == "subscriber-state" and i not in bad]


@pytest.fixture(scope="module")
def by_sub(state: list[tuple[int, Any]]) -> dict[str, list[tuple[int, Any]]]:
    out: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for i, ev in state:
        out[ev.subscriber_id].append((i, ev))
    return out


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def _grace_ms(rule: str) -> int:
    return GRACE_S[rule] * 1000


# --- which record breaks and which clears a look-alike, per rule ---------------------------
def _breaks(rule: str, item: str | None, ev: Any) -> bool:
    k, s = ev.kind, ev.system
    return {
        "bss-active-hss-barred": k == "resumed" and s == "bss",
        "bss-suspended-hss-active": k == "suspended" and s == "bss",
        "product-not-provisioned": k == "product_ordered" and ev.product_id == item,
        "cancelled-still-provisioned": k == "product_cancelled" and ev.product_id == item,
        "topup-still-suspended": k == "topped_up",
        "5g-plan-without-5g-signing": k == "plan_changed",
        "activated-not-registered": k == "activated" and s == "bss",
        "grant-not-credited": k == "balance_reported",   # same instant as the credit
        "port-out-still-active": k == "closed" and s == "bss",
    }.get(rule, k == "charged" and getattr(ev, "charge_id", None) == item)


def _clears(rule: str, item: str | None, ev: Any) -> bool:
    k, s = ev.kind, ev.system
    return {
        "bss-active-hss-barred": k == "resumed" and s == "hss",
        "bss-suspended-hss-active": k == "suspended" and s == "hss",
        "product-not-provisioned": k == "product_provisioned" and ev.product_id == item,
        "cancelled-still-provisioned": k == "product_deprovisioned" and ev.product_id == item,
        "topup-still-suspended": k == "resumed" and s == "hss",
        "5g-plan-without-5g-signing": k == "signing_changed",
        "activated-not-registered": k == "network_registered",
        "grant-not-credited": k == "granted" and ev.grant_id == item
        and ev.stage == "credited",
        "port-out-still-active": k == "closed" and s == "hss",
    }.get(rule, k == "refunded" and getattr(ev, "charge_id", None) == item)


def _one(events: list[tuple[int, Any]], pred: Any, at: datetime) -> int:
    found = [i for i, ev in events if ev.event_time == at and pred(ev)]
    assert len(found) == 1, (at, found)
    return found[0]


# --- the condition, as a consumer folding the stream sees it ------------------------------
def _holds(rule: str, item: str | None, view: dict[str, Any], at: int) -> bool:
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
        kinds = {c["kind"] for c in view["charges"] if c["charge_id"] == item}
        return kinds == {"charged"}
    if rule == "topup-still-suspended":
        bss_sys, hss_sys = view["systems"].get("bss", {}), view["systems"].get("hss", {})
        topup = view["systems"]["billing"].get("topup", {}).get("t", -1)
        return any(sys.get("status", {}).get("v") == "suspended"
                   and sys["status"].get("reason") == "arrears" and topup > sys["status"]["t"]
                   for sys in (bss_sys, hss_sys))
    if rule == "5g-plan-without-5g-signing":
        plan = view["systems"]["bss"]["plan"]["networks"]
        return "5g" in plan and "5g" not in view["systems"].get("hss", {}).get(
            "signing", {}).get("v", [])
    if rule == "activated-not-registered":
        return "activated" in view["systems"]["bss"] and "registered" not in view[
            "systems"].get("hss", {})
    if rule == "grant-not-credited":
        grant = view["grants"].get(item, {})
        return ("promised" in grant and "credited" not in grant
                and grant["due_by"] is not None and grant["due_by"] <= at)
    if rule == "port-out-still-active":
        po = view["port_out"]
        return po is not None and po["deadline"] <= at and hss == "active"
    raise AssertionError(rule)


def _view_at(events: list[tuple[int, Any]], sid: str, at: int) -> dict[str, Any]:
    """The view after every report dated up to ``at``, whatever order they arrived in."""
    view = new_view(sid, "")
    for _i, ev in sorted(events, key=lambda p: (p[1].event_time, p[1].event_id)):
        if _ms(ev.event_time) > at:
            break
        apply_event(view, ev)
    return view


# --- tests -------------------------------------------------------------------------------
def test_every_rule_has_every_variant_with_must_fire_false(
        run: Run, lookalikes: list[Inconsistency]) -> None:
    seen = Counter((r.rule, r.lookalike, r.detail["delivery"]) for r in lookalikes)
    for rule in get_args(RuleId):
        for kind in LOOKALIKE_KINDS:
            deliveries = {"clears_within_grace": ("in_order",),
                          "same_instant": ("in_order", "clear_first"),
                          "clears_out_of_order": ("clear_late",)}[kind]
            for delivery in deliveries:
                assert seen[(rule, kind, delivery)] >= 2, (rule, kind, delivery)
    for r in lookalikes:
        assert r.must_fire is False and r.injected and r.detail["lookalike_id"], r
        assert must_fire(r, LATENESS_MS) is False
    summary = run.truth[-1].model_extra or {}
    assert summary["lookalikes"]["missed"] == {} and summary["lookalikes"]["skipped"] == {}
    written = summary["lookalikes"]["written"]
    assert sum(n for v in written.values() for n in v.values()) == sum(
        1 for r in run.truth if isinstance(r, Inconsistency) and r.lookalike)


def test_header_carries_lateness_and_rate(run: Run) -> None:
    header = run.truth[0]
    assert header.version == 2
    assert header.lateness_s == LATENESS_MS / 1000 and header.lookalike_rate == 2.0


def test_intervals_are_within_grace_or_lateness(lookalikes: list[Inconsistency]) -> None:
    for r in lookalikes:
        held = r.duration_s()
        assert held is not None, r
        grace = r.grace_s
        if r.lookalike == "same_instant":
            assert held == 0, r
        elif r.lookalike == "clears_within_grace":
            limit = 0.6 * grace if grace else 0.5 * LATENESS_MS / 1000
            assert 0 < held <= limit + 0.001, r
        else:
            assert 0 < held < (grace if grace else 0.25 * LATENESS_MS / 1000 + 0.001), r
            if grace:   # reported only once a later report dated past the due instant came
                assert held >= grace - 0.2 * LATENESS_MS / 1000 - 0.001, r


def test_injected_faults_outlast_grace_plus_lateness(run: Run) -> None:
    faults = [r for r in run.truth if isinstance(r, Inconsistency) and r.injected
              and not r.lookalike]
    assert {r.rule for r in faults} == set(get_args(RuleId))
    for r in faults:
        assert r.must_fire is True and r.lookalike is None, r
        if r.end is not None:
            assert r.duration_s() > r.grace_s + LATENESS_MS / 1000, r
    natural = [r for r in run.truth if isinstance(r, Inconsistency) and not r.injected]
    assert natural and all(r.must_fire is None and r.lookalike is None for r in natural)
    assert all(must_fire(r, LATENESS_MS) is False for r in natural if r.end is not None)


def test_same_instant_records_share_event_time_in_both_orders(
        lookalikes: list[Inconsistency], by_sub: dict[str, list[tuple[int, Any]]]) -> None:
    orders = Counter()
    for r in lookalikes:
        if r.lookalike != "same_instant":
            continue
        events = by_sub[r.subscriber_id]
        brk = _one(events, lambda ev, r=r: _breaks(r.rule, r.item, ev), r.start)
        clr = _one(events, lambda ev, r=r: _clears(r.rule, r.item, ev), r.start)
        if r.detail["delivery"] == "in_order":
            assert brk < clr, r
        else:
            assert clr < brk, r
        orders[(r.rule, r.detail["delivery"])] += 1
    assert len(orders) == 2 * len(get_args(RuleId))


def test_clearing_in_order_within_grace(
        lookalikes: list[Inconsistency], by_sub: dict[str, list[tuple[int, Any]]]) -> None:
    for r in lookalikes:
        if r.lookalike != "clears_within_grace":
            continue
        assert r.end is not None
        events = by_sub[r.subscriber_id]
        clr = _one(events, lambda ev, r=r: _clears(r.rule, r.item, ev), r.end)
        assert all(_ms(ev.event_time) <= _ms(r.end) for i, ev in events if i < clr), r


def test_out_of_order_clearing_comes_after_a_later_report_within_lateness(
        run: Run, lookalikes: list[Inconsistency],
        by_sub: dict[str, list[tuple[int, Any]]]) -> None:
    late_ids = set(run.truth[-1].out_of_order["event_ids"])
    checked = Counter()
    for r in lookalikes:
        if r.lookalike != "clears_out_of_order":
            continue
        assert r.end is not None
        end = _ms(r.end)
        events = by_sub[r.subscriber_id]
        clr = _one(events, lambda ev, r=r: _clears(r.rule, r.item, ev), r.end)
        clear_event = next(ev for i, ev in events if i == clr)
        assert clear_event.event_id in late_ids
        # a later report of the same subscriber (same partition) was sent before it ...
        before = [ev for i, ev in events if i < clr and _ms(ev.event_time) > end]
        assert before, r
        # ... and nothing sent before it anywhere is dated more than half the lateness later
        newest = max(ts for _t, _k, _v, ts in run.records[:clr])
        assert end < newest <= end + LATENESS_MS // 2, r
        if r.grace_s:     # the report sent first is dated past the due instant
            assert max(_ms(ev.event_time) for ev in before) > _ms(r.start) + _grace_ms(r.rule)
        checked[r.rule] += 1
    assert len(checked) == len(get_args(RuleId))


def test_stream_shows_the_condition_exactly_during_the_truth_interval(
        lookalikes: list[Inconsistency], by_sub: dict[str, list[tuple[int, Any]]]) -> None:
    for r in lookalikes:
        assert r.end is not None
        start, end = _ms(r.start), _ms(r.end)
        events = by_sub[r.subscriber_id]

        def holds(at: int, r: Inconsistency = r, events: Any = events) -> bool:
            return _holds(r.rule, r.item, _view_at(events, r.subscriber_id, at), at)

        assert not holds(start - 1), r
        if end == start:
            assert not holds(start), r
        else:
            assert holds(start) and holds(end - 1), r
            assert not holds(end), r


def test_lookalikes_never_overlap_other_truth_of_the_subscriber(
        run: Run, lookalikes: list[Inconsistency]) -> None:
    intervals = defaultdict(list)
    for r in run.truth:
        if isinstance(r, Inconsistency):
            intervals[r.subscriber_id].append(r)
    end_of_run = run.truth[-1].end
    for la in lookalikes:
        for other in intervals[la.subscriber_id]:
            if other is la or not other.injected:
                continue
            assert (other.end or end_of_run) < la.start or other.start > la.end, (la, other)


def test_rate_zero_means_no_lookalikes_and_the_rate_scales(tmp_path: Path) -> None:
    none = simulate(tmp_path / "none", seed=3, events=3000, subscribers=400, faults_per_rule=3,
                    lookalike_rate=0.0)
    assert not [r for r in none.truth if isinstance(r, Inconsistency) and r.lookalike]
    for rate in (1.0, 2.0):
        cfg = SimConfig(faults_per_rule=3, lookalike_rate=rate)
        assert cfg.lookalikes_per_epoch == round(3 * rate)
        sim = simulate(tmp_path / str(rate), seed=3, events=3000, subscribers=400,
                       faults_per_rule=3, lookalike_rate=rate)
        extra = sim.truth[-1].model_extra or {}
        planned, faults = extra["lookalikes"]["planned"], extra["faults"]["planned"]
        assert set(planned) == set(faults)
        assert 0.75 * rate <= sum(planned.values()) / sum(faults.values()) <= 1.25 * rate


def test_cli_lateness_and_lookalike_rate(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "t.jsonl"
    code = main(["simulate", "--no-kafka", "--quiet", "--subscribers", "300", "--events",
                 "3000", "--speed", "0", "--rate", "0", "--start", "2025-06-01T08:00:00Z",
                 "--faults-per-rule", "2", "--lookalike-rate", "1.5", "--lateness", "0.5",
                 "--truth", str(truth)])
    assert code == 0
    loaded = load_truth(truth)
    assert (loaded[0].lateness_s, loaded[0].lookalike_rate) == (0.5, 1.5)
    assert loaded[0].args["lateness"] == 0.5
    for r in loaded:
        if isinstance(r, Inconsistency) and r.lookalike == "clears_within_grace" \
                and not r.grace_s:
            assert r.duration_s() <= 0.25 + 0.001
    for argv, message in ((["--lateness", "0"], "--lateness"),
                          (["--lookalike-rate", "-1"], "--lookalike-rate")):
        assert main(["simulate", "--no-kafka", "--quiet", *argv]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "FORESIGHT_TIMER_LATENESS_MS" in text and "--lookalike-rate" in text


def test_old_truth_lines_still_load() -> None:
    rec = parse_truth_line(orjson.dumps({
        "type": "inconsistency", "rule": "cancelled-still-charged", "subscriber_id": "S1",
        "item": "CH1", "start": "2025-06-01T08:00:00.000+08:00",
        "end": "2025-06-01T08:00:01.000+08:00", "injected": False, "detail": {}}))
    assert rec.must_fire is None and rec.lookalike is None
    assert must_fire(rec, 2000) is False and must_fire(rec, 500) is True
