"""Two workers in one group split the partitions; a worker joining mid-stream (a rebalance)
loses and duplicates nothing."""

from __future__ import annotations

import threading
import time

import pytest

from streams.app import default_pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.expected import assert_exactly_once
from tests.integration.harness import (
    all_applied,
    produce,
    start_worker,
    total,
    wait_until,
    workload,
)

pytestmark = pytest.mark.integration


def test_second_worker_takes_half_the_partitions_mid_stream(isolated: Settings) -> None:
    steps = default_pipeline()
    ensure_topics(isolated, tuple(s.name for s in steps) + system_tables(steps))
    records = workload(60000, subscribers=3000, invalid_every=101, seed=5)
    sent = produce(isolated, records[:5000])
    env = {"FORESIGHT_BATCH_MAX_EVENTS": "200"}
    first = start_worker(isolated, worker_id="w-a", env=env)
    wait_until(lambda: total(first.metrics(), "foresight_committed_records_total") > 2000, 90,
               "first worker busy", first)

    def trickle() -> None:  # keep input flowing through the rebalance
        for i in range(5000, len(records), 1000):
            sent.extend(produce(isolated, records[i:i + 1000]))
            time.sleep(0.25)

    feeder = threading.Thread(target=trickle)
    feeder.start()
    second = start_worker(isolated, worker_id="w-b", env=env)
    feeder.join()
    try:
        wait_until(lambda: all_applied(isolated, sent), 180, "every record applied", second)
        a = total(first.metrics(), "foresight_committed_records_total")
        b = total(second.metrics(), "foresight_committed_records_total")
        assert a > 0 and b > 0, "both workers should have done part of the work"
        assert a + b >= len(sent) == len(records)
    finally:
        second.stop()
        first.stop()
    seen = assert_exactly_once(isolated, sent, steps)
    assert sum(seen["dead-letters"].values()) == \
        sum(1 for s in sent if not s.value.startswith(b"{\"s"))
