"""The audit step in the runtime: timers, restarts, order, duplicates, fingerprints, privacy."""

from __future__ import annotations

import orjson

from agents.audit import Audit, fingerprint, open_episodes, parse_catalog, pending_episodes
from agents.audit.testing import AuditHarness
from agents.core import EventContext
from agents.unified_view import UnifiedView, ms
from schemas.outputs import AgentHint, Alert
from schemas.registry import decode
from streams.unit import BatchUnit, DictStore, system_tables
from tests.unit.helpers import T0, record
from tests.unit.test_audit_rules import MSISDN, SCENARIOS, charge, ev, healthy, refund, run_scenario
from tests.unit.test_unit import commit, envelope

SS = "subscriber-state"
T0_MS = ms(T0)


def make_unit(stores=None) -> tuple[BatchUnit, dict[str, DictStore]]:
    steps = [UnifiedView(), Audit()]
    names = [s.name for s in steps] + list(system_tables(steps))
    stores = stores if stores is not None else {n: DictStore() for n in names}
    return BatchUnit(steps, stores, worker_id="w-test", idle_ms=None), stores


def of(sid: str, events: list[dict]) -> list[dict]:
    return [{**e, "subscriber_id": sid, "event_id": f"{sid}-{e['event_id']}"} for e in events]


def outputs(c) -> list[Alert | AgentHint]:
    return [Alert.model_validate_json(v) if t == "alerts" else AgentHint.model_validate_json(v)
            for t, _, v in c.outputs]


def test_timer_fires_on_another_subscribers_event_and_survives_a_restart() -> None:
    unit, stores = make_unit()
    unit.process_envelope(envelope(SS, 0, [*of("S00000001", healthy()),
                                           *of("S00000002", healthy())]))
    commit(unit)
    unit.process_envelope(envelope(SS, 0, of("S00000001", [ev("suspended", 100, "hss",
                                                              reason="fraud")]), first_offset=16))
    assert outputs(commit(unit)) == []
    # restart in the middle of the grace period: a new unit on the same stores
    fresh, _ = make_unit(stores)
    fresh.process_envelope(envelope(SS, 0, of("S00000002", [
        ev("balance_reported", 399, "billing", balance_cents=9000)]), first_offset=17))
    assert outputs(commit(fresh)) == []
    fresh.process_envelope(envelope(SS, 0, of("S00000002", [
        ev("balance_reported", 401, "billing", balance_cents=9000)]), first_offset=18))
    alert, hint = outputs(commit(fresh))
    assert isinstance(hint, AgentHint) and hint.hint_id == alert.fingerprint
    assert alert.subscriber_id == "S00000001" and alert.rule_id == "bss-active-hss-barred"
    assert ms(alert.starts_at) == T0_MS + 100_000 and alert.status == "firing"


def test_a_subscriber_without_episodes_writes_no_state() -> None:
    unit, _ = make_unit()
    unit.process_envelope(envelope(SS, 0, of("S00000002", healthy())))
    commit(unit)
    quiet = of("S00000002", [ev("balance_reported", 50 + i, "billing", balance_cents=9000)
                             for i in range(5)] + [charge("CH-1", "usage", 60)])
    unit.process_envelope(envelope(SS, 0, quiet, first_offset=8))
    c = commit(unit)
    assert ("audit", 0) not in c.changelog and ("timers", 0) not in c.changelog
    assert ("unified-view", 0) in c.changelog


S1, S2 = "S00000001", "S00000002"
BARRED, ORDER, CHARGE = of(S1, [ev("suspended", 100, "hss", reason="fraud"),
                                ev("product_ordered", 150, product_id="vas-news", platform="vas"),
                                charge("CH-9", "vas-music", 200)])
TICKS = {t: of(S2, [ev("balance_reported", t, "billing", balance_cents=t)])[0]
         for t in (300, 500, 800, 1100, 1400)}
UNBAR, PROVISION, REFUND = of(S1, [ev("resumed", 1000, "hss"),
                                   ev("product_provisioned", 1200, "vas", product_id="vas-news"),
                                   refund("CH-9", 1300)])
START = [*of(S1, healthy()), *of(S2, healthy())]
ORDERLY = [*START, BARRED, ORDER, CHARGE, TICKS[300], TICKS[500], TICKS[800], UNBAR,
           TICKS[1100], PROVISION, REFUND, TICKS[1400]]
#: the order arrives 650 s late (past its due time), the charge 100 s late, the barring and
#: the refund are delivered twice
SHUFFLED = [*START, BARRED, TICKS[300], CHARGE, TICKS[500], BARRED, TICKS[800], ORDER, UNBAR,
            TICKS[1100], PROVISION, REFUND, TICKS[1400], REFUND]


def _run(events: list[dict], batch: int) -> list[dict]:
    unit, _ = make_unit()
    out: list[dict] = []
    for i in range(0, len(events), batch):
        unit.process_envelope(envelope(SS, 0, events[i:i + batch], first_offset=i))
        out += [orjson.loads(v) for _, _, v in commit(unit).outputs]
    for o in out:
        o.pop("detected_at", None)
        o.pop("created_at", None)
        # the event-time clock when the watermark decided: a later report delivered first
        # moves the clock further, so the decision is the same but taken at a later clock
        o.pop("decided_at", None)
    return sorted(out, key=lambda o: orjson.dumps(o, option=orjson.OPT_SORT_KEYS))


def test_out_of_order_and_duplicated_events_give_the_orderly_outputs() -> None:
    expected = _run(ORDERLY, 1)
    # barred: firing + resolved alerts and hints; product: the same; charge: the same
    assert len(expected) == 12
    assert _run(SHUFFLED, 1) == expected
    assert _run(SHUFFLED, 7) == expected


def test_reapplying_an_event_changes_nothing() -> None:
    h, _ = run_scenario("bss-active-hss-barred")
    h.advance_to(T0_MS + 3_600_000)
    before = (list(h.outputs), orjson.dumps(h.states["S00000001"]))
    model = decode(SS, record(ev("suspended", 100, "hss", reason="fraud"))[1])
    view = h.views["S00000001"]
    ctx = EventContext(SS, 0, 0, 0, T0)
    res = h.audit.apply(h.states["S00000001"], model, ctx, {"unified-view": view})
    assert res.outputs == [] and not res.changed
    assert (h.outputs, orjson.dumps(h.states["S00000001"])) == before


def test_fingerprints_are_stable_and_new_per_episode() -> None:
    h = AuditHarness()
    for e in [*healthy(), ev("suspended", 100, "hss", reason="fraud"), ev("resumed", 1000, "hss"),
              ev("suspended", 2000, "hss", reason="fraud"), ev("resumed", 3000, "hss")]:
        h.send(e)
    h.advance_to(T0_MS + 3_000_000 + h.lateness)
    fps = [a.fingerprint for a in h.alerts()]
    assert len(fps) == 4 and fps[0] == fps[1] != fps[2] == fps[3]
    assert fps[0] == fingerprint("bss-active-hss-barred", "S00000001", "", T0_MS + 100_000)
    assert [h.hint_id for h in h.hints()] == fps


def test_outputs_never_carry_the_full_number() -> None:
    for rule in SCENARIOS:
        h, _ = run_scenario(rule)
        h.advance_to(T0_MS + 86_400_000)
        for o in h.outputs:
            text = o.value.model_dump_json()
            assert MSISDN not in text and MSISDN[-4:] in o.value.msisdn_masked


def test_open_episode_summary_for_gauges() -> None:
    h, _ = run_scenario("product-not-provisioned")
    state = h.states["S00000001"]
    assert pending_episodes(state) == {"product-not-provisioned": 1} and open_episodes(state) == {}
    h.advance_to(T0_MS + 3_600_000)
    assert open_episodes(h.states["S00000001"]) == {"product-not-provisioned": 1}
    assert open_episodes(None) == {}


def test_an_episode_of_a_rule_removed_from_the_catalog_is_resolved() -> None:
    h, _ = run_scenario("bss-active-hss-barred")
    h.advance_to(T0_MS + 3_600_000)
    smaller = parse_catalog("""
version: 1
groups:
  - name: g
    rules:
      - id: suspended-for-arrears
        expr: status('bss') == 'suspended'
        for: 0s
        severity: info
        notify: [agent]
        labels: {category: reminder}
        annotations: {summary: s, script: x}
""")
    h2 = AuditHarness(audit=Audit(smaller))
    h2.views, h2.states = h.views, h.states
    h2.send(ev("balance_reported", 4000, "billing", balance_cents=1))
    [alert] = h2.alerts()
    assert alert.status == "resolved" and alert.sequence == 2 and h2.states["S00000001"] is None
