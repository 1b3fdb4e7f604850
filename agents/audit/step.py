"""The cross-system audit step (seed 001 "稽核预处理"): rules over the unified view.

On every ``subscriber-state`` event the step evaluates the rules that event can affect
(each rule knows which event kinds and systems can change its outcome) and records what
it saw; **every decision a person hears of is taken at the event-time watermark**, the
partition's clock (highest event time) minus the allowed lateness:

* condition becomes true -> **pending** from ``since``, ``due = since + for``; a pending
  episode whose condition clears before the watermark passes ``due`` is dropped silently
  (a benign lag between systems, a charge refunded at the same instant);
* the watermark passes ``due`` and the condition still holds -> **firing**: one alert for
  technicians, sequence 1;
* the watermark passes ``since + max(for, settle)`` -> the agent hint (what is read to a
  customer) goes out, so a hint is never withdrawn within its settle time;
* the watermark passes ``since + after`` of an escalation -> an update, sequence + 1;
* condition clears at event time ``t`` -> the episode waits for the watermark to pass
  ``t`` (a report within the lateness may restore the condition: then nothing happened),
  then **resolved**, sequence + 1, and the episode leaves the state.

Every report that arrives within the allowed lateness is therefore judged in event-time
order whatever its delivery order, and reports at the same instant are order-independent.
The cost is latency: a decision comes about one lateness after its instant. Lateness is
the worker's ``FORESIGHT_TIMER_LATENESS_MS`` unless a rule sets its own ``lateness``; the
settle time defaults to the rule's lateness. The runtime passes its clock and lateness in
the :class:`~agents.core.EventContext`; the step asks for a timer at each next decision
instant. The wall clock (``ctx.now``) only stamps ``detected_at``.

A subscriber with no open episode has no state (``None``) and an event that changes nothing
writes nothing. An ``each`` episode whose item left the unified view (a charge pushed out
of its last-charges window) cannot be judged any more: it is closed as ``expired`` so state
stays bounded (docs/audit.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.audit.catalog import Catalog, Rule, load_catalog
from agents.audit.episodes import Emitter, episode_key, split_key
from agents.audit.facts import ALL_KINDS, SYSTEMS, Env
from agents.audit.items import ITEM_KINDS
from agents.audit.templates import capture
from agents.core import EventContext, Output, Result, State
from agents.unified_view import UnifiedView, ms
from schemas.outputs import Alert
from schemas.registry import AGENT_HINTS, SUBSCRIBER_STATE

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
EXPIRED_NOTE = ("no longer judged: {item} left the unified view (it keeps the last charges "
                "only); check it by hand")


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
        run = _Run(self, event.subscriber_id, episodes or {}, ctx)
        if view is None:
            return Result(state, changed=False, wake_at_ms=run.wake())
        env = Env(view)
        verdicts = _evaluate(plan, event, env, episodes)
        if episodes is None and not verdicts:
            return _NOTHING
        now = ctx.event_ms or ms(event.event_time)
        if episodes:
            # An open episode whose rule this event's plan does not name cannot have changed
            # (the plan holds every rule the event's kind and system can affect, and for
            # 'each' rules the one item the event names): only rules gone from the catalog
            # and items gone from the view need attention.
            catalog = self.catalog
            for key in list(episodes):
                rule = catalog.get(split_key(key)[0])
                if rule is None:
                    run.retire(key)
                elif rule.each is not None and event.kind in ITEM_KINDS[rule.each].kinds \
                        and ITEM_KINDS[rule.each].find(view, split_key(key)[1]) is None:
                    run.expire(key, rule, now)
        for rule, item, raw, cond in verdicts:
            run.judge(rule, item, raw, cond, now, env)
        return run.result(state)

    def on_timer(self, state: State | None, key: str, now_ms: int, ctx: EventContext,
                 reads: Mapping[str, State | None]) -> Result:
        if not state:
            return _NOTHING
        run = _Run(self, key, state["episodes"], ctx, reads.get(VIEW))
        run.decide(max(ctx.clock_ms, now_ms + ctx.lateness_ms))
        return run.result(state)


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

    def __init__(self, step: Audit, sid: str, episodes: dict[str, Any],
                 ctx: EventContext, view: State | None = None) -> None:
        self.step = step
        self.view = view
        self.catalog = step.catalog
        self.sid = sid
        self.episodes = episodes
        self.now = ctx.now
        self.lateness = ctx.lateness_ms
        #: the partition's event-time clock when this run decides (stamped ``decided_at``)
        self.clock = ctx.clock_ms
        self.outputs: list[Output] = []
        self.changed = False

    def result(self, state: State | None) -> Result:
        wake = self.wake()
        if not self.changed:
            return Result(state, changed=False, wake_at_ms=wake)
        if not self.episodes:
            return Result(None, self.outputs, None, changed=state is not None)
        if state is None:
            state = {"episodes": self.episodes}
        return Result(state, self.outputs, wake)

    # --- time ----------------------------------------------------------------------------
    def late(self, rule: Rule) -> int:
        """The rule's allowed lateness (the worker's unless the rule sets its own)."""
        return self.lateness if rule.lateness_ms is None else rule.lateness_ms

    def settle(self, rule: Rule) -> int:
        return self.late(rule) if rule.settle_ms is None else rule.settle_ms

    def instants(self, rule: Rule, ep: Mapping[str, Any]) -> list[tuple[int, str]]:
        """The decisions still to take for ``ep``, as (event-time instant, what)."""
        if "fired_at" not in ep:
            return [(ep["due"], "fire")]
        out = []
        if ep["step"] < len(rule.escalate):
            out.append((ep["since"] + rule.escalate[ep["step"]][0], "escalate"))
        # (hinted absent: fired before hints waited for their settle time; it went out with
        # the alert) A clearing already reported holds the hint back: if the clear stands,
        # the customer is never told of a fault that is already gone.
        if "agent" in ep["notify"] and not ep.get("hinted", True) and "clear_at" not in ep:
            out.append((ep["since"] + max(rule.for_ms, self.settle(rule)), "hint"))
        if "clear_at" in ep:
            out.append((ep["clear_at"], "resolve"))
        return out

    def wake(self) -> int | None:
        """The next timer, on the runtime's scale: the runtime adds its own lateness."""
        wake = None
        for key, ep in self.episodes.items():
            rule = self.catalog.get(split_key(key)[0])
            if rule is None:
                continue
            shift = self.late(rule) - self.lateness
            for t, _ in self.instants(rule, ep):
                if wake is None or t + shift < wake:
                    wake = t + shift
        return wake

    def decide(self, clock: int) -> None:
        """Take every decision whose instant the watermark of its rule passed, in order.

        One at a time, earliest first, because a decision creates the next (firing makes
        the hint and the escalations due) and may make another moot (a resolve).
        """
        self.clock = clock
        order = {"fire": 0, "hint": 1, "escalate": 2, "resolve": 3}
        while True:
            best: tuple[int, int, str, str] | None = None
            for key, ep in self.episodes.items():
                rule = self.catalog.get(split_key(key)[0])
                if rule is None:
                    best = (-1, 0, "retire", key)
                    break
                mark = clock - self.late(rule)
                for t, what in self.instants(rule, ep):
                    cand = (t, order[what], what, key)
                    if t <= mark and (best is None or cand < best):
                        best = cand
            if best is None:
                return
            _, _, what, key = best
            ep = self.episodes[key]
            rule = self.catalog.get(split_key(key)[0])
            if rule is None:
                self.retire(key)
            elif what == "fire":
                self._fire(key, rule, ep)
            elif what == "hint":
                self._hint(key, rule, ep)
            elif what == "escalate":
                self._escalate(key, rule, ep, clock - self.late(rule))
            else:
                self._resolve(key, rule, ep)

    def _emit(self, *args: Any, **kwargs: Any) -> list[Output]:
        """The emitter's records, stamped with this run's event-time decision instant."""
        return self.step.emitter.emit(*args, decided=self.clock or None, **kwargs)

    # --- what events change --------------------------------------------------------------
    def judge(self, rule: Rule, item: str, raw: Any, cond: bool, now: int, env: Env) -> None:
        key = episode_key(rule.id, item)
        ep = self.episodes.get(key)
        if cond:
            if ep is None:
                self._open(key, rule, item, raw, now, env)
            elif "clear_at" in ep:  # a report within the lateness restored the condition
                del ep["clear_at"]
                self.changed = True
            return
        if ep is None:
            return
        self.changed = True
        if "fired_at" not in ep:
            del self.episodes[key]  # cleared before anyone was told: nothing happened
        elif ep.get("clear_at") is None or now < ep["clear_at"]:
            ep["clear_at"] = max(now, ep["since"])

    def retire(self, key: str) -> None:
        """An episode of a rule no longer in the catalog: resolve it if it fired, drop it."""
        ep = self.episodes.pop(key)
        self.changed = True
        if "fired_at" in ep:
            rule_id, item = split_key(key)
            ep["sequence"] += 1
            t = max(ep["fired_at"], ep["since"])
            self.outputs += self._emit(None, rule_id, self.sid, item, ep, t,
                                                   self.now, ended=t, hint=ep.get("hinted", True))

    def expire(self, key: str, rule: Rule, now: int) -> None:
        """An ``each`` episode whose item left the view: closed, marked as not judged."""
        ep = self.episodes.pop(key)
        self.changed = True
        if "fired_at" not in ep:
            return
        ep["sequence"] += 1
        item = split_key(key)[1]
        ended = max(now, ep["since"])
        note = EXPIRED_NOTE.format(item=item)
        for out in self._emit(rule, rule.id, self.sid, item, ep, ended, self.now,
                                          ended=ended, hint=ep.get("hinted", True)):
            if isinstance(out.value, Alert):
                out = Output(out.topic, out.key, out.value.model_copy(
                    update={"annotations": {**out.value.annotations, "expired": note}}))
            self.outputs.append(out)

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
        self.episodes[key] = {
            "since": since, "due": since + rule.for_ms,
            "vars": capture(env.view, rule.each, item, rule.capture, cat.names, cat.offset_min),
            "evidence": {k: text for k, (text, _) in sorted(notes.items())}}
        self.changed = True

    # --- decisions at the watermark ------------------------------------------------------
    def _fire(self, key: str, rule: Rule, ep: dict[str, Any]) -> None:
        """Pending -> firing at its ``due`` instant (whenever the watermark passes it).

        The texts' values are taken again from the view as the watermark leaves it: a fact
        reported at the same instant as the one that opened the episode (billing's arrears
        just after BSS's suspension) is known by now, and a script should not leave it out.
        """
        if self.view is not None:
            cat = self.catalog
            item = split_key(key)[1]
            fresh = capture(self.view, rule.each, item, rule.capture, cat.names, cat.offset_min)
            ep["vars"] = {k: v if v is not None else ep["vars"].get(k)
                          for k, v in fresh.items()}
        at = ep.pop("due")
        held = at - ep["since"]
        step = sum(1 for after, _ in rule.escalate if held >= after)
        ep.update(fired_at=at, severity=rule.escalate[step - 1][1] if step else rule.severity,
                  step=step, sequence=1, hinted=False,
                  notify=[n for n, on in (("technician", rule.technician),
                                          ("agent", rule.agent)) if on])
        self.changed = True
        self.outputs += self._alert(rule, key, ep, at)

    def _hint(self, key: str, rule: Rule, ep: dict[str, Any]) -> None:
        """The episode held for its settle time: now the agent may tell the customer."""
        ep["hinted"] = True
        self.changed = True
        at = ep["since"] + max(rule.for_ms, self.settle(rule))
        self.outputs += [o for o in self._emit(
            rule, rule.id, self.sid, split_key(key)[1], ep, at, self.now)
            if o.topic == AGENT_HINTS]

    def _alert(self, rule: Rule, key: str, ep: dict[str, Any], at: int,
               ended: int | None = None) -> list[Output]:
        return [o for o in self._emit(rule, rule.id, self.sid, split_key(key)[1],
                                                  ep, at, self.now, ended=ended,
                                                  hint=ep.get("hinted", True))
                if o.topic != AGENT_HINTS or ep.get("hinted", True)]

    def _resolve(self, key: str, rule: Rule, ep: dict[str, Any]) -> None:
        del self.episodes[key]
        self.changed = True
        ended = ep.pop("clear_at")
        ep["sequence"] += 1
        self.outputs += self._alert(rule, key, ep, ended, ended)

    def _escalate(self, key: str, rule: Rule, ep: dict[str, Any], t: int) -> None:
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
        self.outputs += [o for o in self._emit(
            rule, rule.id, self.sid, split_key(key)[1], ep, ep["since"] + after, self.now,
            hint=False) if o.topic != AGENT_HINTS]
