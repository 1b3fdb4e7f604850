"""The processing unit: coalescing, progress, dead letters, commits, timers, restarts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from agents.call_features import CallFeatures
from agents.core import EventContext, Output, Result
from agents.unified_view import UnifiedView
from schemas.outputs import DeadLetter
from streams.envelope import pack
from streams.unit import PROGRESS_TABLE, TIMERS_TABLE, BatchUnit, DictStore, system_tables
from tests.unit.helpers import T0, event, record

SS, CE = "subscriber-state", "call-events"


def make_unit(steps=None, stores=None, **kw) -> tuple[BatchUnit, dict[str, DictStore]]:
    steps = steps if steps is not None else [UnifiedView(), CallFeatures()]
    names = [s.name for s in steps] + list(system_tables(steps))
    stores = stores if stores is not None else {n: DictStore() for n in names}
    return BatchUnit(steps, stores, worker_id="w-test", **kw), stores


def envelope(
    topic: str, partition: int, events: list[dict], first_offset: int = 0, raw: list[bytes] | None = None
) -> bytes:
    recs = [record(e) for e in events]
    values = raw if raw is not None else [v for _, v in recs]
    keys = [k for k, _ in recs] if raw is None else [b"S00000001"] * len(raw)
    n = len(values)
    return pack(topic, partition, list(range(first_offset, first_offset + n)), [1000] * n, keys, values)


def commit(unit: BatchUnit):
    c = unit.snapshot()
    assert c is not None
    unit.complete(c)
    return c


def test_a_key_changed_many_times_is_written_once() -> None:
    unit, stores = make_unit()
    evs = [event(SS, "product_ordered", at=i, product_id=f"P{i}") for i in range(50)]
    stats = unit.process_envelope(envelope(SS, 0, evs))
    assert stats.records == 50 and stats.events == {(SS, "product_ordered"): 50}
    c = commit(unit)
    assert len(c.changelog[("unified-view", 0)]) == 1
    assert c.updates["unified-view"] == 50
    view = orjson.loads(stores["unified-view"].get(0, "S00000001"))
    assert sorted(view["products"]) == sorted(f"P{i}" for i in range(50))


def test_redelivered_records_are_skipped_by_offset() -> None:
    unit, stores = make_unit()
    evs = [event(CE, "network_call", at=i, call_id=f"c{i}") for i in range(10)]
    env = envelope(CE, 2, evs)
    unit.process_envelope(env)
    commit(unit)
    again = unit.process_envelope(env)
    assert again.records == 0 and again.duplicates[CE] == 10
    overlap = unit.process_envelope(
        envelope(CE, 2, [*evs[5:], event(CE, "network_call", at=99, call_id="c99")], first_offset=5)
    )
    assert overlap.records == 1 and overlap.duplicates[CE] == 5
    commit(unit)
    assert orjson.loads(stores[PROGRESS_TABLE].get(2, CE)) == 10


def test_progress_survives_a_restart_with_the_same_stores() -> None:
    unit, stores = make_unit()
    env = envelope(SS, 1, [event(SS, "activated", at=i) for i in range(5)])
    unit.process_envelope(env)
    commit(unit)
    fresh, _ = make_unit(stores=stores)
    assert fresh.process_envelope(env).records == 0


def test_uncommitted_work_is_not_in_the_store_and_reads_see_in_flight() -> None:
    unit, stores = make_unit()
    unit.process_envelope(envelope(SS, 0, [event(SS, "activated")]))
    assert stores["unified-view"].get(0, "S00000001") is None
    c = unit.snapshot()
    assert unit.read_state("unified-view", 0, "S00000001")["systems"]["bss"]["status"]["v"] == "active"
    unit.process_envelope(
        envelope(SS, 0, [event(SS, "suspended", at=5, reason="request", system="bss")], first_offset=1)
    )
    unit.complete(c)
    view = unit.read_state("unified-view", 0, "S00000001")
    assert view["systems"]["bss"]["status"]["v"] == "suspended"
    commit(unit)
    stored = orjson.loads(stores["unified-view"].get(0, "S00000001"))
    assert stored["systems"]["bss"]["status"]["v"] == "suspended"


def test_invalid_records_become_dead_letters_with_their_bytes() -> None:
    unit, _ = make_unit()
    good = event(SS, "activated")
    raw = [orjson.dumps(good), b"not json", b"", orjson.dumps({**good, "kind": "nope"})]
    stats = unit.process_envelope(envelope(SS, 3, [], raw=raw))
    assert stats.records == 4
    assert dict(stats.dead) == {(SS, "not_json"): 1, (SS, "empty"): 1, (SS, "invalid"): 1}
    c = commit(unit)
    dls = [DeadLetter.model_validate_json(v) for t, _, v in c.outputs if t == "dead-letters"]
    assert [(d.source_partition, d.source_offset, d.reason) for d in dls] == [
        (3, 1, "not_json"),
        (3, 2, "empty"),
        (3, 3, "invalid"),
    ]
    assert dls[0].value_b64 == "bm90IGpzb24="


def test_snapshot_is_none_when_nothing_happened() -> None:
    unit, _ = make_unit()
    assert unit.snapshot() is None


def test_partitions_are_independent() -> None:
    unit, stores = make_unit()
    unit.process_envelope(envelope(SS, 0, [event(SS, "activated", sid="S00000001")]))
    unit.process_envelope(envelope(SS, 1, [event(SS, "activated", sid="S00000002")]))
    commit(unit)
    assert stores["unified-view"].get(1, "S00000001") is None
    assert stores["unified-view"].get(1, "S00000002") is not None
    unit.forget_partitions([1])
    assert unit.process_envelope(envelope(SS, 1, [event(SS, "activated", sid="S00000002")])).records == 0


class Grace:
    """A timed step: fires an output when a 'suspended' report is not followed by
    'resumed' within 60 s of event time."""

    name = "grace"
    topics = frozenset({SS})
    reads: tuple[str, ...] = ()

    def key_of(self, ev: Any) -> str:
        return ev.subscriber_id

    def apply(self, state, ev, ctx, reads) -> Result:
        t = int(ev.event_time.timestamp() * 1000)
        if ev.kind == "suspended":
            return Result({"since": t}, wake_at_ms=t + 60_000)
        if ev.kind == "resumed":
            return Result(None, wake_at_ms=None)
        return Result(state, wake_at_ms=(state or {}).get("due"))

    def on_timer(self, state, key, now_ms, ctx: EventContext, reads) -> Result:
        dl = DeadLetter(
            source_topic="grace",
            source_partition=ctx.partition,
            source_offset=0,
            value_b64="",
            value_bytes=0,
            reason="invalid",
            error=f"{key}@{now_ms}",
            worker="w",
            detected_at=ctx.now,
        )
        return Result({**(state or {}), "fired": now_ms}, [Output("dead-letters", key, dl)])


def _fired(c) -> list[str]:
    return [DeadLetter.model_validate_json(v).error for t, _, v in c.outputs if t == "dead-letters"]


def test_timer_fires_when_event_time_passes_even_for_other_keys() -> None:
    unit, _ = make_unit([Grace()])
    unit.process_envelope(envelope(SS, 0, [event(SS, "suspended", sid="S00000001", at=0, reason="arrears")]))
    assert _fired(commit(unit)) == []
    # another subscriber's event moves the partition clock past the deadline
    unit.process_envelope(envelope(SS, 0, [event(SS, "activated", sid="S00000002", at=61)], first_offset=1))
    c = commit(unit)
    due = int(T0.timestamp() * 1000) + 60_000
    assert _fired(c) == [f"S00000001@{due}"]
    assert unit.clock_of(0) == due + 1_000


def test_timer_not_fired_when_condition_clears_in_time() -> None:
    unit, _ = make_unit([Grace()])
    evs = [
        event(SS, "suspended", at=0, reason="arrears"),
        event(SS, "resumed", at=30),
        event(SS, "activated", sid="S00000002", at=500),
    ]
    unit.process_envelope(envelope(SS, 0, evs))
    assert _fired(commit(unit)) == []


def test_due_timer_fires_before_a_later_event_of_the_same_key() -> None:
    unit, _ = make_unit([Grace()])
    evs = [event(SS, "suspended", at=0, reason="arrears"), event(SS, "resumed", at=90)]
    unit.process_envelope(envelope(SS, 0, evs))
    assert len(_fired(commit(unit))) == 1


def test_timers_survive_a_restart() -> None:
    unit, stores = make_unit([Grace()])
    unit.process_envelope(envelope(SS, 0, [event(SS, "suspended", at=0, reason="arrears")]))
    commit(unit)
    assert stores[TIMERS_TABLE].parts[0]
    restarted, _ = make_unit([Grace()], stores=stores)
    restarted.process_envelope(
        envelope(SS, 0, [event(SS, "activated", sid="S00000002", at=120)], first_offset=1)
    )
    assert len(_fired(commit(restarted))) == 1


def test_idle_live_partition_clock_follows_the_wall_clock() -> None:
    unit, _ = make_unit([Grace()], idle_ms=1_000)
    now_s = (datetime.now(UTC) - T0).total_seconds()  # a live event: dated now
    unit.process_envelope(envelope(SS, 0, [event(SS, "suspended", at=now_s, reason="arrears")]))
    commit(unit)
    wall = unit._timers[0].wall_seen
    assert unit.tick(wall + 30_000) == 0
    assert unit.snapshot() is None, "a clock that moved and fired nothing is not a commit"
    assert unit.tick(wall + 62_000) == 1
    assert len(_fired(commit(unit))) == 1


def test_idle_replayed_partition_clock_waits_for_events() -> None:
    unit, _ = make_unit([Grace()], idle_ms=1_000)
    unit.process_envelope(envelope(SS, 0, [event(SS, "suspended", at=0, reason="arrears")]))
    commit(unit)  # dated T0, days before the wall clock: a replay, not live traffic
    wall = unit._timers[0].wall_seen
    assert unit.tick(wall + 3_600_000) == 0
    assert unit.snapshot() is None
    assert unit.clock_of(0) == int(T0.timestamp() * 1000)


def test_commits_write_only_the_progress_that_changed() -> None:
    unit, _ = make_unit([Grace()])
    unit.process_envelope(envelope(SS, 0, [event(SS, "suspended", at=0, reason="arrears")]))
    first = commit(unit)
    assert sorted(k for k, _ in first.changelog[(PROGRESS_TABLE, 0)]) == ["\x00clock", SS]
    unit.process_envelope(envelope(CE, 0, [event(CE, "network_call", at=1)]))
    second = commit(unit)
    assert [k for k, _ in second.changelog[(PROGRESS_TABLE, 0)]] == [CE]


class Fragile:
    """A step with a bug: it fails on suspensions."""

    name = "fragile"
    topics = frozenset({SS})
    reads: tuple[str, ...] = ()

    def key_of(self, ev: Any) -> str:
        return ev.subscriber_id

    def apply(self, state, ev, ctx, reads) -> Result:
        if ev.kind == "suspended":
            raise ZeroDivisionError("boom")
        return Result({"n": (state or {}).get("n", 0) + 1})


def test_a_failing_step_quarantines_the_event_and_the_partition_goes_on() -> None:
    unit, stores = make_unit([Fragile()])
    evs = [event(SS, "activated", at=0), event(SS, "suspended", at=1, reason="arrears"),
           event(SS, "resumed", at=2)]
    stats = unit.process_envelope(envelope(SS, 0, evs))
    assert stats.dead[(SS, "processing_error")] == 1
    c = commit(unit)
    dls = [DeadLetter.model_validate_json(v) for t, _, v in c.outputs if t == "dead-letters"]
    assert [(d.source_offset, d.reason) for d in dls] == [(1, "processing_error")]
    assert "ZeroDivisionError: boom" in dls[0].error
    assert orjson.loads(stores["fragile"].get(0, "S00000001")) == {"n": 2}


def test_a_corrupt_envelope_becomes_a_dead_letter() -> None:
    unit, _ = make_unit()
    stats = unit.reject_envelope("foresight-packed", 2, 17, b"garbage", "bad magic")
    assert stats.dead[("foresight-packed", "invalid")] == 1
    c = commit(unit)
    (dl,) = [DeadLetter.model_validate_json(v) for t, _, v in c.outputs if t == "dead-letters"]
    assert (dl.source_partition, dl.source_offset, dl.value_bytes) == (2, 17, 7)
