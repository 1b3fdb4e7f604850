"""Texts a customer can hear: every annotation of the packaged catalog, rendered for a
subscriber whose facts are all known and for subscribers most facts are missing about,
reads as written (no space left by YAML folding inside Chinese, no made-up 0.00 for an
unknown balance, no placeholder syntax), in one language per field, with a resolved text,
and every hint says what it is and until when it holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.audit import load_catalog
from agents.audit.catalog import Rule
from agents.audit.episodes import HINT_TTL, RESOLVED_HINT_TTL, Emitter
from agents.audit.templates import HINT_ANNOTATIONS, Template, TemplateError, capture, fold_spaces
from agents.unified_view import apply_event, new_view
from schemas.outputs import AgentHint, Alert
from schemas.registry import SUBSCRIBER_STATE, decode
from streams.errors import RuleError
from tests.unit.helpers import T0, event

CATALOG = load_catalog()
NOW = datetime(2030, 1, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
SID, MSISDN = "S00000001", "8613800001234"

_CJK = "\u3000-\u303f\u3400-\u9fff\uff00-\uffef"
SPACE_IN_CJK = re.compile(f"[{_CJK}] [{_CJK}]")
MADE_UP = re.compile(r"(?<![\d.])0\.00元|None|[{}]")
WIDE_PUNCT = re.compile("[\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")
ENGLISH_PHRASE = re.compile(r"[A-Za-z]{2,} [A-Za-z]{2,}")
LONG_CJK = re.compile(f"[{_CJK}]{{9,}}")


def _view(events: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    view = new_view(SID, MSISDN)
    for i, (kind, system, fields) in enumerate(events):
        ev = event(SUBSCRIBER_STATE, kind, at=i, system=system, msisdn=MSISDN, **fields)
        apply_event(view, decode(SUBSCRIBER_STATE, orjson.dumps(ev)))
    return view


#: Everything a rule may read, reported: a 5G plan the HSS does not sign, a barred line in
#: arrears that topped up, products, charges, a grant, a port-out.
KNOWN = _view([
    ("opened", "bss", {"plan_id": "plan-5g-129", "plan_networks": ["4g", "5g"]}),
    ("activated", "bss", {}), ("activated", "hss", {}), ("activated", "billing", {}),
    ("signing_changed", "hss", {"networks": ["4g"]}),
    ("suspended", "bss", {"reason": "arrears"}), ("suspended", "hss", {"reason": "arrears"}),
    ("product_ordered", "bss", {"product_id": "vas-news", "platform": "vas",
                                "monthly_fee_cents": 500}),
    ("product_cancelled", "bss", {"product_id": "vas-news", "platform": "vas"}),
    ("charged", "billing", {"charge_id": "CH-1", "item": "vas-news", "amount_cents": 500,
                            "balance_cents": -2300}),
    ("charged", "billing", {"charge_id": "CH-2", "item": "plan", "amount_cents": 12900,
                            "balance_cents": -2300}),
    ("granted", "bss", {"grant_id": "G-1", "stage": "promised", "amount_cents": 2000,
                        "due_by": (T0 + timedelta(days=1)).isoformat()}),
    ("topped_up", "billing", {"amount_cents": 5000, "balance_cents": 2700, "channel": "app"}),
    ("balance_reported", "billing", {"balance_cents": -2300, "arrears_cents": 2300}),
    ("port_out_requested", "mnp", {"deadline": (T0 + timedelta(days=2)).isoformat()}),
])
#: Nothing reported but the line's opening in BSS; and nothing at all.
PARTIAL = _view([("opened", "bss", {"plan_id": "plan-4g-39", "plan_networks": ["4g"]})])
EMPTY = new_view(SID, MSISDN)
VIEWS = {"known": KNOWN, "partial": PARTIAL, "empty": EMPTY}
ITEMS = {"product": "vas-news", "charge": "CH-1", "grant": "G-1", None: ""}


def _records(rule: Rule, view: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Firing and resolved records of one episode of ``rule`` captured from ``view``."""
    item = ITEMS[rule.each]
    ep = {"since": T0_MS, "severity": rule.severity, "sequence": 1,
          "notify": [n for n, on in (("technician", rule.technician), ("agent", rule.agent))
                     if on],
          "vars": capture(view, rule.each, item, rule.capture, CATALOG.names,
                          CATALOG.offset_min), "evidence": {}}
    emitter = Emitter(CATALOG)
    firing = emitter.emit(rule, rule.id, SID, item, ep, T0_MS + 3_600_000, NOW)
    ended = T0_MS + 7_200_000
    resolved = emitter.emit(rule, rule.id, SID, item, {**ep, "sequence": 2}, ended, NOW,
                            ended=ended)
    return [o.value for o in firing], [o.value for o in resolved]


def _chinese(field: str, text: str) -> None:
    assert re.search(f"[{_CJK}]", text), f"{field} is not Chinese: {text!r}"
    assert not ENGLISH_PHRASE.search(text), f"{field} mixes in English: {text!r}"


def _english(field: str, text: str) -> None:
    assert not WIDE_PUNCT.search(text) and not LONG_CJK.search(text), \
        f"{field} is not English (a Chinese term in parentheses at most): {text!r}"


CASES = [(r.id, v) for r in CATALOG.rules for v in VIEWS]


@pytest.mark.parametrize(("rule_id", "view"), CASES, ids=[f"{r}-{v}" for r, v in CASES])
def test_every_annotation_reads_as_written(rule_id: str, view: str) -> None:
    rule = CATALOG.get(rule_id)
    assert rule is not None
    firing, resolved = _records(rule, VIEWS[view])
    for record in firing + resolved:
        texts = (record.annotations if isinstance(record, Alert) else
                 {"title": record.title, "cause": record.cause, "script": record.script,
                  "progress": record.progress})
        for field, text in texts.items():
            assert not SPACE_IN_CJK.search(text), f"{field}: space inside Chinese: {text!r}"
            assert not MADE_UP.search(text), f"{field}: reads a value it does not know: {text!r}"
            if isinstance(record, AgentHint):
                assert "unknown" not in text, f"{field}: {text!r}"
                if text:
                    _chinese(field, text)
            else:
                _english(field, text)
        if isinstance(record, AgentHint):
            assert record.title and record.script and record.progress
            assert record.kind == ("known_fault" if rule.technician else "service_reminder")
            if record.active:  # event time + TTL: the same in a replay
                assert record.expires_at == datetime.fromtimestamp(
                    (T0_MS + 3_600_000) / 1000, UTC) + HINT_TTL
    if rule.technician:
        [alert] = [r for r in resolved if isinstance(r, Alert)]
        assert alert.status == "resolved" and alert.annotations["resolved_summary"]
        assert "resolved_summary" not in firing[0].annotations
        assert not set(alert.annotations) & HINT_ANNOTATIONS
    if rule.agent:
        [hint] = [r for r in resolved if isinstance(r, AgentHint)]
        assert not hint.active and hint.progress != firing[-1].progress
        assert hint.expires_at == datetime.fromtimestamp(
            (T0_MS + 7_200_000) / 1000, UTC) + RESOLVED_HINT_TTL


def test_every_rule_has_its_own_resolved_and_title_texts() -> None:
    for rule in CATALOG.rules:
        if rule.technician:
            assert "resolved_summary" in rule.annotations, rule.id
        if rule.agent:
            assert {"title", "resolved", "progress"} <= set(rule.annotations), rule.id


def test_known_facts_are_read_out_and_unknown_ones_left_out() -> None:
    rule = CATALOG.get("suspended-for-arrears")
    assert rule is not None
    [hint] = _records(rule, KNOWN)[0]
    assert "当前欠费23.00元" in hint.cause and "因欠费23.00元已停机" in hint.script
    [hint] = _records(rule, EMPTY)[0]
    assert hint.cause.endswith("停机。") and "当前欠费" not in hint.cause
    assert "因欠费已停机" in hint.script


# --- the template language -------------------------------------------------------------------
@pytest.mark.parametrize(("text", "folded"), [
    ("系统复机稍有延迟， 我们已为您加急处理", "系统复机稍有延迟，我们已为您加急处理"),
    ("我们将为您 全额退还", "我们将为您全额退还"),
    ("扣费{amount} 元，预计 30 分钟", "扣费{amount}元，预计30分钟"),
    ("订购 {product_name} 业务", "订购{product_name}业务"),
    ("重新插拔 SIM卡", "重新插拔 SIM卡"),                      # CJK next to a Latin word
    ("the resume (复机) order, 不明扣费", "the resume (复机) order, 不明扣费"),
    ("two  spaces 两  个", "two  spaces 两  个"),              # more than one: written so
    ("{product} on {platform} for {since_ago}", "{product} on {platform} for {since_ago}"),
])
def test_folding_spaces_are_removed_only_inside_chinese(text: str, folded: str) -> None:
    assert fold_spaces(text) == folded


@pytest.mark.parametrize(("text", "values", "shown"), [
    ("余额[{balance}元]", {"balance": "1.00"}, "余额1.00元"),
    ("余额[{balance}元]", {}, "余额"),
    ("充值的[{topup_amount}元|话费]已到账", {}, "充值的话费已到账"),
    ("[{balance}|{arrears}|?]", {"arrears": "2.00"}, "2.00"),
    ("signing [[{signing}]]", {"signing": "4g"}, "signing [4g]"),
    ("{balance}", {}, "unknown"),
])
def test_optional_segments_and_alternatives(text: str, values: dict, shown: str) -> None:
    assert Template.parse(text, None).render(values) == shown


@pytest.mark.parametrize(("text", "shown"), [
    ("您好，您的余额为{balance}元，请充值。", "您好，请充值。"),
    ("号码已停机，当前欠费{arrears}元。", "号码已停机。"),
    ("当前欠费{arrears}元", ""),
    ("您好，已恢复。", "您好，已恢复。"),
])
def test_a_customers_clause_with_an_unknown_value_is_left_out(text: str, shown: str) -> None:
    assert Template.parse(text, None).render({}, unknown=None) == shown


@pytest.mark.parametrize(("text", "says"), [
    ("停机 [注意]", "has no placeholder, so it is always shown"),
    ("[{balance}", "is not closed"),
    ("余额]", "without an opening '['"),
    ("[{balance} [{arrears}]]", "cannot be nested"),
    ("[余额|{balance}]", "are never used"),
    ("[{phone}]", "unknown placeholder {phone}"),
])
def test_bad_segments_are_template_errors(text: str, says: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(says)):
        Template.parse(text, None)


def test_rules_check_names_the_line_of_a_bad_segment(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("""\
version: 1
groups:
  - name: g
    rules:
      - id: a-rule
        expr: status('bss') == 'active'
        for: 5m
        severity: warning
        notify: [agent]
        labels: {category: status}
        annotations:
          summary: "{msisdn} is {bss_status}"
          script: "余额[{balance}元"
          resolved_summary: "cleared at {ended}"
""")
    with pytest.raises(RuleError) as exc:
        load_catalog(path)
    assert "bad.yaml:13: rule 'a-rule': annotation 'script': optional segment" in str(exc.value)
    assert "resolved_summary" not in str(exc.value)   # {ended} is known there
