"""The screen pop: the bundle from the other steps' state, the step in the runtime (pushes
leave at once, never reach the committer), the service's routing and outcomes."""

from __future__ import annotations

import asyncio
import json

import pytest

from agents.audit import Audit
from agents.call_features import CallFeatures
from agents.screen.bundle import build_bundle
from agents.screen.step import ScreenPop
from agents.unified_view import UnifiedView
from schemas.contacts import ContactResult
from schemas.screen import SCREEN_PUSH, ScreenPush
from sinks.screen import Hub, create_screen_app, load_agents, outcome_event
from streams.screen_push import LivePush, masked_view
from streams.settings import Settings
from streams.unit import BatchUnit, DictStore, system_tables
from tests.unit.helpers import event
from tests.unit.test_audit_rules import MSISDN, charge, ev, healthy
from tests.unit.test_unit import commit, envelope

SS, CALLS = "subscriber-state", "call-events"
SID = "S00000001"


def hotline(stage: str, at: float, agent: str | None = "A001", call: str = "HL-9") -> dict:
    return event(CALLS, "hotline_call", at=at, msisdn=MSISDN, stage=stage, agent_id=agent,
                 call_id=call, eid=f"hl-{call}-{stage}")


def make_unit(configured=("unified-view", "call-features", "audit", "screen-pop")):
    pushed: list[ScreenPush] = []
    audit = Audit()
    steps = [UnifiedView(), CallFeatures(), audit,
             LivePush(ScreenPop(configured, audit.catalog), pushed.extend)]
    names = [s.name for s in steps] + list(system_tables(steps))
    unit = BatchUnit(steps, {n: DictStore() for n in names}, worker_id="w", idle_ms=None)
    return unit, pushed


def finding_then_call(unit) -> None:
    """Charged while suspended (fires at once, hinted after the 2 s settle), then a call."""
    unit.process_envelope(envelope(SS, 0, [*healthy(), ev("suspended", 100, reason="request"),
                                           charge("CH-7", "vas-music", 110),
                                           ev("balance_reported", 200, "billing",
                                              balance_cents=9000, arrears_cents=0)]))
    unit.process_envelope(envelope(CALLS, 0, [hotline("incoming", 290, None),
                                              hotline("answered", 300)]))


def test_an_answered_call_pushes_the_finding_with_its_script_at_once() -> None:
    unit, pushed = make_unit()
    finding_then_call(unit)
    # pushed before any commit, and the committer never sees the push
    assert [p.kind for p in pushed] == ["pop"]
    pop = pushed[0]
    assert (pop.agent_id, pop.call_id, pop.subscriber_id) == ("A001", "HL-9", SID)
    findings = pop.bundle["panels"]["findings"]["items"]
    mine = [f for f in findings if f["rule"] == "charged-while-suspended"]
    assert len(mine) == 1, findings
    assert "停机期间" in mine[0]["script"] and mine[0]["script"] in pop.bundle["say_first"]
    assert pop.bundle["msisdn"] == MSISDN  # the agent on the call sees the whole number
    c = commit(unit)
    assert SCREEN_PUSH not in {t for t, _, _ in c.outputs}
    # nothing made up: the panels without their step say so
    for name in ("risks", "retention", "offer"):
        panel = pop.bundle["panels"][name]
        assert panel["available"] is False and "not available yet" in panel["note"]


def test_the_call_ending_closes_the_page_and_other_agents_calls_are_theirs() -> None:
    unit, pushed = make_unit()
    finding_then_call(unit)
    unit.process_envelope(envelope(CALLS, 0, [hotline("ended", 400)], first_offset=2))
    assert [(p.kind, p.agent_id) for p in pushed] == [("pop", "A001"), ("ended", "A001")]


def test_complaints_and_online_contacts_are_kept_and_shown() -> None:
    unit, pushed = make_unit()
    unit.process_envelope(envelope("complaints", 0, [
        event("complaints", "complaint", at=10, msisdn=MSISDN, stage="opened"),
        event("complaints", "complaint", at=20, msisdn=MSISDN, stage="resolved", eid="c2")]))
    online = {"kind": "online_contact", "session_id": "WX-1", "channel": "wechat",
              "topic": "billing.query", "summary": "asked about a charge"}
    unit.process_envelope(envelope("contact-outcomes", 0, [
        {**event("contact-outcomes", "survey", at=30, msisdn=MSISDN), **online,
         "event_id": "o1"}]))
    unit.process_envelope(envelope(CALLS, 0, [hotline("answered", 300)]))
    panels = pushed[0].bundle["panels"]
    assert [(c["complaint_id"], c["stage"]) for c in panels["complaints"]["items"]] == [
        ("CMP-1", "resolved")]
    assert [o["channel"] for o in panels["online"]["items"]] == ["wechat"]


def test_the_step_reads_only_configured_steps() -> None:
    step = ScreenPop(("unified-view", "call-features"))
    assert step.reads == ("unified-view", "call-features")
    b = build_bundle(SID, {}, None, 0, available=step.available)
    assert b["panels"]["findings"]["note"].startswith("not available yet")


def test_view_masks_personal_data() -> None:
    view = {"msisdn": "8613800001234", "profile": {"name": {"v": "张三丰", "t": 1}}}
    m = masked_view(view)
    assert m["msisdn"] == "*********1234" and m["profile"]["name"]["v"] == "张**"
    b = build_bundle(SID, {"unified-view": {**view, "systems": {}, "port_out": None}}, None, 0,
                     available=frozenset({"unified-view"}))
    assert b["msisdn"] == "*********1234" and b["profile"]["name"] == "张**"


def test_agent_tokens_and_outcome_events() -> None:
    assert load_agents("A001=tok-aaaaaaaa,A002=tok-bbbbbbbb") == {
        "tok-aaaaaaaa": "A001", "tok-bbbbbbbb": "A002"}
    with pytest.raises(ValueError):
        load_agents("A001=short")
    out = outcome_event("reminder", {"hint_id": "abcdef0123456789", "result": "confirmed"},
                        {"subscriber_id": SID, "msisdn": MSISDN}, "A001", "HL-9")
    assert isinstance(out, ContactResult)
    assert (out.call_id, out.agent_id, out.result) == ("HL-9", "A001", "confirmed")
    again = outcome_event("reminder", {"hint_id": "abcdef0123456789", "result": "confirmed"},
                          {"subscriber_id": SID, "msisdn": MSISDN}, "A001", "HL-9")
    assert again.event_id == out.event_id  # a double click is the same event


def test_hub_sends_a_pop_only_to_its_agent() -> None:
    async def run() -> None:
        hub = Hub()
        qx, qy = hub.listen("A001"), hub.listen("A002")
        hub.push(ScreenPush(kind="pop", agent_id="A001", call_id="HL-1", subscriber_id=SID,
                            event_ts_ms=1, bundle={"msisdn": MSISDN}))
        hub.hint({"subscriber_id": SID, "hint_id": "h"})
        assert qx.qsize() == 2 and qy.qsize() == 0
        assert (await qx.get())[0] == "pop"
        assert json.loads((await qx.get())[1])["call_id"] == "HL-1"

    asyncio.run(run())


def test_service_refuses_unknown_tokens_and_other_agents_calls() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    settings = Settings(screen_agents="A001=tok-aaaaaaaa,A002=tok-bbbbbbbb",
                        api_token="push-secret")

    async def run() -> None:
        app = create_screen_app(settings, follow_hints=False)
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/push", data=b"[]")
            assert r.status == 401
            pop = ScreenPush(kind="pop", agent_id="A001", call_id="HL-1", subscriber_id=SID,
                             event_ts_ms=1, bundle={"msisdn": MSISDN}).model_dump(mode="json")
            r = await client.post("/push", json=[pop],
                                  headers={"Authorization": "Bearer push-secret"})
            assert r.status == 200
            assert (await client.get("/screen/events?token=nope")).status == 401
            body = {"call_id": "HL-1", "type": "reminder", "hint_id": "h1", "result": "confirmed"}
            r = await client.post("/screen/outcomes", json=body,
                                  headers={"Authorization": "Bearer tok-bbbbbbbb"})
            assert r.status == 403  # agent Y cannot record on X's call
            r = await client.post("/screen/outcomes", json=body,
                                  headers={"Authorization": "Bearer tok-aaaaaaaa"})
            assert r.status == 503  # X may; no producer in this test
            r = await client.get("/")
            assert "先说这些" in await r.text()

    asyncio.run(run())


def test_a_complaint_during_the_call_updates_the_open_page() -> None:
    unit, pushed = make_unit()
    finding_then_call(unit)
    unit.process_envelope(envelope("complaints", 0, [
        event("complaints", "complaint", at=310, msisdn=MSISDN, stage="opened")]))
    assert [p.kind for p in pushed] == ["pop", "update"]
    assert pushed[1].call_id == "HL-9"
    assert [c["complaint_id"] for c in pushed[1].bundle["panels"]["complaints"]["items"]] == [
        "CMP-1"]
    assert pushed[1].bundle["say_first"][0].startswith("您有1件投诉正在处理中")
    unit.process_envelope(envelope(CALLS, 0, [hotline("ended", 400)], first_offset=2))
    unit.process_envelope(envelope("complaints", 0, [
        event("complaints", "complaint", at=410, msisdn=MSISDN, stage="resolved", eid="c9")],
        first_offset=1))
    assert [p.kind for p in pushed] == ["pop", "update", "ended"]  # no call: no update


FORESEE = {"scores": {
    "churn": {"p": 0.81, "version": "v1", "reasons": ["3 dropped calls this week"],
              "at_ms": 1, "above": True},
    "complaint": {"p": 0.2, "version": "v1", "reasons": [], "at_ms": 1, "above": False},
    "offer:data-30g": {"p": 0.4, "version": "v1", "reasons": ["heavy data use"], "at_ms": 1,
                       "above": True},
    "offer:5g-upgrade": {"p": 0.1, "version": "v1", "reasons": [], "at_ms": 1, "above": False},
}}
ALL = frozenset({"unified-view", "call-features", "audit", "foresee", "contact-policy"})
OFFERS = {"data-30g": {"id": "data-30g", "name_zh": "30G 流量包", "name_en": "30 GB data pack",
                       "script": "可以办理 30G 流量包"}}


def test_risks_retention_and_an_allowed_offer_light_up_with_their_steps() -> None:
    asked = []

    def gate(sid, reads, own, now_ms):
        asked.append((sid, sorted(reads)))
        return True, []

    b = build_bundle(SID, {"foresee": FORESEE, "contact-policy": {}}, {"call": {"call_id": "HL-1"}},
                     5, available=ALL, offer_gate=gate, offers=OFFERS, full=True)
    p = b["panels"]
    assert [r["model"] for r in p["risks"]["items"]] == ["churn", "complaint"]  # highest first
    assert p["risks"]["items"][0]["reasons"] == ["3 dropped calls this week"]
    assert p["retention"]["items"][0]["task_id"] == f"retain:{SID}:HL-1"
    (offer,) = p["offer"]["items"]
    assert (offer["offer_id"], offer["name_zh"], p["offer"]["decision"]) == (
        "data-30g", "30G 流量包", "allow")
    assert asked == [(SID, ["contact-policy", "foresee"])]


def test_no_offer_when_the_policy_or_the_control_group_says_no() -> None:
    b = build_bundle(SID, {"foresee": FORESEE}, None, 5, available=ALL,
                     offer_gate=lambda *a: (False, ["control_group"]), offers=OFFERS)
    assert b["panels"]["offer"]["items"] == []
    assert (b["panels"]["offer"]["decision"], b["panels"]["offer"]["reasons"]) == (
        "suppress", ["control_group"])
    # without the contact-policy step the offer panel is not available, never guessed
    b = build_bundle(SID, {"foresee": FORESEE}, None, 5, available=ALL - {"contact-policy"},
                     offer_gate=lambda *a: (True, []), offers=OFFERS)
    assert b["panels"]["offer"]["available"] is False
    assert "contact-policy" in b["panels"]["offer"]["note"]
    # low churn: risks shown, no retention task
    calm = {"scores": {"churn": {"p": 0.1, "above": False, "reasons": []}}}
    b = build_bundle(SID, {"foresee": calm}, None, 5, available=ALL, offer_gate=None)
    assert b["panels"]["retention"]["items"] == [] and b["panels"]["risks"]["available"]
