"""``call-events``: network call records and contact-center call legs, keyed by subscriber.

Both matter for prediction: dropped calls and calls to the regulator (12300) precede
complaints; a call leg reaching the hotline is the moment an agent's screen must pop.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from schemas.common import (
    CellId,
    DialledNumber,
    Ident,
    InboundEvent,
    Msisdn,
    SubscriberId,
)


class CallResult(StrEnum):
    ANSWERED = "answered"
    DROPPED = "dropped"      # 掉话
    FAILED = "failed"        # 未接通 (network failure)
    BUSY = "busy"
    NO_ANSWER = "no_answer"


class Direction(StrEnum):
    MO = "mo"    # originated by the subscriber
    MT = "mt"    # terminated at the subscriber


class CallRat(StrEnum):
    G2 = "2g"
    G3 = "3g"
    VOLTE = "volte"
    VONR = "vonr"


class HotlineStage(StrEnum):
    INCOMING = "incoming"    # the call reached the contact center (IVR)
    QUEUED = "queued"        # waiting for a human agent
    ANSWERED = "answered"    # agent ``agent_id`` took it: pop the screen now
    ENDED = "ended"


class _CallEvent(InboundEvent):
    subscriber_id: SubscriberId
    msisdn: Msisdn
    call_id: Ident


class NetworkCall(_CallEvent):
    """A voice call record (CDR) from the network."""

    kind: Literal["network_call"]
    peer_number: DialledNumber
    direction: Direction
    duration_s: int = Field(ge=0, le=86_400)
    result: CallResult
    cell_id: CellId
    rat: CallRat


class HotlineCall(_CallEvent):
    """One leg of a call to the operator's hotline (10010, 10086, 10000...)."""

    kind: Literal["hotline_call"]
    stage: HotlineStage
    hotline: DialledNumber = "10010"
    queue: Ident | None = None
    agent_id: Ident | None = None


CallEvent = Annotated[NetworkCall | HotlineCall, Field(discriminator="kind")]
