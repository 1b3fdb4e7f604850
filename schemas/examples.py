"""One valid example of every kind of every input topic.

Producers in other languages can start from these; the tests check that each validates
against its model, survives a JSON round trip and matches the exported JSON Schema.
"""

from __future__ import annotations

from typing import Any

_T = "2026-11-26T09:30:00+08:00"
_ID = {"schema_version": 1, "event_time": _T, "subscriber_id": "S00000001",
       "msisdn": "8613800001234"}


def _s(kind: str, system: str = "bss", **fields: Any) -> dict[str, Any]:
    return {**_ID, "event_id": f"ev-{kind}", "kind": kind, "system": system, **fields}


SUBSCRIBER_STATE: list[dict[str, Any]] = [
    _s("opened", plan_id="PLAN-5G-129", plan_networks=["4g", "5g"]),
    _s("activated"),
    _s("suspended", system="hss", reason="arrears"),
    _s("resumed", system="hss"),
    _s("closed"),
    _s("plan_changed", plan_id="PLAN-4G-59", plan_networks=["4g"]),
    _s("product_ordered", product_id="VAS-MUSIC", platform="vas", monthly_fee_cents=1500),
    _s("product_cancelled", product_id="VAS-MUSIC", platform="vas"),
    _s("product_provisioned", system="vas", product_id="VAS-MUSIC"),
    _s("product_deprovisioned", system="vas", product_id="VAS-MUSIC"),
    _s("charged", system="billing", charge_id="CH-1", item="VAS-MUSIC", amount_cents=1500,
       balance_cents=8500),
    _s("refunded", system="billing", charge_id="CH-1", amount_cents=1500),
    _s("topped_up", system="billing", amount_cents=10000, balance_cents=10000, channel="app"),
    _s("balance_reported", system="billing", balance_cents=-2300, arrears_cents=2300),
    _s("granted", grant_id="G-1", stage="promised", amount_cents=2000,
       due_by="2026-11-27T00:00:00+08:00"),
    _s("signing_changed", system="hss", networks=["4g", "5g"]),
    _s("network_registered", system="hss", rat="5g", cell_id="C-00042"),
    _s("port_out_requested", system="mnp", deadline="2026-11-28T00:00:00+08:00",
       recipient="operator-b"),
    _s("port_out_cancelled", system="mnp"),
    _s("profile_changed", system="bss", star_level=6, seed_user=True, value_tier="high",
       home_cell="C-00042", do_not_disturb=False),
]

CALL_EVENTS: list[dict[str, Any]] = [
    {**_ID, "event_id": "ev-call-1", "kind": "network_call", "call_id": "CDR-1",
     "peer_number": "8613900005678", "direction": "mo", "duration_s": 75, "result": "dropped",
     "cell_id": "C-00042", "rat": "volte"},
    {**_ID, "event_id": "ev-call-2", "kind": "hotline_call", "call_id": "HL-1", "stage": "answered",
     "hotline": "10010", "queue": "billing", "agent_id": "A-0042"},
]

COMPLAINTS: list[dict[str, Any]] = [
    {**_ID, "event_id": "ev-cmp-1", "kind": "complaint", "complaint_id": "CMP-1",
     "channel": "hotline", "type": "complaint", "category": "network.coverage.indoor",
     "severity": "escalated", "stage": "opened", "summary": "no signal at home"},
]

NETWORK_KPIS: list[dict[str, Any]] = [
    {"schema_version": 1, "event_id": "ev-kpi-1", "event_time": _T, "kind": "cell_kpi",
     "cell_id": "C-00042", "window_start": "2026-11-26T09:15:00+08:00", "scenario": "residential",
     "call_setup_success": 0.982, "drop_rate": 0.012, "sms_delivery": 0.995,
     "throughput_mbps": 85.5, "users": 312},
    {"schema_version": 1, "event_id": "ev-line-1", "event_time": _T, "kind": "line_measurement",
     "line_id": "L-0000042", "subscriber_id": "S00000001", "onu_rx_power_dbm": -27.8,
     "contracted_mbps": 500, "measured_mbps": 120.0, "terminal_max_mbps": 100},
]

CONTACT_REQUESTS: list[dict[str, Any]] = [
    {**_ID, "event_id": "ev-req-1", "kind": "contact_request", "request_id": "REQ-1",
     "campaign_id": "CMP-5G-UPSELL", "purpose": "marketing", "channel": "telemarketing",
     "scheduled_for": "2026-11-26T10:00:00+08:00", "requester": "campaign"},
]

CONTACT_OUTCOMES: list[dict[str, Any]] = [
    {**_ID, "event_id": "ev-out-1", "kind": "survey", "survey_id": "SV-1", "channel": "ivr",
     "score": 3},
    {**_ID, "event_id": "ev-out-2", "kind": "retention", "task_id": "RT-1", "outcome": "retained"},
    {**_ID, "event_id": "ev-out-3", "kind": "offer", "offer_id": "OF-1", "decision": "declined"},
    {**_ID, "event_id": "ev-out-4", "kind": "online_contact", "session_id": "WX-1",
     "channel": "wechat", "topic": "billing.query", "summary": "asked about a charge"},
    {**_ID, "event_id": "ev-out-5", "kind": "contact_result", "request_id": "REQ-1",
     "result": "reached"},
]

DO_NOT_DISTURB: list[dict[str, Any]] = [
    {"schema_version": 1, "event_id": "ev-dnd-1", "event_time": _T, "kind": "do_not_disturb",
     "subscriber_id": "S00000001", "listed": True, "note": "asked on the hotline"},
]

INPUT_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "subscriber-state": SUBSCRIBER_STATE,
    "call-events": CALL_EVENTS,
    "complaints": COMPLAINTS,
    "network-kpis": NETWORK_KPIS,
    "contact-requests": CONTACT_REQUESTS,
    "contact-outcomes": CONTACT_OUTCOMES,
    "do-not-disturb": DO_NOT_DISTURB,
}
