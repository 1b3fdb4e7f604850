"""The ``screen-pop`` step: when an agent answers a subscriber's hotline call, build the
bundle for that agent's screen.

Pure like every step: on a ``hotline_call`` leg of stage ``answered`` it remembers the call
and returns a :class:`schemas.screen.ScreenPush` addressed to the pseudo-topic
``screen-push``; on ``ended`` a push that closes the page's call. The worker's adapter
(:mod:`streams.screen_push`) takes those out of the outputs and sends them to the screen
service at once, without waiting for the commit (a pop is not a Kafka output). It also
keeps what no other step keeps for the agent: the last complaints with their state and
the last online-channel contacts (渠道协同: app, WeChat, web, mall).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.audit.catalog import Catalog
from agents.contact.policy import load_policy
from agents.core import EventContext, Output, Result, State
from agents.foresee.offers import control_settings, in_control_group, load_offers
from agents.screen.bundle import INPUTS, POLICY, OfferGate, build_bundle
from agents.unified_view import ms
from schemas.contacts import ContactChannel, ContactPurpose, ContactRequest
from schemas.registry import CALL_EVENTS, COMPLAINTS, CONTACT_OUTCOMES
from schemas.screen import SCREEN_PUSH, ScreenPush

log = logging.getLogger(__name__)

#: How many recent complaints and online contacts the step keeps per subscriber.
KEEP_RECENT = 10


def _recent(items: list[dict[str, Any]], key: str, entry: dict[str, Any]) -> bool:
    """Insert or replace ``entry`` (by ``key``; a newer report wins), newest first."""
    for i, old in enumerate(items):
        if old[key] == entry[key]:
            if old["t"] > entry["t"]:
                return False
            del items[i]
            break
    items.append(entry)
    items.sort(key=lambda e: -e["t"])
    del items[KEEP_RECENT:]
    return True


def policy_gate(policy_path: str | Path | None = None) -> OfferGate | None:
    """"May this agent make an offer on this inbound call?": the contact policy for a
    marketing contact on channel ``hotline`` and Foresee's control group (its configured
    share and salt). ``policy_path`` is the live policy file (``FORESIGHT_CONTACT_POLICY``;
    the packaged one by default), the same the contact-policy step decides with."""
    channel = ContactChannel.HOTLINE
    policy = load_policy(policy_path)
    control_share, control_salt = control_settings()

    def gate(sid: str, reads: Mapping[str, Any], own: Any, now_ms: int
             ) -> tuple[bool, list[str]]:
        if in_control_group(sid, control_share, control_salt):
            return False, ["control_group"]
        view = reads.get("unified-view") or {}
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        request = ContactRequest(
            event_id=f"screen-{sid}-{now_ms}", event_time=now, request_id=f"screen-{now_ms}",
            subscriber_id=sid, msisdn=view.get("msisdn") or "10000000000",
            campaign_id="screen-pop", purpose=ContactPurpose.MARKETING, channel=channel,
            requester="screen-pop")
        decision = policy.decide(request, reads, own, now_ms)
        return str(decision.decision) == "allow", list(decision.reasons)

    return gate


def _offers() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for o in load_offers():
        d = o if isinstance(o, dict) else o.model_dump() if hasattr(o, "model_dump") else vars(o)
        out[str(d.get("offer_id") or d.get("id"))] = d
    return out


class ScreenPop:
    """Pipeline step ``screen-pop`` (one state per subscriber).

    ``configured`` names the steps of the pipeline it runs in: it reads only those (the
    runtime refuses a read of an absent step) and the bundle says "not available yet" for
    the others.
    """

    name = "screen-pop"
    topics = frozenset({CALL_EVENTS, COMPLAINTS, CONTACT_OUTCOMES})

    def __init__(self, configured: Iterable[str] = INPUTS, catalog: Catalog | None = None,
                 offer_gate: OfferGate | None = None,
                 policy_path: str | Path | None = None) -> None:
        names = set(configured)
        self.reads: tuple[str, ...] = tuple(n for n in INPUTS if n in names)
        self.available = frozenset(self.reads)
        self.catalog = catalog
        self.offer_gate = offer_gate if offer_gate is not None else (
            policy_gate(policy_path) if POLICY in names else None)
        self.offers = _offers() if self.offer_gate is not None else {}

    def key_of(self, event: Any) -> str | None:
        kind = event.kind
        if kind in ("hotline_call", "complaint", "online_contact"):
            return event.subscriber_id
        return None

    def bundle(self, sid: str, reads: Mapping[str, Any], own: Mapping[str, Any] | None,
               now_ms: int, *, full: bool) -> dict[str, Any]:
        return build_bundle(sid, reads, own, now_ms, available=self.available,
                            catalog=self.catalog, offer_gate=self.offer_gate,
                            offers=self.offers, full=full)

    def apply(self, state: State | None, event: Any, ctx: EventContext,
              reads: Mapping[str, State | None]) -> Result:
        st: State = state if state is not None else {
            "msisdn": event.msisdn, "call": None, "complaints": [], "online": []}
        t = ctx.event_ms or ms(event.event_time)
        kind = event.kind
        if kind == "complaint":
            changed = _recent(st["complaints"], "complaint_id", {
                "complaint_id": event.complaint_id, "channel": str(event.channel),
                "type": str(event.type), "category": event.category,
                "severity": str(event.severity), "stage": str(event.stage),
                "satisfaction": str(event.satisfaction) if event.satisfaction else None,
                "summary": event.summary, "t": t})
            return self._during_call(st, changed, event, ctx, reads, t)
        if kind == "online_contact":
            changed = _recent(st["online"], "session_id", {
                "session_id": event.session_id, "channel": event.channel,
                "topic": event.topic, "summary": event.summary, "t": t})
            return self._during_call(st, changed, event, ctx, reads, t)
        # hotline call legs
        call = st.get("call")
        if event.stage == "answered" and event.agent_id:
            if call and call["call_id"] == event.call_id and call["agent_id"] == event.agent_id \
                    and call["t"] > t:
                return Result(st, changed=False)  # an older leg of the call on now
            st["call"] = {"call_id": event.call_id, "agent_id": event.agent_id,
                          "hotline": event.hotline, "t": t}
            bundle = self.bundle(event.subscriber_id, reads, st, t, full=True)
            bundle["call"] = dict(st["call"])
            push = ScreenPush(kind="pop", agent_id=event.agent_id, call_id=event.call_id,
                              subscriber_id=event.subscriber_id, event_ts_ms=ctx.timestamp_ms,
                              bundle=bundle)
            return Result(st, [Output(SCREEN_PUSH, event.agent_id, push)])
        if event.stage == "ended" and call and call["call_id"] == event.call_id:
            st["call"] = None
            push = ScreenPush(kind="ended", agent_id=call["agent_id"], call_id=event.call_id,
                              subscriber_id=event.subscriber_id, event_ts_ms=ctx.timestamp_ms)
            return Result(st, [Output(SCREEN_PUSH, call["agent_id"], push)])
        return Result(st, changed=False)

    def _during_call(self, st: State, changed: bool, event: Any, ctx: EventContext,
                     reads: Mapping[str, State | None], t: int) -> Result:
        """A complaint or an online contact while the subscriber is on a call: the open
        page gets the bundle again (``update``), so the agent sees it now."""
        call = st.get("call")
        if not changed or not call:
            return Result(st, changed=changed)
        bundle = self.bundle(event.subscriber_id, reads, st, t, full=True)
        bundle["call"] = dict(call)
        push = ScreenPush(kind="update", agent_id=call["agent_id"], call_id=call["call_id"],
                          subscriber_id=event.subscriber_id, event_ts_ms=ctx.timestamp_ms,
                          bundle=bundle)
        return Result(st, [Output(SCREEN_PUSH, call["agent_id"], push)])
