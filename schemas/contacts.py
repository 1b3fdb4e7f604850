"""``contact-requests`` (outbound contact tasks to filter) and ``contact-outcomes``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from schemas.common import Code, Ident, InboundEvent, Msisdn, SubscriberId, Text

TimeZoneName = Annotated[str, Field(max_length=64,
                                    pattern=r"^([A-Za-z_]+(/[A-Za-z0-9_+-]+)*|[+-]\d\d:\d\d)$")]


class ContactPurpose(StrEnum):
    MARKETING = "marketing"    # 营销类任务: seed users are skipped
    SERVICE = "service"        # 服务类任务: seed users are included


class ContactChannel(StrEnum):
    TELEMARKETING = "telemarketing"
    SMS = "sms"
    APP_PUSH = "app_push"
    ACCOUNT_MANAGER = "account_manager"    # 高价值客户经理
    IVR = "ivr"
    #: the inbound call an agent is on (not an outbound contact): the screen pop asks "may
    #: this agent make an offer on this call?" with it
    HOTLINE = "hotline"


class ContactRequest(InboundEvent):
    """A campaign or service system asks to contact a subscriber."""

    kind: Literal["contact_request"] = "contact_request"
    request_id: Ident
    subscriber_id: SubscriberId
    msisdn: Msisdn
    campaign_id: Ident
    purpose: ContactPurpose
    channel: ContactChannel
    scheduled_for: AwareDatetime | None = None
    requester: Ident = "campaign"
    #: the subscriber's local time zone (IANA name such as ``Asia/Shanghai``, or ``+08:00``)
    #: when the requester knows it; else the contact policy's default zone (quiet hours)
    timezone: TimeZoneName | None = None


class DoNotDisturb(InboundEvent):
    """An operator's do-not-disturb list entry (compacted topic ``do-not-disturb``).

    ``listed: true`` puts the subscriber on the list, ``false`` takes them off; the latest
    entry per subscriber (by event time) wins, and the topic is compacted so a restarted
    worker still has the whole list. Written by ``foresight policy dnd add|remove``.
    """

    kind: Literal["do_not_disturb"] = "do_not_disturb"
    subscriber_id: SubscriberId
    listed: bool
    note: Text = ""


class SurveyOutcome(InboundEvent):
    """IVR / SMS satisfaction survey answer (1 worst .. 10 best)."""

    kind: Literal["survey"]
    subscriber_id: SubscriberId
    msisdn: Msisdn
    survey_id: Ident
    channel: ContactChannel
    score: int = Field(ge=1, le=10)


class RetentionOutcome(InboundEvent):
    kind: Literal["retention"]
    subscriber_id: SubscriberId
    msisdn: Msisdn
    task_id: Ident
    outcome: Literal["retained", "churned", "pending"]
    #: the hotline call on which an agent recorded it (screen pop), if any (version 3)
    call_id: Ident | None = None
    agent_id: Ident | None = None


class OfferOutcome(InboundEvent):
    kind: Literal["offer"]
    subscriber_id: SubscriberId
    msisdn: Msisdn
    offer_id: Ident
    decision: Literal["accepted", "declined"]
    #: the hotline call on which the offer was made (screen pop), if any (version 3)
    call_id: Ident | None = None
    agent_id: Ident | None = None


class OnlineContact(InboundEvent):
    """A contact through an online channel, shared with the hotline (渠道协同)."""

    kind: Literal["online_contact"]
    subscriber_id: SubscriberId
    msisdn: Msisdn
    session_id: Ident
    channel: Literal["app", "wechat", "web", "mall"]
    topic: Code
    summary: Text = ""


class ContactResult(InboundEvent):
    """What happened to an outbound contact request, or to a reminder on an agent's screen.

    From the screen pop (version 3): ``request_id`` is the reminder's hint id, ``result`` is
    ``confirmed`` (the agent told the customer) or ``dismissed`` (not relevant on this call),
    with the ``call_id`` and ``agent_id`` of the call.
    """

    kind: Literal["contact_result"]
    subscriber_id: SubscriberId
    msisdn: Msisdn
    request_id: Ident
    result: Literal["reached", "not_reached", "refused", "complained", "confirmed", "dismissed"]
    call_id: Ident | None = None
    agent_id: Ident | None = None


ContactOutcome = Annotated[
    SurveyOutcome | RetentionOutcome | OfferOutcome | OnlineContact | ContactResult,
    Field(discriminator="kind"),
]
