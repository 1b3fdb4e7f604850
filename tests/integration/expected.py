"""The fault-free answer: the same records through an in-memory unit, in offset order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from agents.core import Processor
from streams.unit import BatchUnit, DictStore, system_tables
from tests.integration.harness import Sent


def fault_free(sent: Sequence[Sent], steps: Sequence[Processor]) -> tuple[dict, list]:
    """(final state {(table, partition, key): value}, encoded outputs) of a clean run."""
    names = [s.name for s in steps] + list(system_tables(steps))
    stores = {n: DictStore() for n in names}
    unit = BatchUnit(steps, stores, worker_id="expected", idle_ms=None)
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
