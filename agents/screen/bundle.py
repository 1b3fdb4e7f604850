"""One subscriber's screen bundle: what an agent sees when the call pops, and what the
one-key view (一键综合查询) returns. One pure function builds both, so the pop and the
view never disagree.

Inputs are the states other steps keep for the subscriber (``reads``: ``unified-view``,
``call-features``, ``audit`` and, when they are configured, ``foresee`` and
``contact-policy``) and the screen step's own state (recent complaints, recent
online-channel contacts, the call on now). A panel whose input step is not configured says
so (``available: false`` with a note); nothing is made up.

Personal data: ``full=True`` (the agent on the call) gets the whole number and name;
everyone else gets them masked (last four digits, first character).

>>> b = build_bundle("S001", {"unified-view": None}, None, 0, available=frozenset({"unified-view"}))
>>> b["panels"]["findings"]["available"], b["panels"]["risks"]["note"]
(False, 'not available yet: the foresee step is not in this pipeline')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from agents.audit.catalog import Catalog
from agents.audit.episodes import Emitter, split_key
from agents.call_features import window
from agents.unified_view import profile_value, status_of
from schemas.common import mask_msisdn, mask_name
from schemas.outputs import AgentHint, HintKind

VIEW, FEATURES, AUDIT, FORESEE, POLICY = (
    "unified-view", "call-features", "audit", "foresee", "contact-policy")
#: Everything the bundle can read, in pipeline order.
INPUTS = (VIEW, FEATURES, AUDIT, FORESEE, POLICY)

#: Decides "may this agent make an offer on this call?": ``(subscriber_id, reads,
#: policy_state, now_ms) -> (allowed, reasons)``. Built from the contact-policy package
#: when it is installed (see :mod:`agents.screen.step`).
OfferGate = Callable[[str, Mapping[str, Any], Any, int], tuple[bool, list[str]]]


def missing(step: str) -> dict[str, Any]:
    return {"available": False, "note": f"not available yet: the {step} step is not in this "
            "pipeline", "items": []}


def _panel(items: list[Any], **extra: Any) -> dict[str, Any]:
    return {"available": True, "note": "", "items": items, **extra}


def audit_items(audit: Mapping[str, Any] | None, catalog: Catalog | None, sid: str
                ) -> list[dict[str, Any]]:
    """Open findings an agent may speak about, with the texts of their hints.

    Only firing episodes whose rule tells agents and whose settle time passed (``hinted``)
    count: the same rule as for the ``agent-hints`` record, rendered by the audit's own
    emitter, so the script on the screen is the script in the hint.
    """
    if not audit or catalog is None:
        return []
    emitter = Emitter(catalog)
    now = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for key, ep in audit.get("episodes", {}).items():
        if "fired_at" not in ep or "agent" not in ep.get("notify", ()) or not ep.get(
                "hinted", True):
            continue
        rule_id, item = split_key(key)
        rule = catalog.get(rule_id)
        for o in emitter.emit(rule, rule_id, sid, item, ep, ep["fired_at"], now):
            if isinstance(o.value, AgentHint):
                h = o.value
                out.append({"hint_id": h.hint_id, "kind": str(h.kind), "title": h.title,
                            "cause": h.cause, "script": h.script, "progress": h.progress,
                            "rule": rule_id, "severity": ep.get("severity", ""),
                            "since_ms": ep["since"]})
    out.sort(key=lambda i: i["since_ms"])
    return out


def _scores(state: Mapping[str, Any] | None) -> dict[str, Any]:
    from agents.foresee.view import scores_of
    return dict(scores_of(state))  # type: ignore[arg-type]


def _profile(view: Mapping[str, Any] | None, full: bool) -> dict[str, Any]:
    if not view:
        return {}
    name = profile_value(view, "name")  # type: ignore[arg-type]
    plan = view.get("systems", {}).get("bss", {}).get("plan")
    return {
        "name": (name if full else mask_name(name)) if name else None,
        "star_level": profile_value(view, "star_level"),  # type: ignore[arg-type]
        "seed_user": profile_value(view, "seed_user"),  # type: ignore[arg-type]
        "value_tier": profile_value(view, "value_tier"),  # type: ignore[arg-type]
        "do_not_disturb": profile_value(view, "do_not_disturb"),  # type: ignore[arg-type]
        "bss_status": status_of(view, "bss"),  # type: ignore[arg-type]
        "hss_status": status_of(view, "hss"),  # type: ignore[arg-type]
        "plan": plan["v"] if plan else None,
        "port_out_requested": view.get("port_out") is not None,
    }


def build_bundle(
    subscriber_id: str,
    reads: Mapping[str, Any],
    own: Mapping[str, Any] | None,
    now_ms: int,
    *,
    available: frozenset[str],
    catalog: Catalog | None = None,
    offer_gate: OfferGate | None = None,
    offers: Mapping[str, Mapping[str, Any]] | None = None,
    full: bool = False,
) -> dict[str, Any]:
    """The bundle for one subscriber (a plain JSON-able dict; see docs/screen.md)."""
    view = reads.get(VIEW)
    msisdn = (view or {}).get("msisdn") or (own or {}).get("msisdn") or ""
    panels: dict[str, Any] = {}

    if AUDIT in available:
        found = audit_items(reads.get(AUDIT), catalog, subscriber_id)
        panels["findings"] = _panel([f for f in found if f["kind"] == HintKind.KNOWN_FAULT])
        panels["reminders"] = _panel([f for f in found if f["kind"] != HintKind.KNOWN_FAULT])
    else:
        panels["findings"] = missing("audit")
        panels["reminders"] = missing("audit")

    scores = _scores(reads.get(FORESEE)) if FORESEE in available else None
    if scores is None:
        panels["risks"] = missing("foresee")
        panels["retention"] = missing("foresee")
    else:
        risks = [{"model": m, "p": s.get("p"), "above": bool(s.get("above")),
                  "reasons": list(s.get("reasons", [])), "version": s.get("version")}
                 for m, s in scores.items() if not m.startswith("offer:")]
        risks.sort(key=lambda r: -(r["p"] or 0.0))
        panels["risks"] = _panel(risks)
        churn = scores.get("churn")
        task = []
        if churn and churn.get("above"):
            call = (own or {}).get("call") or {}
            task.append({"task_id": f"retain:{subscriber_id}:{call.get('call_id', 'view')}",
                         "p": churn.get("p"), "reasons": list(churn.get("reasons", []))})
        panels["retention"] = _panel(task)  # only when the churn model says so (above)

    panels["offer"] = _offer(subscriber_id, reads, now_ms, available, scores, offer_gate,
                             offers)
    panels["complaints"] = _panel(list((own or {}).get("complaints", [])))
    panels["online"] = _panel(list((own or {}).get("online", [])))
    features = reads.get(FEATURES)
    panels["calls"] = (_panel([], **{"30d": window(features, now_ms, 30),
                                     "7d": window(features, now_ms, 7)})
                       if features else (_panel([]) if FEATURES in available
                                         else missing("call-features")))

    say = [f["script"] for f in panels["findings"]["items"] + panels["reminders"]["items"]
           if f["script"]]
    if panels["complaints"]["items"]:
        opened = [c for c in panels["complaints"]["items"] if c["stage"] in ("opened", "updated")]
        if opened:
            say.insert(0, f"您有{len(opened)}件投诉正在处理中 (open complaints: {len(opened)})")
    return {
        "subscriber_id": subscriber_id,
        "msisdn": msisdn if full else mask_msisdn(msisdn) if msisdn else "",
        "msisdn_masked": mask_msisdn(msisdn) if msisdn else "",
        "full": full,
        "profile": _profile(view, full),
        "say_first": say[:3],
        "panels": panels,
        "built_at_ms": now_ms,
    }


def _offer(sid: str, reads: Mapping[str, Any], now_ms: int, available: frozenset[str],
           scores: dict[str, Any] | None, gate: OfferGate | None,
           offers: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """The best offer the propensity model ranks above its threshold, only when the contact
    policy allows an offer on an inbound hotline call (control group: never)."""
    if scores is None:
        return missing("foresee")
    if POLICY not in available or gate is None:
        return missing("contact-policy")
    ranked = sorted(((m.removeprefix("offer:"), s) for m, s in scores.items()
                     if m.startswith("offer:") and s.get("above")),
                    key=lambda x: -(x[1].get("p") or 0.0))
    if not ranked:
        return _panel([], decision="none")
    allowed, reasons = gate(sid, reads, reads.get(POLICY), now_ms)
    if not allowed:
        return _panel([], decision="suppress", reasons=reasons)
    offer_id, s = ranked[0]
    meta = dict((offers or {}).get(offer_id, {}))
    return _panel([{"offer_id": offer_id, "p": s.get("p"), "reasons": list(s.get("reasons", [])),
                    "name_zh": meta.get("name_zh", offer_id), "name_en": meta.get("name_en", ""),
                    "script": meta.get("script", "")}], decision="allow", reasons=reasons)
