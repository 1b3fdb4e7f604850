"""Everything Foresight writes. Each record has a stable id so redelivery never duplicates
what a person sees: consumers keep the latest record per id (and per ``sequence``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import (
    SCHEMA_VERSION,
    CellId,
    Code,
    Ident,
    LineId,
    OutboundModel,
    SchemaVersion,
    SubscriberId,
    Text,
)

Fingerprint = str


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(OutboundModel):
    """A technician alert, shaped like an Alertmanager alert. Keyed by ``fingerprint``.

    One episode (a rule holding for one subscriber) keeps its fingerprint from firing to
    resolved; ``sequence`` grows with every update so the latest wins.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    kind: Literal["alert"] = "alert"
    fingerprint: Fingerprint = Field(pattern=r"^[0-9a-f]{16}$")
    sequence: int = Field(ge=1)
    status: AlertStatus
    rule_id: Ident
    severity: AlertSeverity
    subscriber_id: SubscriberId | None = None
    msisdn_masked: str | None = None
    systems: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    detected_at: AwareDatetime
    evidence: dict[str, str] = Field(default_factory=dict)
    #: Event time at which this update was decided: the partition's event-time clock when
    #: the watermark passed the decision instant. ``decided_at - starts_at`` of the first
    #: update is the time to detect (grace period + watermark wait), meaningful for replays
    #: and simulations too, unlike ``detected_at`` (wall clock). Optional: absent from
    #: alerts written before it existed.
    decided_at: AwareDatetime | None = None


class HintKind(StrEnum):
    """What a hint is, so an agent's screen can group and word it."""

    SERVICE_REMINDER = "service_reminder"    # 用户服务提醒: what the customer should do (top up)
    KNOWN_FAULT = "known_fault"              # a fault technicians are fixing: tell the customer
    RISK = "risk"                            # complaint / churn risk with reasons
    RETENTION_TASK = "retention_task"        # 来话同步维系
    OFFER = "offer"
    COMPLAINT_HISTORY = "complaint_history"
    ONLINE_CONTACT = "online_contact"        # 渠道协同


class AgentHint(OutboundModel):
    """Screen-pop material for the contact-center agent. Keyed by subscriber id.

    Phone numbers in hints are masked; the agent on the call sees full data through the
    screen-pop service, which looks them up for that agent only. Every hint says until when
    it is worth showing (``expires_at``, required since schema version 2): a screen never
    has to guess whether a hint from last month still holds. The texts (``title``,
    ``cause``, ``script``, ``progress``) are for the agent and the customer, in their
    language; ``active: false`` with a ``progress`` saying it was fixed closes a hint.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    hint_id: Fingerprint = Field(pattern=r"^[0-9a-f]{16}$")
    sequence: int = Field(ge=1)
    subscriber_id: SubscriberId
    msisdn_masked: str
    kind: HintKind
    active: bool = True
    title: Text
    cause: Text = ""
    script: Text = ""
    progress: Text = ""
    source: Ident
    created_at: AwareDatetime
    expires_at: AwareDatetime


class WorkOrder(OutboundModel):
    """A prioritised network or broadband work order with its SLA deadline."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    work_order_id: Fingerprint = Field(pattern=r"^[0-9a-f]{16}$")
    sequence: int = Field(ge=1)
    target_kind: Literal["cell", "line"]
    cell_id: CellId | None = None
    line_id: LineId | None = None
    problem: Code
    tier: Literal["p1", "p2", "p3", "p4"]
    score: float
    seed_users_affected: int = Field(ge=0)
    key_users_affected: int = Field(ge=0)
    sla_deadline: AwareDatetime
    status: Literal["open", "updated", "closed"]
    created_at: AwareDatetime
    reason: Text = ""


class Decision(StrEnum):
    ALLOW = "allow"
    SUPPRESS = "suppress"


class ShadowDecision(OutboundModel):
    """What a policy running in shadow (dry run) would have decided for the same request."""

    decision: Decision
    reasons: list[Code] = Field(default_factory=list)
    policy_version: Ident
    allowed_after: AwareDatetime | None = None
    agrees: bool


class ContactDecision(OutboundModel):
    """Allow or suppress one contact request, with every reason code that applied.

    One record per ``request_id`` (a redelivered request is not decided again). ``reasons``
    lists every suppressing reason, most important first (the policy's precedence);
    ``exempted`` the reasons that would have applied but an exemption lifted (a high-star
    seed user through the account manager). ``allowed_after``: when suppressed, the earliest
    time the request would be allowed, where the policy can know it (frequency caps, quiet
    hours); null otherwise. ``shadow``: the dry-run policy's decision, when one runs.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    request_id: Ident
    subscriber_id: SubscriberId
    decision: Decision
    reasons: list[Code] = Field(default_factory=list)
    channel: Ident
    policy_version: Ident
    decided_at: AwareDatetime
    purpose: Ident | None = None
    campaign_id: Ident | None = None
    exempted: list[Code] = Field(default_factory=list)
    allowed_after: AwareDatetime | None = None
    shadow: ShadowDecision | None = None


class CareEntry(OutboundModel):
    """A subscriber to reach proactively (IVR or human), with why."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    care_id: Fingerprint = Field(pattern=r"^[0-9a-f]{16}$")
    subscriber_id: SubscriberId
    msisdn_masked: str
    status: Literal["added", "removed"]
    score: float = Field(ge=0.0, le=1.0)
    model: Ident
    reasons: list[Text] = Field(default_factory=list)
    channel: Literal["ivr", "human"]
    decided_at: AwareDatetime
    #: the model version that made the score (Foresee: ``complaint@v000001200``)
    model_version: str | None = None


class DeadLetterReason(StrEnum):
    NOT_JSON = "not_json"
    INVALID = "invalid"            # JSON, but does not match the topic's schema
    OVERSIZE = "oversize"
    EMPTY = "empty"
    PROCESSING_ERROR = "processing_error"   # valid input a step failed on (a bug): kept to replay
    MISSING_KEY = "missing_key"    # no Kafka key: the record's partition says nothing of its owner
    KEY_MISMATCH = "key_mismatch"  # keyed by another subscriber/cell/line than its payload names
    EVENT_TIME_OUT_OF_BOUNDS = "event_time_out_of_bounds"  # too far in the future, or before the floor
    DELIVERY_FAILED = "delivery_failed"  # a sink's destination rejected an output for good (4xx)


class DeadLetter(OutboundModel):
    """An input that could not be parsed or validated, kept so it can be inspected and replayed.

    The copy is whole up to the worker's event size limit. A larger (oversize) record would
    not fit in a dead letter under Kafka's message size limit, so its copy is truncated to
    its first bytes (``value_truncated``); its size, its SHA-256 and its source position
    (topic, partition, offset: the full bytes stay there for the topic's retention) identify
    it. Keys longer than 1 KiB are truncated the same way (``key_truncated``).
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    source_timestamp_ms: int | None = None
    key_b64: str | None = None
    key_truncated: bool = False
    value_b64: str
    value_bytes: int = Field(ge=0)
    value_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    value_truncated: bool = False
    reason: DeadLetterReason
    error: Text
    worker: Ident
    detected_at: AwareDatetime
