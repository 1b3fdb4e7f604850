"""What a worker pushes to the screen service (not a Kafka topic: a pop must not wait for
the worker's transaction, see docs/screen.md).

One :class:`ScreenPush` per answered or ended hotline call, for the agent who took it. The
bundle is the one :func:`agents.screen.bundle.build_bundle` builds (a plain dict).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from schemas.common import Ident, OutboundModel, SubscriberId

#: The pseudo-topic a screen step's pushes are addressed to. The worker's screen adapter
#: takes them out of the step's outputs and sends them over HTTP; they never reach Kafka.
SCREEN_PUSH = "screen-push"


class ScreenPush(OutboundModel):
    kind: Literal["pop", "update", "ended"]
    agent_id: Ident
    call_id: Ident
    subscriber_id: SubscriberId
    #: the Kafka timestamp of the call event (its produce time): pop latency is measured
    #: from here to the page
    event_ts_ms: int = Field(ge=0)
    bundle: dict[str, Any] = Field(default_factory=dict)
