"""``subscriber-state``: one fact a source system reports about a subscriber.

Every kind names the ``system`` that reported it, because the point of the topic is that
systems disagree: BSS sells a product, the VAS platform may never provision it, billing may
keep charging after it is cancelled. The audit agent compares these views.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from schemas.common import (
    CellId,
    Cents,
    Ident,
    InboundEvent,
    Msisdn,
    Rat,
    SourceSystem,
    SubscriberId,
)


class SuspendReason(StrEnum):
    ARREARS = "arrears"          # 欠费停机
    REQUEST = "request"          # 用户申请停机 / 报停
    LOST = "lost"                # 挂失
    FRAUD = "fraud"
    REGULATORY = "regulatory"    # 实名制等


class ValueTier(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VIP = "vip"


class GrantStage(StrEnum):
    PROMISED = "promised"    # BSS/marketing promised a grant (bonus credit, data)
    CREDITED = "credited"    # billing credited it


class _StateEvent(InboundEvent):
    subscriber_id: SubscriberId
    msisdn: Msisdn
    system: SourceSystem


class Opened(_StateEvent):
    """开户: the subscriber exists in ``system`` with a plan."""

    kind: Literal["opened"]
    plan_id: Ident
    plan_networks: list[Rat] = Field(default_factory=list, max_length=4)


class Activated(_StateEvent):
    """激活: the line is usable according to ``system``."""

    kind: Literal["activated"]


class Suspended(_StateEvent):
    """停机 (BSS/billing) or barred (HSS)."""

    kind: Literal["suspended"]
    reason: SuspendReason


class Resumed(_StateEvent):
    """复机: back to active according to ``system``."""

    kind: Literal["resumed"]


class Closed(_StateEvent):
    """销户 / 拆机."""

    kind: Literal["closed"]


class PlanChanged(_StateEvent):
    """套餐变更; ``plan_networks`` lists the generations the plan includes."""

    kind: Literal["plan_changed"]
    plan_id: Ident
    plan_networks: list[Rat] = Field(default_factory=list, max_length=4)


class ProductOrdered(_StateEvent):
    """业务订购 in BSS; ``platform`` is the system that must provision it."""

    kind: Literal["product_ordered"]
    product_id: Ident
    platform: SourceSystem
    monthly_fee_cents: Cents = 0


class ProductCancelled(_StateEvent):
    """业务退订 in BSS."""

    kind: Literal["product_cancelled"]
    product_id: Ident
    platform: SourceSystem


class ProductProvisioned(_StateEvent):
    """The platform (``system``) switched the product on."""

    kind: Literal["product_provisioned"]
    product_id: Ident


class ProductDeprovisioned(_StateEvent):
    """The platform (``system``) switched the product off."""

    kind: Literal["product_deprovisioned"]
    product_id: Ident


class Charged(_StateEvent):
    """扣费 by billing. ``item`` is a product id, ``plan`` or ``usage``."""

    kind: Literal["charged"]
    charge_id: Ident
    item: Ident
    amount_cents: Cents
    balance_cents: Cents | None = None


class Refunded(_StateEvent):
    """退费 of an earlier charge."""

    kind: Literal["refunded"]
    charge_id: Ident
    amount_cents: Cents
    balance_cents: Cents | None = None


class ToppedUp(_StateEvent):
    """充值 credited by billing."""

    kind: Literal["topped_up"]
    amount_cents: Cents
    balance_cents: Cents
    channel: Ident = "unknown"


class BalanceReported(_StateEvent):
    """Billing's periodic view of balance and arrears (欠费)."""

    kind: Literal["balance_reported"]
    balance_cents: Cents
    arrears_cents: Cents = 0


class Granted(_StateEvent):
    """赠送: promised (BSS) or credited (billing), matched by ``grant_id``."""

    kind: Literal["granted"]
    grant_id: Ident
    stage: GrantStage
    amount_cents: Cents = 0
    due_by: AwareDatetime | None = None


class SigningChanged(_StateEvent):
    """网别签约 in HSS: the generations the subscriber is signed for."""

    kind: Literal["signing_changed"]
    networks: list[Rat] = Field(max_length=4)


class NetworkRegistered(_StateEvent):
    """The subscriber attached to the network (first registration after activation)."""

    kind: Literal["network_registered"]
    rat: Rat
    cell_id: CellId | None = None


class PortOutRequested(_StateEvent):
    """携号转网 out: services must end by ``deadline``."""

    kind: Literal["port_out_requested"]
    deadline: AwareDatetime
    recipient: Ident = "unknown"


class PortOutCancelled(_StateEvent):
    kind: Literal["port_out_cancelled"]


class ProfileChanged(_StateEvent):
    """Customer profile: only the fields that changed are set."""

    kind: Literal["profile_changed"]
    star_level: int | None = Field(default=None, ge=0, le=7)
    seed_user: bool | None = None
    value_tier: ValueTier | None = None
    home_cell: CellId | None = None
    name: str | None = Field(default=None, max_length=60)
    do_not_disturb: bool | None = None


SubscriberStateEvent = Annotated[
    Opened | Activated | Suspended | Resumed | Closed | PlanChanged | ProductOrdered
    | ProductCancelled | ProductProvisioned | ProductDeprovisioned | Charged | Refunded
    | ToppedUp | BalanceReported | Granted | SigningChanged | NetworkRegistered
    | PortOutRequested | PortOutCancelled | ProfileChanged,
    Field(discriminator="kind"),
]
