"""``complaints``: complaints and consultations from every channel, through their lifecycle."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.common import Code, Ident, InboundEvent, Msisdn, SubscriberId, Text


class ComplaintChannel(StrEnum):
    HOTLINE = "hotline"
    APP = "app"
    WECHAT = "wechat"
    STORE = "store"            # 营业厅
    REGULATOR = "regulator"    # 工信部 / 通管局 (越级投诉)
    SOCIAL = "social"
    EMAIL = "email"


class ComplaintKind(StrEnum):
    COMPLAINT = "complaint"
    CONSULTATION = "consultation"


class Severity(StrEnum):
    NORMAL = "normal"
    ESCALATED = "escalated"    # 升级投诉
    REGULATOR = "regulator"    # 申诉 to the regulator


class ComplaintStage(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Satisfaction(StrEnum):
    SATISFIED = "satisfied"
    NEUTRAL = "neutral"
    DISSATISFIED = "dissatisfied"


class Complaint(InboundEvent):
    """One lifecycle step of a complaint; ``category`` is the multi-level taxonomy code."""

    kind: Literal["complaint"] = "complaint"
    subscriber_id: SubscriberId
    msisdn: Msisdn
    complaint_id: Ident
    channel: ComplaintChannel
    type: ComplaintKind = ComplaintKind.COMPLAINT
    category: Code
    severity: Severity = Severity.NORMAL
    stage: ComplaintStage
    satisfaction: Satisfaction | None = None
    summary: Text = Field(default="")
