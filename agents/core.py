"""The contract between pure domain logic and the streaming runtime.

A :class:`Processor` is a step with a unique name that turns ``(state, event)`` into
``(state, outputs)`` for one key (a subscriber, a cell, a line). It knows nothing of Kafka:
the runtime decides where state lives (a changelogged table), when it is written (once per
commit, coalesced) and how outputs are delivered (in the same transaction). The same
processor therefore runs unchanged in unit tests, in the per-event reference path, in the
batched worker and in replays.

State is a plain JSON-compatible ``dict`` so it can be changelogged with orjson, inspected
by operators and extended without migrations (missing fields read as defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Output:
    """A record for an output topic. ``key`` decides its partition (fingerprint, subscriber)."""

    topic: str
    key: str
    value: BaseModel


@dataclass(slots=True)
class EventContext:
    """Where an event came from; processors use it for ids and time, never for I/O.

    ``now`` is the processing time of the batch (used only for ``detected_at`` stamps and
    latency metrics); every decision uses the event's own ``event_time``.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    now: datetime


@dataclass(slots=True)
class Result:
    """What one step produced for one event: new state (``None`` deletes) and outputs."""

    state: State | None
    outputs: list[Output] = field(default_factory=list)


class Processor(Protocol):
    """One pure step of a pipeline.

    ``name`` is unique and stable: it names the step's state table and changelog topic and
    labels its metrics. ``topics`` are the input topics it consumes; ``key_of`` picks the
    state key of an event (``None`` skips the event); ``reads`` names other steps whose
    state for the same key this step may read (after they processed the same event).
    """

    name: str
    topics: frozenset[str]
    reads: tuple[str, ...]

    def key_of(self, event: Any) -> str | None: ...

    def apply(
        self, state: State | None, event: Any, ctx: EventContext, reads: Mapping[str, State | None]
    ) -> Result: ...
