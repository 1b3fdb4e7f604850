"""The question an agent's screen asks during an inbound call: may I make an offer now?

The screen pop (issue 21) calls :func:`may_offer` with the same states the
``contact-policy`` step reads (``unified-view``, ``audit``, ``foresee`` when configured) and
the step's own state for the subscriber: the answer is the policy's decision for a
marketing contact on the ``hotline`` channel at that instant, with every reason, so the
panel can say why not. Quiet hours do not cover the hotline (the customer called us); the
marketing rules (seed users, complaints, faults, risk, caps) do.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agents.contact.policy import Policy, PolicyDecision
from schemas.contacts import ContactRequest


def offer_request(subscriber_id: str, msisdn: str, now_ms: int,
                  call_id: str = "call") -> ContactRequest:
    """The request an offer on the current inbound call amounts to."""
    return ContactRequest.model_construct(
        schema_version=1, event_id=f"offer-{call_id}", kind="contact_request",
        event_time=datetime.fromtimestamp(now_ms / 1000, UTC),
        request_id=f"offer-{call_id}", subscriber_id=subscriber_id, msisdn=msisdn,
        campaign_id="inbound-offer", purpose="marketing", channel="hotline",
        scheduled_for=None, requester="screen-pop", timezone=None)


def may_offer(policy: Policy, subscriber_id: str, msisdn: str,
              reads: Mapping[str, dict[str, Any] | None], own_state: dict[str, Any] | None,
              now_ms: int, call_id: str = "call") -> PolicyDecision:
    """The policy's decision on an offer during this call (nothing is recorded: the
    offer's outcome comes back on ``contact-outcomes``)."""
    return policy.decide(offer_request(subscriber_id, msisdn, now_ms, call_id), reads,
                         own_state, now_ms)
