"""Worker end to end on the real broker: inputs -> packer -> Faust agent -> tables, metrics,
dead letters; and kill -9 in the middle of the work loses and duplicates nothing."""

from __future__ import annotations

import base64
import time
from collections import Counter

import orjson
import pytest

from schemas.outputs import DeadLetter
from streams.app import default_pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.expected import fault_free
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

STEPS = default_pipeline()
INVALID = (b"not json", b"", b'{"kind": "opened"}')  # what tests.integration.harness.workload breaks
TABLES = tuple(s.name for s in STEPS) + system_tables(STEPS)


def _dead_letters(settings: Settings) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(m.value())
            for m in read_topic(settings, settings.topic("dead-letters"))]


def _assert_matches_fault_free(settings: Settings, sent) -> None:
    expected, _ = fault_free(sent, default_pipeline())
    for step in STEPS:
        got = {(p, k): v for (p, k), v in table_contents(settings, step.name).items()}
        want = {(p, k): v for (name, p, k), v in expected.items() if name == step.name}
        assert got == want, f"table {step.name} differs from the fault-free run"


def test_inputs_reach_tables_metrics_and_dead_letters(isolated: Settings) -> None:
    ensure_topics(isolated, TABLES)
    sent = produce(isolated, workload(3000))
    invalid = [s for s in sent if s.value in INVALID]
    worker = start_worker(isolated, worker_id="w1")
    try:
        wait_until(lambda: total(worker.metrics(), "foresight_committed_records_total") >= len(sent),
                   90, "all records committed", worker)
        m = worker.metrics()
        valid = len(sent) - len(invalid)
        assert total(m, "foresight_input_events_total") == valid
        assert total(m, "foresight_dead_letters_total") == len(invalid)
        assert total(m, "foresight_duplicate_records_total") == 0
        kinds = Counter(orjson.loads(s.value)["kind"] for s in sent if s not in invalid)
        for kind, n in kinds.items():
            assert total(m, "foresight_input_events_total", kind=kind) == n, kind
        # coalescing: fewer changelog records than state updates
        assert total(m, "foresight_changelog_records_total", table="unified-view") < \
            total(m, "foresight_state_updates_total", table="unified-view")
    finally:
        worker.stop()
    dls = _dead_letters(isolated)
    assert sorted((d.source_topic, d.source_partition, d.source_offset) for d in dls) == \
        sorted((s.topic, s.partition, s.offset) for s in invalid)
    by_pos = {(s.topic, s.partition, s.offset): s for s in invalid}
    for d in dls:
        assert base64.b64decode(d.value_b64) == by_pos[(d.source_topic, d.source_partition,
                                                       d.source_offset)].value
    _assert_matches_fault_free(isolated, sent)


def test_kill_9_mid_batch_loses_and_duplicates_nothing(isolated: Settings) -> None:
    ensure_topics(isolated, TABLES)
    sent = produce(isolated, workload(30000, subscribers=2000, invalid_every=53))
    invalid = {(s.topic, s.partition, s.offset) for s in sent if s.value in INVALID}
    # small envelopes and frequent commits: many transactions in flight when the kill lands
    env = {"FORESIGHT_BATCH_MAX_EVENTS": "200", "FORESIGHT_COMMIT_INTERVAL_MS": "20"}
    worker = start_worker(isolated, worker_id="crashy", env=env)
    wait_until(lambda: total(worker.metrics(), "foresight_committed_records_total") > len(sent) * 0.3,
               90, "a third committed", worker)
    worker.kill()
    restarted = start_worker(isolated, worker_id="crashy", env=env)
    try:
        wait_until(lambda: _all_applied(isolated, restarted, sent), 120, "all applied", restarted)
        m = restarted.metrics()
        # the restarted worker re-read work the crashed one had committed, and skipped it
        assert total(m, "foresight_duplicate_records_total") > 0
    finally:
        restarted.stop()
    dls = _dead_letters(isolated)
    positions = [(d.source_topic, d.source_partition, d.source_offset) for d in dls]
    assert len(positions) == len(set(positions)), "a dead letter was duplicated"
    assert set(positions) == invalid, "a dead letter was lost"
    _assert_matches_fault_free(isolated, sent)
    progress = table_contents(isolated, "progress")
    last = {}
    for s in sent:
        last[(s.partition, s.topic)] = max(last.get((s.partition, s.topic), -1), s.offset)
    for (p, topic), off in last.items():
        assert progress[(p, topic)] == off


def _all_applied(settings: Settings, worker, sent) -> bool:
    # progress is committed with the state: when every partition's progress reaches the
    # last offset, every effect is durable
    del worker
    progress = table_contents(settings, "progress", )
    for s in sent:
        if progress.get((s.partition, s.topic), -1) < s.offset:
            time.sleep(0.5)
            return False
    return True
