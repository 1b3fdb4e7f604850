"""Per-subscriber call features from ``call-events``, bucketed by event day.

Seed 000's complaint-prediction model takes "calls to sensitive numbers", hotline calls
and call quality as inputs; these are the streaming versions. Counters live in daily
buckets keyed by the event's own day, so late events land where they belong and windows
(24 h, 7 d, 30 d) are sums over buckets. A short ring of recent call ids absorbs duplicates
resent by the network's mediation system.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.core import EventContext, Result, State
from agents.unified_view import ms
from schemas.registry import CALL_EVENTS

DAY_MS = 86_400_000
KEEP_DAYS = 31
RECENT_IDS = 64

#: Numbers whose callers are about to complain (工信部 12300, 消协 12315, 政务 12345).
REGULATOR_NUMBERS = frozenset({"12300", "12315", "12345"})
#: The operator's own hotlines (China Unicom's here: 10010 service, 10011 billing, 10018 VIP).
HOTLINE_NUMBERS = frozenset({"10010", "10011", "10018"})
#: Competitors' hotlines (China Mobile 10086, China Telecom 10000): a churn precursor.
COMPETITOR_NUMBERS = frozenset({"10086", "10000"})

# bucket layout: [calls, dropped, failed, hotline, regulator, talk_seconds, competitor]
_CALLS, _DROPPED, _FAILED, _HOTLINE, _REGULATOR, _TALK, _COMPETITOR = range(7)
_WIDTH = 7


def new_features() -> State:
    return {"days": {}, "recent": [], "last_hotline_ms": None, "hotline_leg": None,
            "last_event_ms": 0}


def _bucket(state: State, t: int) -> list[int]:
    day = str(t // DAY_MS)
    days: dict[str, list[int]] = state["days"]
    b = days.get(day)
    if b is None:
        b = days[day] = [0] * _WIDTH
        if len(days) > KEEP_DAYS:
            newest = max(int(d) for d in days)
            for d in [d for d in days if int(d) <= newest - KEEP_DAYS]:
                del days[d]
    return b


def apply_event(state: State, ev: Any, t: int | None = None) -> bool:
    """Fold one call event into ``state``; False if it was a duplicate (``t``: event ms)."""
    recent: list[str] = state["recent"]
    network = ev.kind == "network_call"
    dedup_id = ev.call_id if network else f"{ev.call_id}:{ev.stage}"
    if dedup_id in recent:
        return False
    recent.append(dedup_id)
    if len(recent) > RECENT_IDS:
        del recent[0]
    if t is None:
        t = ms(ev.event_time)
    state["last_event_ms"] = max(state["last_event_ms"], t)
    if network:
        b = _bucket(state, t)
        b[_CALLS] += 1
        result = ev.result
        if result == "dropped":
            b[_DROPPED] += 1
        elif result == "failed":
            b[_FAILED] += 1
        b[_TALK] += ev.duration_s
        peer = ev.peer_number.lstrip("+")
        if ev.direction == "mo":
            if peer in REGULATOR_NUMBERS:
                b[_REGULATOR] += 1
            elif peer in HOTLINE_NUMBERS:
                b[_HOTLINE] += 1
            elif peer in COMPETITOR_NUMBERS:
                b[_COMPETITOR] += 1
    else:  # hotline_call leg
        if ev.stage == "incoming":
            _bucket(state, t)[_HOTLINE] += 1
            if state["last_hotline_ms"] is None or t > state["last_hotline_ms"]:
                state["last_hotline_ms"] = t
        leg = state["hotline_leg"]
        if leg is None or t >= leg["t"]:
            state["hotline_leg"] = {"call_id": ev.call_id, "stage": ev.stage,
                                    "agent_id": ev.agent_id, "t": t}
    return True


def window(state: State, now_ms: int, days: int) -> dict[str, int]:
    """Sums of the buckets of the last ``days`` days up to ``now_ms``.

    >>> s = new_features()
    >>> _bucket(s, 5 * DAY_MS)[_DROPPED] += 2
    >>> window(s, 5 * DAY_MS + 10, 1)["dropped"]
    2
    """
    today = now_ms // DAY_MS
    sums = [0] * _WIDTH
    for d, b in state["days"].items():
        if today - days < int(d) <= today:
            for i, v in enumerate(b):  # older states may have shorter buckets
                sums[i] += v
    return {"calls": sums[_CALLS], "dropped": sums[_DROPPED], "failed": sums[_FAILED],
            "hotline": sums[_HOTLINE], "regulator": sums[_REGULATOR], "talk_s": sums[_TALK],
            "competitor": sums[_COMPETITOR]}


class CallFeatures:
    """Pipeline step that keeps the call-feature table (one entry per subscriber)."""

    name = "call-features"
    topics = frozenset({CALL_EVENTS})
    reads: tuple[str, ...] = ()

    def key_of(self, event: Any) -> str | None:
        return event.subscriber_id

    def apply(
        self, state: State | None, event: Any, ctx: EventContext, reads: Mapping[str, State | None]
    ) -> Result:
        st = state if state is not None else new_features()
        apply_event(st, event, ctx.event_ms or None)
        return Result(st)
