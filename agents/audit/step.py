"""The cross-system audit step (seed 001 "稽核预处理"): rules over the unified view.

On every ``subscriber-state`` event the step evaluates the rules that event can affect
(each rule knows which event kinds and systems can change its outcome) plus the rules
with an open episode for the subscriber, and moves episodes through their lifecycle:

* condition becomes true -> **pending** from ``since`` with ``due = since + for``; a
  pending episode whose condition clears is dropped silently (a benign lag between
  systems);
* ``due`` reached (a timer, or a later event of the subscriber) -> **firing**: one alert
  for technicians and/or one service reminder for agents, sequence 1;
* the condition held long enough to escalate -> an update, sequence + 1;
* condition clears -> **resolved**, sequence + 1, and the episode leaves the state.

Time is event time: "now" is the event's ``event_time`` in :meth:`Audit.apply` and the
partition clock in :meth:`Audit.on_timer`; an episode fires at its ``due`` instant however
late the event that revealed it, so out-of-order and redelivered events give the same
records. The wall clock (``ctx.now``) only stamps ``detected_at``. A subscriber with no
open episode has no state (``None``) and an event that changes nothing writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agents.audit.catalog import Catalog, Rule, load_catalog
from agents.audit.episodes import Emitter, episode_key, split_key
from agents.audit.facts import ALL_KINDS, SYSTEMS, Env
from agents.audit.items import ITEM_KINDS
from agents.audit.templates import capture
from agents.core import EventContext, Output, Result, State
from agents.unified_view import UnifiedView, ms
from schemas.registry import SUBSCRIBER_STATE

VIEW = UnifiedView.name
#: rule, item attribute (or None), its test, its ``each`` (or None), the episode key of a
#: whole-subscriber rule: what :func:`_evaluate` needs, looked up once at load
Plan = tuple[tuple[Rule, str | None, Any, str | None, str], ...]
Verdict = tuple[Rule, str, Any, bool]


def build_plan(rules: tuple[Rule, ...]) -> dict[tuple[str, str], Plan]:
    """``(event kind, system) -> ((rule, item attribute or None, ...), ...)``.

    The attribute (``product_id``, ``charge_id``, ``grant_id``) is set when the event only
    changes the one item it names for that rule; ``None`` means evaluate the whole rule.
    """
    plan: dict[tuple[str, str], Plan] = {}
    for kind in ALL_KINDS:
        for system in SYSTEMS:
            entries = []
            for rule in rules:
                deps = rule.test.deps
                if (kind, system) in deps or (kind, None) in deps:
                    attr = None
                elif rule.each and kind in rule.test.item_kinds:
                    attr = ITEM_KINDS[rule.each].event_attr
                else:
                    continue
                entries.append((rule, attr, rule.test.fn, rule.each, episode_key(rule.id, "")))
            if entries:
                plan[(kind, system)] = tuple(entries)
    return plan


#: The answer to most events: no episode, nothing written (shared; the runtime only reads it).
_NOTHING = Result(None, changed=False)


class Audit:
    """Pipeline step ``audit``: reads ``unified-view``, writes ``alerts`` and ``agent-hints``."""

    name = "audit"
    topics = frozenset({SUBSCRIBER_STATE})
    reads: tuple[str, ...] = (VIEW,)

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog if catalog is not None else load_catalog()
        self.emitter = Emitter(self.catalog)
        self.plan = build_plan(self.catalog.rules)

    def key_of(self, event: Any) -> str | None:
        return event.subscriber_id

    def apply(self, state: State | None, event: Any, ctx: EventContext,
              reads: Mapping[str, State | None]) -> Result:
        plan = self.plan.get((event.kind, event.system), ())
        if state is None and not plan:
            return _NOTHING
        view = reads.get(VIEW)
        episodes: dict[str, Any] | None = state["episodes"] if state else None
        if view is None:
            return Result(state, changed=False, wake_at_ms=self._wake(episodes))
        env = Env(view)
        verdicts = _evaluate(plan, event, env, episodes)
        if episodes is None:
            if not verdicts:
                return _NOTHING
            episodes = {}
        now = ctx.event_ms or ms(event.event_time)
        run = _Run(self, event.subscriber_id, episodes, ctx.now)
        if episodes:
            run.fire_due(now)
            # An open episode whose rule this event's plan does not name cannot have changed
            # (the plan holds every rule the event's kind and system can affect, and for
            # 'each' rules the one item the event names): only rules gone from the catalog
            # need attention.
            catalog = self.catalog
            for key in list(episodes):
                if catalog.get(split_key(key)[0]) is None:
                    run.retire(key)
        for rule, item, raw, cond in verdicts:
            run.judge(rule, item, raw, cond, now, env)
        return run.result(state)

    def on_timer(self, state: State | None, key: str, now_ms: int, ctx: EventContext,
                 reads: Mapping[str, State | None]) -> Result:
        if not state:
            return _NOTHING
        run = _Run(self, key, state["episodes"], ctx.now)
        run.fire_due(now_ms)
        return run.result(state)

    def _wake(self, episodes: Mapping[str, Any] | None) -> int | None:
        """The earliest pending ``due`` or escalation instant (None: nothing to wait for)."""
        wake = None
        for key, ep in (episodes or {}).items():
            if "fired_at" not in ep:
                t = ep["due"]
            else:
                rule = self.catalog.get(split_key(key)[0])
                if rule is None or ep["step"] >= len(rule.escalate):
                    continue
                t = ep["since"] + rule.escalate[ep["step"]][0]
            if wake is None or t < wake:
                wake = t
        return wake


def _evaluate(plan: Plan, event: Any, env: Env, episodes: Mapping[str, Any] | None
              ) -> list[Verdict]:
    """Verdicts of the planned rules: every true one, and false ones with an open episode."""
    out: list[Verdict] = []
    found: dict[str, Any] = {}   # each kind -> the event's item (looked up once)
    for rule, attr, fn, each, whole_key in plan:
        if each is None:
            if fn(env):
                out.append((rule, "", None, True))
            elif episodes and whole_key in episodes:
                out.append((rule, "", None, False))
            continue
        if attr is None:
            items: Any = ITEM_KINDS[each].items(env.view)
        else:
            items = found.get(each)
            if items is None:
                item_id = getattr(event, attr, None)
                raw = ITEM_KINDS[each].find(env.view, item_id) if item_id is not None else None
                items = found[each] = ((item_id, raw),) if raw is not None else ()
        for item_id, raw in items:
            env.item, env.item_id = raw, item_id
            if fn(env):
                out.append((rule, item_id, raw, True))
            elif episodes and episode_key(rule.id, item_id) in episodes:
                out.append((rule, item_id, raw, False))
    return out


class _Run:
    """The lifecycle changes of one subscriber for one event or timer."""

    def __init__(self, step: Audit, sid: str, episodes: dict[str, Any], now: datetime) -> None:
        self.step = step
        self.catalog = step.catalog
        self.sid = sid
        self.episodes = episodes
        self.now = now
        self.outputs: list[Output] = []
        self.changed = False

    def result(self, state: State | None) -> Result:
        wake = self.step._wake(self.episodes)
        if not self.changed:
            return Result(state, changed=False, wake_at_ms=wake)
        if not self.episodes:
            return Result(None, self.outputs, None, changed=state is not None)
        if state is None:
            state = {"episodes": self.episodes}
        return Result(state, self.outputs, wake)

    def fire_due(self, t: int) -> None:
        """Fire pending episodes due by ``t`` and apply escalations reached by ``t``."""
        todo: list[tuple[int, str]] = []
        for key, ep in self.episodes.items():
            if "fired_at" not in ep:
                if ep["due"] <= t:
                    todo.append((ep["due"], key))
            else:
                rule = self.catalog.get(split_key(key)[0])
                if rule is not None and ep["step"] < len(rule.escalate) \
                        and ep["since"] + rule.escalate[ep["step"]][0] <= t:
                    todo.append((ep["since"] + rule.escalate[ep["step"]][0], key))
        for _, key in sorted(todo):
            ep = self.episodes[key]
            rule = self.catalog.get(split_key(key)[0])
            if "fired_at" not in ep:
                self._fire(key, rule, ep)
            if key in self.episodes:
                self._escalate(key, rule, ep, t)

    def judge(self, rule: Rule, item: str, raw: Any, cond: bool, now: int, env: Env) -> None:
        key = episode_key(rule.id, item)
        ep = self.episodes.get(key)
        if cond:
            if ep is None:
                self._open(key, rule, item, raw, now, env)
            return
        if ep is None:
            return
        del self.episodes[key]
        self.changed = True
        if "fired_at" in ep:
            ended = max(now, ep["since"])
            ep["sequence"] += 1
            self.outputs += self.step.emitter.emit(rule, rule.id, self.sid, item, ep, ended,
                                                   self.now, ended=ended)

    def retire(self, key: str) -> None:
        """An episode of a rule no longer in the catalog: resolve it if it fired, drop it."""
        ep = self.episodes.pop(key)
        self.changed = True
        if "fired_at" in ep:
            rule_id, item = split_key(key)
            ep["sequence"] += 1
            t = max(ep["fired_at"], ep["since"])
            self.outputs += self.step.emitter.emit(None, rule_id, self.sid, item, ep, t,
                                                   self.now, ended=t)

    def _open(self, key: str, rule: Rule, item: str, raw: Any, now: int, env: Env) -> None:
        env.item, env.item_id = raw, item
        env.explain = notes = {}
        try:
            rule.test.fn(env)
            since = rule.since.fn(env) if rule.since is not None else None
        finally:
            env.explain = None
        if rule.since is None:
            times = [t for _, t in notes.values() if t is not None]
            since = max(times) if times else now
        elif not isinstance(since, int) or isinstance(since, bool):
            return  # an explicit 'since' that is null (e.g. no due date): not an episode yet
        cat = self.catalog
        ep = {"since": since, "due": since + rule.for_ms,
              "vars": capture(env.view, rule.each, item, rule.capture, cat.names, cat.offset_min),
              "evidence": {k: text for k, (text, _) in sorted(notes.items())}}
        self.episodes[key] = ep
        self.changed = True
        if ep["due"] <= now:
            self._fire(key, rule, ep)
            self._escalate(key, rule, ep, now)

    def _fire(self, key: str, rule: Rule | None, ep: dict[str, Any]) -> None:
        """Pending -> firing at its ``due`` instant (whenever we learn of it)."""
        if rule is None:
            self.retire(key)
            return
        at = ep.pop("due")
        held = at - ep["since"]
        step = sum(1 for after, _ in rule.escalate if held >= after)
        ep.update(fired_at=at, severity=rule.escalate[step - 1][1] if step else rule.severity,
                  step=step, sequence=1,
                  notify=[n for n, on in (("technician", rule.technician),
                                          ("agent", rule.agent)) if on])
        self.changed = True
        self.outputs += self.step.emitter.emit(rule, rule.id, self.sid, split_key(key)[1], ep,
                                               at, self.now)

    def _escalate(self, key: str, rule: Rule | None, ep: dict[str, Any], t: int) -> None:
        if rule is None or ep["step"] >= len(rule.escalate):
            return
        step = ep["step"]
        while step < len(rule.escalate) and ep["since"] + rule.escalate[step][0] <= t:
            step += 1
        if step == ep["step"]:
            return
        ep["step"] = step
        self.changed = True
        after, severity = rule.escalate[step - 1]
        if severity == ep["severity"]:
            return
        ep["severity"] = severity
        ep["sequence"] += 1
        self.outputs += self.step.emitter.emit(rule, rule.id, self.sid, split_key(key)[1], ep,
                                               ep["since"] + after, self.now, hint=False)
