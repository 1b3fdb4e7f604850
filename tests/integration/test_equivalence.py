"""The batched worker and the per-event reference give identical outputs and final state.

The same recorded input is produced to two sets of topics (same keys, same order, so the
same partitions and offsets); the batched worker (packer, envelopes, record cache,
transactions) runs on one, the plain per-event Faust reference on the other.
"""

from __future__ import annotations

import orjson
import pytest

from streams.app import default_pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import (
    produce,
    read_topic,
    start_worker,
    table_contents,
    total,
    wait_until,
    workload,
)

pytestmark = pytest.mark.integration
# processing time and place, not results (a hint's expires_at is event time + a TTL: kept)
VOLATILE = {"detected_at", "created_at", "worker"}


def _outputs(settings: Settings, topic: str) -> list[tuple]:
    out = []
    for m in read_topic(settings, settings.topic(topic)):
        doc = {k: v for k, v in orjson.loads(m.value()).items() if k not in VOLATILE}
        out.append((m.partition(), m.key(), orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)))
    return sorted(out)


def test_batched_equals_per_event_reference(isolated: Settings) -> None:
    steps = default_pipeline()
    tables = tuple(s.name for s in steps) + system_tables(steps)
    # the same tag as the fixture's: its cleanup deletes these topics too
    ref = isolated.model_copy(update={"topic_prefix": f"r{isolated.app_id[3:]}.",
                                      "app_id": isolated.app_id + "-ref"})
    records = workload(6000, subscribers=300, invalid_every=41, seed=11)
    for s in (isolated, ref):
        ensure_topics(s, tables)
    stamp = 1_790_000_000_000
    sent_a = produce(isolated, records, timestamp_ms=stamp)
    sent_b = produce(ref, records, timestamp_ms=stamp)
    assert [(s.topic, s.partition, s.offset) for s in sent_a] == \
        [(s.topic, s.partition, s.offset) for s in sent_b]

    batched = start_worker(isolated, worker_id="batched")
    reference = start_worker(ref, worker_id="reference", reference=True)
    try:
        for w in (batched, reference):
            wait_until(lambda w=w: total(w.metrics(), "foresight_committed_records_total")
                       >= len(records), 120, "all records processed", w)
    finally:
        batched.stop()
        reference.stop()

    for step in steps:
        a = table_contents(isolated, step.name)
        b = table_contents(ref, step.name)
        assert a == b, f"{step.name}: batched and reference state differ"
        assert len(a) > 0
    for topic in ("dead-letters", "alerts", "agent-hints"):
        assert _outputs(isolated, topic) == _outputs(ref, topic), topic
    broken = (b"not json", b"", b'{"kind": "opened"}')  # what workload() breaks
    assert len(_outputs(isolated, "dead-letters")) == sum(1 for r in records if r[2] in broken)
