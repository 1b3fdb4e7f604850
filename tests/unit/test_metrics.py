"""The worker's metrics: per-record latency observed per envelope, consumer lag series
that follow the packer's assignment, state keys counted cheaply, time to detect in event
time. No broker: the runner gets a fake committer and fake Faust events."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from agents.audit.step import Audit
from agents.unified_view import UnifiedView
from streams.envelope import pack
from streams.metrics import Metrics, WeightedHistogram
from streams.packer import Packer
from streams.runner import UnitRunner
from streams.store import MemoryBackend
from streams.unit import BatchUnit, DictStore, system_tables
from tests.unit.helpers import event, record


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_weighted_histogram_counts_every_record_once() -> None:
    reg = CollectorRegistry()
    h = WeightedHistogram("x_seconds", "x", (0.1, 1.0), registry=reg)
    h.observe(0.05, 10)
    h.observe(0.1, 1)  # a bound belongs to its own bucket (le)
    h.observe(5.0, 2)
    h.observe(1.0, 0)  # no records: nothing
    assert _value(reg, "x_seconds_bucket", le="0.1") == 11
    assert _value(reg, "x_seconds_bucket", le="1.0") == 11
    assert _value(reg, "x_seconds_bucket", le="+Inf") == 13
    assert _value(reg, "x_seconds_count") == 13
    assert abs(_value(reg, "x_seconds_sum") - (0.5 + 0.1 + 10.0)) < 1e-9


def test_consumer_lag_series_follow_the_assignment() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_consumer_lag({("call-events", 0): 5, ("call-events", 1): 7})
    m.set_consumer_lag({("call-events", 1): 3, ("complaints", 2): 0})
    text = generate_latest(reg).decode()
    assert 'foresight_consumer_lag_records{partition="0",topic="call-events"}' not in text
    assert _value(reg, "foresight_consumer_lag_records", topic="call-events", partition="1") == 3
    assert _value(reg, "foresight_consumer_lag_records", topic="complaints", partition="2") == 0


class _FakeCommitter:
    def commit(self, commit: Any) -> dict:
        return {}


class _Msg:
    topic, partition, offset = "packed", 0, 0


class _Event:
    def __init__(self, value: bytes) -> None:
        self.value = value
        self.message = _Msg()


class _Stream:
    async def ack(self, event: Any) -> None:
        return None


def _runner() -> tuple[UnitRunner, CollectorRegistry]:
    steps = [UnifiedView(), Audit()]
    names = [s.name for s in steps] + list(system_tables(steps))
    unit = BatchUnit(steps, {n: DictStore() for n in names}, worker_id="w", idle_ms=None,
                     lateness_ms=2000)
    reg = CollectorRegistry()
    rules = [r.id for r in steps[1].catalog.rules]
    return UnitRunner(unit, _FakeCommitter(), Metrics(reg, names, rules)), reg  # type: ignore[arg-type]


def _envelope(events: list[dict], first: int, timestamps: list[int]) -> bytes:
    recs = [record(e) for e in events]
    return pack("subscriber-state", 0, list(range(first, first + len(recs))), timestamps,
                [k for k, _ in recs], [v for _, v in recs])


def test_latency_is_per_record_from_its_kafka_timestamp_to_the_commit() -> None:
    runner, reg = _runner()
    now_ms = int(time.time() * 1000)
    evs = [event("subscriber-state", "opened", sid=f"S{i:08d}", at=i) for i in range(4)]
    # four records written 2 s, 2 s, 4 s and 4 s ago (mean 3 s), and a redelivered one
    runner.feed(_Stream(), _Event(_envelope(evs, 0, [now_ms - 2000, now_ms - 2000,
                                                     now_ms - 4000, now_ms - 4000])))
    runner.feed(_Stream(), _Event(_envelope(evs[:1], 0, [now_ms - 60_000])))
    asyncio.run(runner.commit())
    name = "foresight_processing_latency_seconds"
    assert _value(reg, f"{name}_count") == 4  # per record; the duplicate is not processed
    assert 11.9 < _value(reg, f"{name}_sum") < 12.5  # 4 records x ~3 s
    assert _value(reg, f"{name}_bucket", le="2.5") == 0
    assert _value(reg, f"{name}_bucket", le="5.0") == 4


def test_time_to_detect_is_event_time_from_start_to_decision() -> None:
    runner, reg = _runner()
    sid = "S00000042"
    evs = [event("subscriber-state", "opened", sid=sid, at=0, plan_networks=["4g"]),
           event("subscriber-state", "activated", sid=sid, at=30),
           event("subscriber-state", "activated", sid=sid, at=30, system="hss"),
           event("subscriber-state", "network_registered", sid=sid, at=60, system="hss"),
           event("subscriber-state", "product_ordered", sid=sid, at=120,
                 product_id="VAS-MUSIC", platform="vas"),
           # another subscriber's report at minute 13 moves the clock past 12 min + 2 s
           event("subscriber-state", "balance_reported", sid="S00000043", at=780,
                 system="billing")]
    # recorded long ago (a replay): the wall clock must not matter
    runner.feed(_Stream(), _Event(_envelope(evs, 0, [1000] * len(evs))))
    asyncio.run(runner.commit())
    rule = "product-not-provisioned"
    assert _value(reg, "foresight_audit_alerts_total", rule=rule, transition="fired") == 1
    assert _value(reg, "foresight_audit_time_to_detect_seconds_count", rule=rule) == 1
    # started at minute 2, decided when the clock reached minute 13
    assert _value(reg, "foresight_audit_time_to_detect_seconds_sum", rule=rule) == 660.0


def test_memory_store_counts_keys() -> None:
    b = MemoryBackend()
    b.write([("a", b"1"), ("b", b"2"), ("a", b"3")], None)
    b.write([("b", None)], 5)
    assert b.key_count() == 1


class _FakeConsumer:
    def __init__(self) -> None:
        self.asked: list[Any] = []

    def committed(self, tps: list[Any], timeout: float) -> list[Any]:
        self.asked.append([(t.topic, t.partition) for t in tps])
        from confluent_kafka import TopicPartition
        return [TopicPartition(t.topic, t.partition, 40 if t.partition == 0 else -1001)
                for t in tps]


def test_packer_partition_lag_is_high_watermark_minus_committed() -> None:
    p = Packer.__new__(Packer)  # only the lag bookkeeping; no Kafka client
    p.logical = {"t1.call-events": "call-events"}
    p._committed = {("t1.call-events", 2): 99}
    p._base = {}
    p._consumer = _FakeConsumer()  # type: ignore[assignment]
    marks = {("t1.call-events", 0): (0, 100), ("t1.call-events", 1): (10, 30),
             ("t1.call-events", 2): (0, 150), ("t1.call-events", 3): (-1001, -1001)}
    lag = p._partition_lag(marks)
    # 0: committed by a previous packer at 40; 1: never committed, starts at the low mark;
    # 2: this packer committed up to 99; 3: high watermark unknown yet
    assert lag == {("call-events", 0): 60, ("call-events", 1): 20, ("call-events", 2): 50}
    assert p._partition_lag(marks) == lag
    assert len(p._consumer.asked) == 1  # committed offsets are asked once per assignment
