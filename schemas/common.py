"""Shared building blocks of every topic's contract: ids, phone numbers, time, base models.

Inbound models (what operators' systems produce) ignore unknown fields so a producer can add
fields before Foresight learns them; outbound models forbid them so Foresight never emits
something its own schema does not describe. Inbound models are strict: ``"12"`` is not an int and a
timestamp without a zone is rejected, because silently guessing a zone shifts every grace
period by hours. Enum fields are validated against their enum but stored as plain strings
(``use_enum_values``): domain code compares them with literals on the hot path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

#: Version of the wire contract this code writes; readers accept any version >= 1 whose
#: fields validate (forward compatible), so producers can upgrade first.
#:
#: * 3: ``contact-outcomes`` retention, offer and contact-result records may carry the
#:   ``call_id`` and ``agent_id`` of the hotline call they were recorded on (screen pop), and
#:   a contact result may be ``confirmed`` / ``dismissed`` (a reminder on an agent's screen).
#: * 2: ``agent-hints`` records always carry ``expires_at`` and may be of kind
#:   ``known_fault``; a ``subscriber-state`` event must come from a system that reports its
#:   kind (``charged`` from billing, ``signing_changed`` from the HSS...: see
#:   :data:`schemas.subscriber_state.REPORTED_BY`), so no valid report is ignored.
#: * 1: the first contract.
SCHEMA_VERSION = 3

SubscriberId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,39}$"),
]
"""The operator's subscriber (user) id in BSS: 3-40 characters of letters, digits, ``_.-``."""

Msisdn = Annotated[str, StringConstraints(pattern=r"^\+?[1-9][0-9]{5,14}$")]
"""A subscriber's phone number, E.164 digits with an optional ``+`` (6-15 digits)."""

DialledNumber = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{3,20}$")]
"""Any dialled number, including short service numbers such as 10010 or 12300."""

CellId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9:_.-]{2,39}$")]
LineId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9:_.-]{2,39}$")]
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9:_.@/-]{0,63}$")]
"""Generic id of an event, product, plan, charge, agent, campaign... (1-64 characters)."""

Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+){0,5}$")]
"""A dotted taxonomy code, e.g. ``network.coverage.indoor`` (up to six levels)."""

Text = Annotated[str, StringConstraints(max_length=2000)]
Cents = Annotated[int, Field(ge=-10**12, le=10**12)]
"""Money in the smallest currency unit (fen); never floats for money."""
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
SchemaVersion = Annotated[int, Field(ge=1)]


class SourceSystem(StrEnum):
    """Which operator system reported a fact. Cross-system audit compares these views."""

    BSS = "bss"          # business support / CRM: orders, plans, lifecycle as sold
    HSS = "hss"          # HSS/HLR: what the network will let the subscriber do
    BILLING = "billing"  # billing / OCS: balance, charges, top-ups, credits
    VAS = "vas"          # value-added service platforms: provisioning of VAS products
    PCRF = "pcrf"        # policy control: data packages and speed profiles
    MNP = "mnp"          # number portability clearing house
    NETWORK = "network"  # network management / OSS


class Rat(StrEnum):
    """Radio access technology (or the network generation a subscriber is signed for)."""

    G2 = "2g"
    G3 = "3g"
    G4 = "4g"
    G5 = "5g"


class InboundModel(BaseModel):
    """Base of everything Foresight reads: strict, immutable, unknown fields ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", use_enum_values=True)


class OutboundModel(BaseModel):
    """Base of everything Foresight writes: immutable, unknown fields forbidden.

    Not strict, so code can build them from enum values as plain strings; inputs are where
    strictness protects Foresight.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True)


class InboundEvent(InboundModel):
    """Fields every input event carries: its id, its version and when it happened."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    event_id: Ident
    event_time: AwareDatetime


def mask_msisdn(msisdn: str) -> str:
    """Hide a phone number but its last four digits: it is personal data.

    >>> mask_msisdn("+8613812345678")
    '*********5678'
    >>> mask_msisdn("123")
    '***'
    """
    digits = msisdn.lstrip("+")
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_name(name: str) -> str:
    """Keep only the first character of a person's name.

    >>> mask_name("张三丰")
    '张**'
    """
    return name[:1] + "*" * max(len(name) - 1, 0)
