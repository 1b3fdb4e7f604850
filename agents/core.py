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
    latency metrics); every decision uses the event's own ``event_time``, which the
    runtime converts once into ``event_ms`` (epoch ms; for a timer, the instant it was set
    for) so steps need not each convert it again.

    ``clock_ms`` is the partition's event-time clock once this event was seen (the highest
    event time, 0 when the step's topics move no clock) and ``lateness_ms`` how far behind
    it the runtime's watermark runs: a timer fires once ``clock_ms - lateness_ms`` reaches
    it. Steps that decide at the watermark (the audit) read both.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    now: datetime
    event_ms: int = 0
    clock_ms: int = 0
    lateness_ms: int = 0


@dataclass(slots=True)
class Result:
    """What one step produced for one event or timer.

    ``state`` replaces the key's state (``None`` deletes it). ``wake_at_ms`` asks the
    runtime to call the step's ``on_timer`` for this key once the partition's event time
    reaches that instant (epoch ms); it replaces any earlier request of the same step for
    the same key, ``None`` cancels it. Timers are changelogged with the state, so a grace
    period that started before a crash still ends on time after the restart.
    """

    state: State | None
    outputs: list[Output] = field(default_factory=list)
    wake_at_ms: int | None = None
    #: False when ``state`` is unchanged: the runtime then writes nothing (no changelog
    #: record), which matters for steps that look at every event but rarely change.
    changed: bool = True


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


class TimedProcessor(Processor, Protocol):
    """A step that also acts when time passes without events (grace periods, deadlines).

    ``on_timer`` is called for ``key`` once the partition's event-time clock ``now_ms``
    reaches the instant the step asked for (``Result.wake_at_ms``). The clock is the
    highest event time seen on the partition; in production it also follows the wall clock
    (minus the allowed lateness) so that an idle partition's deadlines still fire.
    """

    def on_timer(
        self, state: State | None, key: str, now_ms: int, ctx: EventContext,
        reads: Mapping[str, State | None],
    ) -> Result: ...
