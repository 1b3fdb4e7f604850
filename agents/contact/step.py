"""The ``contact-policy`` step: one ``contact-decisions`` record per contact request.

Keyed by subscriber id, it consumes ``contact-requests`` (decides), ``contact-outcomes``
(results feed the caps and complaint rules: ``not_reached`` gives the cap room back,
``refused`` starts the refusal window, ``complained`` counts as a complaint),
``complaints`` (recency, severity, open) and ``do-not-disturb`` (the operator's list), and
reads the ``unified-view``, ``audit`` and, when configured, ``foresee`` state of the same
subscriber. The decision itself is :meth:`agents.contact.policy.Policy.decide` (pure).

Exactly one decision per request id: the step remembers the ids it decided (bounded, in
its changelogged state) and a redelivered request produces nothing. A crash between
processing and commit replays from the committed state, whose transaction also holds
the output, so a restart never duplicates either.

Shadow (dry run): with a second policy, every request is decided by both; the live
decision goes out (and alone moves the caps), the shadow's is attached to it as
``shadow`` with ``agrees``, so an operator compares them on the real stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agents.contact.functions import AUDIT, FORESEE, VIEW
from agents.contact.history import (
    count_contact,
    new_state,
    note_complaint,
    note_dnd,
    note_refusal,
    remember_decision,
    uncount_contact,
)
from agents.contact.policy import Policy, PolicyDecision, contact_time_ms, load_policy
from agents.core import EventContext, Output, Result, State
from schemas.outputs import ContactDecision, ShadowDecision
from schemas.registry import (
    COMPLAINTS,
    CONTACT_DECISIONS,
    CONTACT_OUTCOMES,
    CONTACT_REQUESTS,
    DO_NOT_DISTURB,
)

NAME = "contact-policy"


def _dt(t: int | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t / 1000, UTC)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class ContactPolicy:
    """Pipeline step ``contact-policy`` (see the module docstring)."""

    name = NAME
    topics = frozenset({CONTACT_REQUESTS, CONTACT_OUTCOMES, COMPLAINTS, DO_NOT_DISTURB})

    def __init__(self, policy: Policy | None = None, shadow: Policy | None = None,
                 reads: tuple[str, ...] = (VIEW, AUDIT)) -> None:
        self.policy = policy if policy is not None else load_policy()
        self.shadow = shadow
        unknown = set(reads) - {VIEW, AUDIT, FORESEE}
        if unknown:
            raise ValueError(f"contact-policy cannot read {sorted(unknown)}")
        self.reads: tuple[str, ...] = reads

    def key_of(self, event: Any) -> str | None:
        return event.subscriber_id

    def apply(self, state: State | None, event: Any, ctx: EventContext,
              reads: Mapping[str, State | None]) -> Result:
        now = ctx.event_ms or _ms(event.event_time)
        kind = event.kind
        if kind == "contact_request":
            return self._request(state, event, now, reads)
        st = state if state is not None else new_state()
        if kind == "complaint":
            if event.type != "complaint":
                return Result(state, changed=False)     # a consultation is not a complaint
            note_complaint(st, event.complaint_id, event.severity, event.stage, now)
            return Result(st)
        if kind == "do_not_disturb":
            return Result(st, changed=note_dnd(st, event.listed, now, event.event_id)
                          or state is None)
        if kind == "contact_result":
            if event.result == "not_reached":
                changed = uncount_contact(st, event.request_id)
                return Result(st if state is not None or changed else state,
                              changed=changed)
            if event.result == "refused":
                note_refusal(st, now)
                return Result(st)
            if event.result == "complained":
                # a complaint about the contact itself: recent, but nothing left open
                note_complaint(st, f"contact:{event.request_id}", "normal", "closed", now)
                return Result(st)
        return Result(state, changed=False)   # surveys, offers, online contacts: not ours

    def _request(self, state: State | None, req: Any, now: int,
                 reads: Mapping[str, State | None]) -> Result:
        if state is not None and req.request_id in state.get("decided", {}):
            return Result(state, changed=False)           # redelivered: decided once already
        visible = {name: reads.get(name) for name in self.reads}
        live = self.policy.decide(req, visible, state, now)
        shadow = self.shadow.decide(req, visible, state, now) if self.shadow else None
        st = state if state is not None else new_state()
        remember_decision(st, req.request_id, now, self.policy.remember_ms)
        if live.decision == "allow":
            count_contact(st, contact_time_ms(req, now), str(req.channel), str(req.purpose),
                          req.request_id, max(self.policy.max_cap_window_ms,
                                              self.shadow.max_cap_window_ms if self.shadow
                                              else 0))
        record = decision_record(req, live, now, shadow)
        return Result(st, [Output(CONTACT_DECISIONS, req.subscriber_id, record)])


def decision_record(req: Any, live: PolicyDecision, now: int,
                    shadow: PolicyDecision | None = None) -> ContactDecision:
    """The ``contact-decisions`` record; ``decided_at`` is the request's event time (a
    replay decides identically)."""
    return ContactDecision(
        request_id=req.request_id, subscriber_id=req.subscriber_id, decision=live.decision,
        reasons=live.reasons, channel=str(req.channel), policy_version=live.policy_version,
        decided_at=_dt(now), purpose=str(req.purpose), campaign_id=req.campaign_id,
        exempted=live.exempted, allowed_after=_dt(live.allowed_after_ms),
        shadow=None if shadow is None else ShadowDecision(
            decision=shadow.decision, reasons=shadow.reasons,
            policy_version=shadow.policy_version, allowed_after=_dt(shadow.allowed_after_ms),
            agrees=(shadow.decision == live.decision)))
