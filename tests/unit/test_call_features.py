"""Call features: daily buckets by event time, regulator and hotline calls, duplicates."""

from __future__ import annotations

from agents.call_features import DAY_MS, apply_event, new_features, window
from agents.unified_view import ms
from schemas.registry import decode
from tests.unit.helpers import event, record

CE = "call-events"


def call(at: float, **kw):
    return decode(CE, record(event(CE, "network_call", at=at, **kw))[1])


def test_windows_count_by_event_day() -> None:
    s = new_features()
    apply_event(s, call(0, call_id="a", result="dropped"))
    apply_event(s, call(60, call_id="b", peer_number="12300", result="answered"))
    apply_event(s, call(3 * 86400, call_id="c", result="failed"))
    now = ms(call(3 * 86400, call_id="x").event_time)
    assert window(s, now, 1) == {"calls": 1, "dropped": 0, "failed": 1, "hotline": 0,
                                 "regulator": 0, "talk_s": 75, "competitor": 0}
    w7 = window(s, now, 7)
    assert (w7["calls"], w7["dropped"], w7["regulator"]) == (3, 1, 1)


def test_duplicates_are_counted_once_and_late_events_land_in_their_day() -> None:
    s = new_features()
    c = call(86400, call_id="a", result="dropped")
    assert apply_event(s, c) is True
    assert apply_event(s, c) is False
    apply_event(s, call(10, call_id="late", result="dropped"))
    days = sorted(int(d) for d in s["days"])
    assert days[1] - days[0] == 1
    assert sum(b[1] for b in s["days"].values()) == 2


def test_old_buckets_are_pruned() -> None:
    s = new_features()
    for d in range(40):
        apply_event(s, call(d * 86400, call_id=f"c{d}"))
    assert len(s["days"]) <= 31
    assert min(int(d) for d in s["days"]) * DAY_MS > 0


def test_competitor_hotlines_are_their_own_feature() -> None:
    s = new_features()
    apply_event(s, call(0, call_id="a", peer_number="10086"))
    apply_event(s, call(1, call_id="b", peer_number="10010"))
    w = window(s, ms(call(2, call_id="x").event_time), 1)
    assert (w["competitor"], w["hotline"]) == (1, 1)


def test_hotline_legs_track_the_current_call() -> None:
    s = new_features()
    for i, stage in enumerate(["incoming", "queued", "answered"]):
        leg = decode(CE, record(event(CE, "hotline_call", at=i, call_id="H1", stage=stage,
                                      agent_id="A-1" if stage == "answered" else None))[1])
        apply_event(s, leg)
    assert s["hotline_leg"]["stage"] == "answered" and s["hotline_leg"]["agent_id"] == "A-1"
    assert sum(b[3] for b in s["days"].values()) == 1
