"""The fault-free answer: the same records through an in-memory unit, in offset order, and
the check that a run under faults produced exactly it (nothing lost, nothing twice)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.core import Processor
from streams.decoding import TimeBounds
from streams.settings import Settings
from streams.unit import PROGRESS_TABLE, BatchUnit, DictStore, system_tables
from tests.integration.harness import Sent, read_topic, table_contents

#: what makes an output the same output for a person reading it (processing time and place
#: are not part of it)
IDENTITY = {
    "alerts": ("fingerprint", "sequence", "status"),
    "agent-hints": ("hint_id", "sequence", "active"),
    "dead-letters": ("source_topic", "source_partition", "source_offset", "reason"),
}


def fault_free(sent: Sequence[Sent], steps: Sequence[Processor]) -> tuple[dict, list]:
    """(final state {(table, partition, key): value}, encoded outputs) of a clean run, with
    the worker's default lateness and event-time bounds."""
    defaults = Settings()
    names = [s.name for s in steps] + list(system_tables(steps))
    stores = {n: DictStore() for n in names}
    unit = BatchUnit(steps, stores, worker_id="expected", idle_ms=None,
                     lateness_ms=defaults.timer_lateness_ms,
                     max_event_bytes=defaults.max_event_bytes,
                     time_bounds=TimeBounds.of(defaults.event_time_max_future_s,
                                               defaults.event_time_floor))
    for s in sorted(sent, key=lambda s: (s.partition, s.topic, s.offset)):
        unit.process_record(s.topic, s.partition, s.offset, 0, s.key, s.value)
    commit = unit.snapshot()
    outputs = commit.outputs if commit else []
    if commit:
        unit.complete(commit)
    state: dict[tuple[str, int, str], Any] = {}
    for step in steps:
        for p, part in stores[step.name].parts.items():
            for k, v in part.items():
                state[(step.name, p, k)] = orjson.loads(v)
    return state, outputs


def identity(topic: str, value: bytes) -> tuple:
    doc = orjson.loads(value)
    return tuple(doc[f] for f in IDENTITY[topic])


def assert_exactly_once(settings: Settings, sent: Sequence[Sent],
                        steps: Sequence[Processor]) -> dict[str, Counter]:
    """Every input accounted for (applied or dead-lettered), every table equal to the
    fault-free run's, and every output a person sees there as often as in that run (by
    its id: once, nothing lost, nothing duplicated). Returns the outputs seen, by topic."""
    want_state, want_outputs = fault_free(sent, steps)
    progress = table_contents(settings, PROGRESS_TABLE)
    last: dict[tuple[int, str], int] = {}
    for s in sent:
        last[(s.partition, s.topic)] = max(last.get((s.partition, s.topic), -1), s.offset)
    behind = {k: (progress.get(k), off) for k, off in last.items() if progress.get(k) != off}
    assert not behind, f"inputs not accounted for (progress, last offset): {behind}"
    for step in steps:
        got = table_contents(settings, step.name)
        want = {(p, k): v for (name, p, k), v in want_state.items() if name == step.name}
        assert got == want, f"table {step.name} differs from the fault-free run"
    seen: dict[str, Counter] = {}
    for topic in IDENTITY:
        got = Counter(identity(topic, m.value()) for m in read_topic(settings, settings.topic(topic)))
        want = Counter(identity(topic, v) for t, _k, v in want_outputs if t == topic)
        # compared as multisets: an output twice where the fault-free run has it once is
        # "unexpected"; one the fault-free run itself repeats must be there as often
        missing = want - got
        extra = got - want
        assert not missing and not extra, (
            f"{topic}: {sum(missing.values())} missing, {sum(extra.values())} unexpected, e.g. "
            f"{list(missing)[:3]} / {list(extra)[:3]}")
        seen[topic] = got
    return seen


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
