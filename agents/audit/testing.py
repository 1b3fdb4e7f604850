"""A test kit: the unified view and the audit driven like the runtime drives them, no broker.

:class:`AuditHarness` folds each event into the view, fires a subscriber's due timer just
before its next event, and fires every timer the event-time clock has passed, exactly as
:class:`streams.unit.BatchUnit` does, so a rule test is a list of events and assertions.

>>> h = AuditHarness()
>>> base = {"schema_version": 1, "subscriber_id": "S00000001", "msisdn": "8613800001234"}
>>> def ev(kind, system, t, **kw):
...     return {**base, "event_id": f"e{t}", "kind": kind, "system": system,
...             "event_time": f"2026-11-26T01:{t:02d}:00Z", **kw}
>>> h.send(ev("activated", "bss", 0)); h.send(ev("activated", "hss", 0))
>>> h.send(ev("suspended", "hss", 1, reason="fraud"))
>>> h.advance_to("2026-11-26T01:06:01Z")  # decisions wait for the watermark: clock - 2 s
>>> h.alerts()
[]
>>> h.advance_to("2026-11-26T01:06:02Z")
>>> [(a.rule_id, a.status, a.starts_at.isoformat()) for a in h.alerts()]
[('bss-active-hss-barred', 'firing', '2026-11-26T01:01:00+00:00')]
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from agents.audit.catalog import Catalog
from agents.audit.step import Audit
from agents.core import EventContext, Output, Result, State
from agents.unified_view import UnifiedView, ms
from schemas.outputs import AgentHint, Alert
from schemas.registry import SUBSCRIBER_STATE, decode

DETECTED = datetime(2030, 1, 1, tzinfo=UTC)
#: the worker's default allowed lateness (``FORESIGHT_TIMER_LATENESS_MS``): tests judge
#: rules the way production runs them
DEFAULT_LATENESS_MS = 2_000


class AuditHarness:
    """Feeds ``subscriber-state`` events (dicts or decoded models) through view and audit."""

    def __init__(self, catalog: Catalog | None = None, audit: Audit | None = None, *,
                 lateness_ms: int = DEFAULT_LATENESS_MS) -> None:
        self.lateness = lateness_ms
        self.view_step = UnifiedView()
        self.audit = audit if audit is not None else Audit(catalog)
        self.views: dict[str, State] = {}
        self.states: dict[str, State | None] = {}
        self.wakes: dict[str, int] = {}
        self.outputs: list[Output] = []
        self.writes = 0
        self.clock = 0
        self.ctx = EventContext(SUBSCRIBER_STATE, 0, 0, 0, DETECTED, 0, 0, lateness_ms)

    def send(self, event: Any) -> None:
        """Apply one event (a dict is validated against the topic's schema first)."""
        if isinstance(event, dict):
            event = decode(SUBSCRIBER_STATE, orjson.dumps(event))
        sid = event.subscriber_id
        t = ms(event.event_time)
        self.clock = max(self.clock, t)
        ctx = EventContext(SUBSCRIBER_STATE, 0, 0, 0, DETECTED, t, self.clock, self.lateness)
        self.views[sid] = self.view_step.apply(self.views.get(sid), event, ctx, {}).state  # type: ignore[assignment]
        due = self.wakes.get(sid)
        if due is not None and due <= self.clock - self.lateness:
            self._timer(sid, due)
        self._take(sid, self.audit.apply(self.states.get(sid), event, ctx, self._reads(sid)))
        self._fire_due()

    def advance_to(self, when: str | int) -> None:
        """Let event time pass (as another subscriber's events or the idle clock would)."""
        t = when if isinstance(when, int) else ms(datetime.fromisoformat(when))
        self.clock = max(self.clock, t)
        self._fire_due()

    def alerts(self, rule: str | None = None) -> list[Alert]:
        return [o.value for o in self.outputs if isinstance(o.value, Alert)
                and (rule is None or o.value.rule_id == rule)]  # type: ignore[misc]

    def hints(self, rule: str | None = None) -> list[AgentHint]:
        return [o.value for o in self.outputs if isinstance(o.value, AgentHint)  # type: ignore[misc]
                and (rule is None or o.value.source == f"audit:{rule}")]

    def _reads(self, sid: str) -> dict[str, State | None]:
        return {UnifiedView.name: self.views.get(sid)}

    def _fire_due(self) -> None:
        while self.wakes:
            sid, due = min(self.wakes.items(), key=lambda kv: (kv[1], kv[0]))
            if due > self.clock - self.lateness:
                return
            self._timer(sid, due)

    def _timer(self, sid: str, due: int) -> None:
        del self.wakes[sid]
        ctx = EventContext("", 0, -1, due, DETECTED, due, self.clock, self.lateness)
        self._take(sid, self.audit.on_timer(self.states.get(sid), sid, due, ctx,
                                            self._reads(sid)), fired=due)

    def _take(self, sid: str, res: Result, fired: int | None = None) -> None:
        if res.changed:
            self.states[sid] = res.state
            self.writes += 1
        self.outputs.extend(res.outputs)
        wake = res.wake_at_ms
        if wake is not None and fired is not None and wake <= fired:
            wake = fired + 1
        if wake is None:
            self.wakes.pop(sid, None)
        else:
            self.wakes[sid] = wake
