"""The contact policy: loading and checking, decisions, the step (idempotency, shadow,
state that survives a restart), and the packaged policy tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agents.contact.policy import load_policy, parse_policy
from agents.contact.policytests import packaged_tests, run_test_file
from agents.contact.step import ContactPolicy
from agents.core import EventContext
from agents.unified_view import new_view
from schemas.registry import decode
from streams.errors import RuleError

T0 = 1_795_658_400_000          # 2026-11-26T10:00:00+08:00


def _req(rid: str = "RQ-1", purpose: str = "marketing", channel: str = "telemarketing",
         t: int = T0, sid: str = "S00000001", **extra: object) -> object:
    payload = {"schema_version": 1, "event_id": f"e-{rid}-{t}", "kind": "contact_request",
               "event_time": datetime.fromtimestamp(t / 1000, UTC).isoformat(),
               "request_id": rid, "subscriber_id": sid, "msisdn": "8613800001234",
               "campaign_id": "CMP-1", "purpose": purpose, "channel": channel, **extra}
    return decode("contact-requests", orjson.dumps(payload))


def _ctx(t: int = T0, topic: str = "contact-requests") -> EventContext:
    return EventContext(topic, 0, 0, t, datetime.now(UTC), event_ms=t)


def _reads(seed: bool = False) -> dict[str, object]:
    view = new_view("S00000001", "8613800001234")
    view["profile"]["seed_user"] = {"v": seed, "t": 0, "id": "x"}
    return {"unified-view": view, "audit": None}


def test_packaged_policy_loads_with_every_rule_documented() -> None:
    policy = load_policy()
    assert policy.version == "cp-2026-12-01"
    assert len(policy.rules) >= 15
    assert all(r.description and r.reason for r in policy.rules)
    ids = [r.id for r in policy.rules]
    assert len(ids) == len(set(ids))
    for needed in ("seed-user", "recent-complaint", "escalated-complaint", "open-audit-finding",
                   "open-fault-work-order", "complaint-risk", "churn-risk", "do-not-disturb",
                   "quiet-hours", "cap-subscriber-week", "cap-channel-day", "subscriber-closed",
                   "subscriber-suspended", "porting-out"):
        assert needed in ids


@pytest.mark.parametrize("path", packaged_tests(), ids=lambda p: p.name)
def test_packaged_policy_tests_pass(path: Path) -> None:
    outcomes = run_test_file(path)
    assert len(outcomes) >= 40
    assert [o.failures for o in outcomes if not o.ok] == []


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("tests:\n  - name: wrong\n    subscriber: {seed_user: true}\n    requests:\n"
                 "      - {purpose: marketing, channel: sms, expect: {decision: allow, "
                 "reasons: []}}\n")
    [outcome] = run_test_file(f)
    assert not outcome.ok and "got suppress ['seed_user']" in outcome.failures[0]


def test_test_file_unknown_field_names_its_line(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("tests:\n  - name: x\n    requests:\n      - {purpose: marketing, channel: sms,"
                 "\n         expekt: {decision: allow}}\n")
    with pytest.raises(RuleError, match=r"t.yaml:5: tests.0.requests.0.expekt: unknown field"):
        run_test_file(f)


POLICY = """\
version: 1
policy_version: p1
rules:
  - id: seed
    reason: seed_user
    description: no marketing to seed users
    precedence: 5
    purposes: [marketing]
    expr: profile('seed_user') == true
"""


def test_check_names_line_and_column_of_a_bad_value() -> None:
    bad = POLICY.replace("profile('seed_user') == true", "channel() == 'telemarketin'")
    with pytest.raises(RuleError) as exc:
        parse_policy(bad, "p.yaml")
    assert str(exc.value).startswith("p.yaml:9:24: rule 'seed': expr: channel() is never "
                                     "'telemarketin'")


@pytest.mark.parametrize(("edit", "message"), [
    (("precedence: 5", "precedence: 5\n    colour: red"), "p.yaml:8: rule 'seed' field "
     "'colour': unknown field"),
    (("[marketing]", "[marketing, promo]"), "p.yaml:8: rule 'seed' field 'purposes.1'"),
    (("policy_version: p1", "policy_version: p1\ntimezone: Mars/Olympus"),
     "p.yaml:3: field 'timezone': unknown time zone"),
    (("expr: profile('seed_user') == true", "quiet_hours: {start: '25:00', end: '08:00'}"),
     "p.yaml:9: rule 'seed' field 'quiet_hours.start'"),
    (("expr: profile('seed_user') == true", "cap: {per: cell, window: 1d, max: 1}"),
     "p.yaml:9: rule 'seed' field 'cap.per'"),
    (("expr: profile('seed_user') == true", "expr: nosuch() > 1"),
     "p.yaml:9:11: rule 'seed': expr: unknown function 'nosuch'"),
])
def test_check_rejects_unknown_fields_and_values(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(RuleError) as exc:
        parse_policy(POLICY.replace(*edit), "p.yaml")
    assert message in str(exc.value)


def test_audit_catalog_still_uses_its_own_functions() -> None:
    """The contact functions extend the language for the policy only."""
    from agents.audit.catalog import parse_catalog
    text = (Path(__file__).parents[2] / "agents/rules/audit.yaml").read_text()
    assert parse_catalog(text).rules
    from agents.audit.expr import ExprError, compile_expr
    with pytest.raises(ExprError, match="unknown function 'purpose'"):
        compile_expr("purpose() == 'marketing'")


def test_one_decision_per_request_id_and_caps_survive_a_restart() -> None:
    step = ContactPolicy()
    reads = _reads()
    r1 = step.apply(None, _req("RQ-1"), _ctx(), reads)
    assert [o.value.decision for o in r1.outputs] == ["allow"]
    again = step.apply(r1.state, _req("RQ-1"), _ctx(), reads)
    assert again.outputs == [] and not again.changed
    # a restart restores the changelogged state: JSON in, JSON out
    restored = orjson.loads(orjson.dumps(r1.state))
    fresh = ContactPolicy()
    r2 = fresh.apply(restored, _req("RQ-2", t=T0 + 3_600_000), _ctx(T0 + 3_600_000), reads)
    d = r2.outputs[0].value
    assert d.decision == "suppress" and d.reasons == ["frequency_cap_channel"]
    assert d.allowed_after == datetime.fromtimestamp((T0 + 86_400_000) / 1000, UTC)
    assert fresh.apply(r2.state, _req("RQ-1"), _ctx(), reads).outputs == []


def test_shadow_policy_decides_beside_the_live_one_and_does_not_move_caps() -> None:
    live = load_policy()
    shadow = parse_policy(POLICY.replace("p1", "p2-shadow"), "shadow.yaml")
    step = ContactPolicy(live, shadow)
    r = step.apply(None, _req("RQ-1"), _ctx(), _reads(seed=True))
    d = r.outputs[0].value
    assert d.decision == "suppress" and d.reasons == ["seed_user"]
    assert d.shadow is not None and d.shadow.agrees and d.shadow.policy_version == "p2-shadow"
    # not seed: live allows; the shadow (one rule) allows too
    r = step.apply(None, _req("RQ-2"), _ctx(), _reads(seed=False))
    assert r.outputs[0].value.shadow.agrees
    # a shadow that suppresses everything disagrees, and the live caps count the allow
    everything = parse_policy(POLICY.replace("profile('seed_user') == true", "1 == 1")
                              .replace("p1", "p3"), "all.yaml")
    step = ContactPolicy(live, everything)
    r = step.apply(None, _req("RQ-3"), _ctx(), _reads())
    d = r.outputs[0].value
    assert d.decision == "allow" and d.shadow.decision == "suppress" and not d.shadow.agrees
    assert [c[3] for c in r.state["contacts"]] == ["RQ-3"]


def test_do_not_disturb_latest_entry_by_event_time_wins() -> None:
    step = ContactPolicy()

    def dnd(listed: bool, t: int, eid: str) -> object:
        return decode("do-not-disturb", orjson.dumps({
            "schema_version": 1, "event_id": eid, "kind": "do_not_disturb",
            "event_time": datetime.fromtimestamp(t / 1000, UTC).isoformat(),
            "subscriber_id": "S00000001", "listed": listed}))
    s = step.apply(None, dnd(True, T0 - 2000, "a"), _ctx(T0 - 2000, "do-not-disturb"), {}).state
    late = step.apply(s, dnd(False, T0 - 5000, "b"), _ctx(T0 - 5000, "do-not-disturb"), {})
    assert not late.changed                       # an older entry arriving late is ignored
    d = step.apply(s, _req(), _ctx(), _reads()).outputs[0].value
    assert d.reasons == ["do_not_disturb"]


def test_complaint_closed_before_its_opening_arrives_stays_closed() -> None:
    from agents.contact.history import new_state, note_complaint
    st = new_state()
    note_complaint(st, "CP1", "escalated", "closed", T0 - 5000)
    note_complaint(st, "CP1", "normal", "opened", T0 - 9000)       # arrives late
    c = st["complaints"]["CP1"]
    assert c["open"] is False and c["t"] == T0 - 9000 and c["esc"] == T0 - 5000
    note_complaint(st, "CP2", "normal", "opened", T0)
    assert st["complaints"]["CP2"]["open"] is True


def test_may_offer_on_an_inbound_call() -> None:
    from agents.contact.screen import may_offer
    policy = load_policy()
    night = T0 + 13 * 3_600_000                  # 23:00 in Shanghai: the customer called us
    ok = may_offer(policy, "S00000001", "8613800001234", _reads(), None, night)
    assert ok.decision == "allow" and ok.reasons == []
    no = may_offer(policy, "S00000001", "8613800001234", _reads(seed=True), None, night)
    assert no.decision == "suppress" and no.reasons == ["seed_user"]
