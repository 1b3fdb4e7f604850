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


def _with_contacts(records: list[tuple], subscribers: int) -> list[tuple]:
    """Every 10th record followed by a contact request (every 50th a redelivered one).

    The requests are for subscribers of their own (``S9...``), with no reports on other
    topics: the reference reads each topic on its own, so the interleaving of two topics
    (and with it what the unified view held when a request was decided) may differ from
    the batched worker's; within one topic the order is the partition's in both.
    """
    import random

    from schemas.examples import INPUT_EXAMPLES

    rng = random.Random(3)
    req = INPUT_EXAMPLES["contact-requests"][0]
    out: list[tuple] = []
    owner: dict[str, str] = {}
    for i, rec in enumerate(records):
        out.append(rec)
        if i % 10:
            continue
        try:
            at = orjson.loads(rec[2])["event_time"]
        except (ValueError, KeyError, TypeError):
            continue
        rid = f"RQ{i - 500 if i % 500 == 0 and i else i}"     # every 50th: a redelivery
        sid = owner.setdefault(rid, f"S9{rng.randrange(subscribers // 3):07d}")
        ev = {**req, "request_id": rid, "subscriber_id": sid, "event_id": f"Q{i}",
              "event_time": at, "channel": rng.choice(["sms", "telemarketing", "ivr"]),
              "purpose": rng.choice(["marketing", "marketing", "service"])}
        ev.pop("scheduled_for", None)
        out.append(("contact-requests", sid.encode(), orjson.dumps(ev)))
    return out


def test_batched_equals_per_event_reference(isolated: Settings) -> None:
    steps = default_pipeline()
    tables = tuple(s.name for s in steps) + system_tables(steps)
    # the same tag as the fixture's: its cleanup deletes these topics too
    ref = isolated.model_copy(update={"topic_prefix": f"r{isolated.app_id[3:]}.",
                                      "app_id": isolated.app_id + "-ref"})
    records = workload(6000, subscribers=300, invalid_every=41, seed=11)
    records = _with_contacts(records, subscribers=300)
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
    for topic in ("dead-letters", "alerts", "agent-hints", "contact-decisions"):
        assert _outputs(isolated, topic) == _outputs(ref, topic), topic
    broken = (b"not json", b"", b'{"kind": "opened"}')  # what workload() breaks
    assert len(_outputs(isolated, "dead-letters")) == sum(1 for r in records if r[2] in broken)
