"""``subscriber-state``: one fact a source system reports about a subscriber.

Every kind names the ``system`` that reported it, because the point of the topic is that
systems disagree: BSS sells a product, the VAS platform may never provision it, billing may
keep charging after it is cancelled. The audit agent compares these views.

Each kind is reported by the systems that own its fact (:data:`REPORTED_BY`): a charge by
billing, a signing by the HSS, an order by BSS. Any other combination is rejected when the
event is decoded (a dead letter ``invalid`` naming the systems that report it): the unified
view would otherwise file it where no rule reads it, and a report Foresight accepts must
never be silently ignored (``tests/unit/test_state_reports.py`` checks both ways).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic_core import core_schema

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


_LIFECYCLE = ("bss", "hss", "billing", "vas", "pcrf")
_PLATFORMS = ("vas", "pcrf", "hss")
#: Which systems report each kind, and why (the message a producer gets otherwise).
REPORTED_BY: dict[str, tuple[tuple[str, ...], str]] = {
    **{k: (_LIFECYCLE, "a lifecycle is reported by the systems that keep one for the line; "
           "the clearing house (mnp) reports port-outs, network management registrations")
       for k in ("opened", "activated", "suspended", "resumed", "closed")},
    "plan_changed": (("bss",), "plans are sold in BSS; the HSS reports what a plan allows "
                               "as signing_changed"),
    "product_ordered": (("bss",), "orders are taken in BSS; the platform reports "
                                  "product_provisioned"),
    "product_cancelled": (("bss",), "cancellations are taken in BSS; the platform reports "
                                    "product_deprovisioned"),
    "product_provisioned": (_PLATFORMS, "a product is switched on by its platform"),
    "product_deprovisioned": (_PLATFORMS, "a product is switched off by its platform"),
    "charged": (("billing",), "charges are billing's"),
    "refunded": (("billing",), "refunds are billing's"),
    "topped_up": (("billing",), "top-ups are credited by billing"),
    "balance_reported": (("billing",), "the balance is billing's"),
    "granted": (("bss", "billing"), "BSS promises a grant, billing credits it"),
    "signing_changed": (("hss",), "network-type signing lives in the HSS"),
    "network_registered": (("hss", "network"), "the HSS or network management sees a line "
                                               "attach"),
    "port_out_requested": (("mnp", "bss"), "port-outs come from the clearing house (mnp) "
                                           "or BSS"),
    "port_out_cancelled": (("mnp", "bss"), "port-outs come from the clearing house (mnp) "
                                           "or BSS"),
    "profile_changed": (("bss",), "the customer profile is kept in BSS/CRM"),
}


@dataclass(frozen=True, slots=True)
class ReportedBy:
    """``Annotated[SourceSystem, ReportedBy(kind)]``: one of the systems reporting ``kind``.

    A literal of those systems, checked in pydantic-core (as fast as the enum it narrows),
    whose error says which systems report the kind instead of "Input should be 'billing'";
    the JSON Schema lists the same systems for producers in other languages. ``ReportedBy("platform")`` is
    a product's platform: a system that provisions products.
    """

    kind: str

    @property
    def systems(self) -> tuple[str, ...]:
        return _PLATFORMS if self.kind == "platform" else REPORTED_BY[self.kind][0]

    def message(self) -> str:
        systems = " or ".join(self.systems)
        if self.kind == "platform":
            return f"products are provisioned by {systems}: no other platform reports " \
                   "product_provisioned"
        return f"'{self.kind}' is reported by {systems}: {REPORTED_BY[self.kind][1]}"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        # a literal checked in pydantic-core (a Python validator cost ~0.3 us per event),
        # with an error that says which systems report the kind
        return core_schema.custom_error_schema(
            core_schema.literal_schema(list(self.systems)), custom_error_type="reported_by",
            custom_error_message=self.message())

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        systems = ", ".join(self.systems)
        return {"type": "string", "enum": list(self.systems),
                "description": f"a system that provisions products: {systems}"
                if self.kind == "platform" else
                f"reported by {systems}: {REPORTED_BY[self.kind][1]}"}


class _StateEvent(InboundEvent):
    subscriber_id: SubscriberId
    msisdn: Msisdn
    system: SourceSystem


class Opened(_StateEvent):
    """开户: the subscriber exists in ``system`` with a plan."""

    kind: Literal["opened"]
    system: Annotated[SourceSystem, ReportedBy("opened")]
    plan_id: Ident
    plan_networks: list[Rat] = Field(default_factory=list, max_length=4)


class Activated(_StateEvent):
    """激活: the line is usable according to ``system``."""

    kind: Literal["activated"]
    system: Annotated[SourceSystem, ReportedBy("activated")]


class Suspended(_StateEvent):
    """停机 (BSS/billing) or barred (HSS)."""

    kind: Literal["suspended"]
    system: Annotated[SourceSystem, ReportedBy("suspended")]
    reason: SuspendReason


class Resumed(_StateEvent):
    """复机: back to active according to ``system``."""

    kind: Literal["resumed"]
    system: Annotated[SourceSystem, ReportedBy("resumed")]


class Closed(_StateEvent):
    """销户 / 拆机."""

    kind: Literal["closed"]
    system: Annotated[SourceSystem, ReportedBy("closed")]


class PlanChanged(_StateEvent):
    """套餐变更; ``plan_networks`` lists the generations the plan includes."""

    kind: Literal["plan_changed"]
    system: Annotated[SourceSystem, ReportedBy("plan_changed")]
    plan_id: Ident
    plan_networks: list[Rat] = Field(default_factory=list, max_length=4)


class ProductOrdered(_StateEvent):
    """业务订购 in BSS; ``platform`` is the system that must provision it."""

    kind: Literal["product_ordered"]
    system: Annotated[SourceSystem, ReportedBy("product_ordered")]
    product_id: Ident
    platform: Annotated[SourceSystem, ReportedBy("platform")]
    monthly_fee_cents: Cents = 0


class ProductCancelled(_StateEvent):
    """业务退订 in BSS."""

    kind: Literal["product_cancelled"]
    system: Annotated[SourceSystem, ReportedBy("product_cancelled")]
    product_id: Ident
    platform: Annotated[SourceSystem, ReportedBy("platform")]


class ProductProvisioned(_StateEvent):
    """The platform (``system``) switched the product on."""

    kind: Literal["product_provisioned"]
    system: Annotated[SourceSystem, ReportedBy("product_provisioned")]
    product_id: Ident


class ProductDeprovisioned(_StateEvent):
    """The platform (``system``) switched the product off."""

    kind: Literal["product_deprovisioned"]
    system: Annotated[SourceSystem, ReportedBy("product_deprovisioned")]
    product_id: Ident


class Charged(_StateEvent):
    """扣费 by billing. ``item`` is a product id, ``plan`` or ``usage``."""

    kind: Literal["charged"]
    system: Annotated[SourceSystem, ReportedBy("charged")]
    charge_id: Ident
    item: Ident
    amount_cents: Cents
    balance_cents: Cents | None = None


class Refunded(_StateEvent):
    """退费 of an earlier charge."""

    kind: Literal["refunded"]
    system: Annotated[SourceSystem, ReportedBy("refunded")]
    charge_id: Ident
    amount_cents: Cents
    balance_cents: Cents | None = None


class ToppedUp(_StateEvent):
    """充值 credited by billing."""

    kind: Literal["topped_up"]
    system: Annotated[SourceSystem, ReportedBy("topped_up")]
    amount_cents: Cents
    balance_cents: Cents
    channel: Ident = "unknown"


class BalanceReported(_StateEvent):
    """Billing's periodic view of balance and arrears (欠费)."""

    kind: Literal["balance_reported"]
    system: Annotated[SourceSystem, ReportedBy("balance_reported")]
    balance_cents: Cents
    arrears_cents: Cents = 0


class Granted(_StateEvent):
    """赠送: promised (BSS) or credited (billing), matched by ``grant_id``."""

    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"stage": {"const": "promised"}}},
        "then": {"properties": {"system": {"const": "bss"}}},
        "else": {"properties": {"system": {"const": "billing"}}},
    })
    kind: Literal["granted"]
    system: Annotated[SourceSystem, ReportedBy("granted")]
    grant_id: Ident
    stage: GrantStage
    amount_cents: Cents = 0
    due_by: AwareDatetime | None = None

    @model_validator(mode="after")
    def _stage_matches_system(self) -> Granted:
        expected = "bss" if self.stage == GrantStage.PROMISED else "billing"
        if self.system != expected:
            raise ValueError(f"a '{self.stage}' grant is reported by {expected}, not "
                             f"'{self.system}': BSS promises a grant, billing credits it")
        return self


class SigningChanged(_StateEvent):
    """网别签约 in HSS: the generations the subscriber is signed for."""

    kind: Literal["signing_changed"]
    system: Annotated[SourceSystem, ReportedBy("signing_changed")]
    networks: list[Rat] = Field(max_length=4)


class NetworkRegistered(_StateEvent):
    """The subscriber attached to the network (first registration after activation)."""

    kind: Literal["network_registered"]
    system: Annotated[SourceSystem, ReportedBy("network_registered")]
    rat: Rat
    cell_id: CellId | None = None


class PortOutRequested(_StateEvent):
    """携号转网 out: services must end by ``deadline``."""

    kind: Literal["port_out_requested"]
    system: Annotated[SourceSystem, ReportedBy("port_out_requested")]
    deadline: AwareDatetime
    recipient: Ident = "unknown"


class PortOutCancelled(_StateEvent):
    kind: Literal["port_out_cancelled"]
    system: Annotated[SourceSystem, ReportedBy("port_out_cancelled")]


class ProfileChanged(_StateEvent):
    """Customer profile: only the fields that changed are set."""

    kind: Literal["profile_changed"]
    system: Annotated[SourceSystem, ReportedBy("profile_changed")]
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
