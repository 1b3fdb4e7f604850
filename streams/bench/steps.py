"""``foresight bench steps``: what each pipeline step costs per event, without Kafka.

Runs the same records through the processing unit (:class:`streams.unit.BatchUnit`, the
worker's code with in-memory stores) with ingestion only (unified view + call features)
and with the whole pipeline (+ the cross-system audit), in one process, alternating
rounds, and reports the per-event cost of each and their ratio. Two record sets:

* ``bench``: the ingest benchmark's dataset (half ``subscriber-state``, half
  ``call-events``; each state report is drawn independently, so BSS and HSS disagree far
  more often than a real operator's systems do: the audit's worst case);
* ``sim``: the simulator's stream of the same length (every topic, correlated systems,
  injected faults; the realistic case).
"""

from __future__ import annotations

import gc
import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from agents.core import Processor
from streams.envelope import pack
from streams.unit import BatchUnit, DictStore, system_tables

Record = tuple[str, str, bytes, int]  # topic, key, value, timestamp ms


def envelopes(records: Sequence[Record], partitions: int, size: int = 2000) -> list[bytes]:
    """Pack records the way the packer would (per topic and partition, in order)."""
    out: list[bytes] = []
    offsets: dict[tuple[str, int], int] = {}
    for i in range(0, len(records), size):
        parts: dict[tuple[str, int], list[Record]] = {}
        for r in records[i:i + size]:
            parts.setdefault((r[0], zlib.crc32((r[1] or "").encode()) % partitions), []).append(r)
        for (topic, p), rs in sorted(parts.items()):
            o = offsets.get((topic, p), 0)
            offsets[(topic, p)] = o + len(rs)
            out.append(pack(topic, p, list(range(o, o + len(rs))), [r[3] for r in rs],
                            [None if r[1] is None else r[1].encode() for r in rs], [r[2] for r in rs]))
    return out


def cost_per_event(steps: Sequence[Processor], warmup: Iterable[bytes], timed: list[bytes],
                   events: int) -> float:
    """Microseconds of process time per event through a fresh unit (commits included)."""
    names = [s.name for s in steps] + list(system_tables(steps))
    unit = BatchUnit(steps, {n: DictStore() for n in names}, worker_id="bench",
                     idle_ms=None, lateness_ms=2000, cache_keys=20_000)
    for env in warmup:
        unit.process_envelope(env)
    commit = unit.snapshot()
    if commit is not None:
        unit.complete(commit)
    started = time.process_time()
    for i, env in enumerate(timed):
        unit.process_envelope(env)
        if i % 20 == 19:  # about one commit per 10k events, as the worker does under load
            commit = unit.snapshot()
            if commit is not None:
                unit.complete(commit)
    commit = unit.snapshot()
    if commit is not None:
        unit.complete(commit)
    return (time.process_time() - started) / events * 1e6


def bench_records(events: int, subscribers: int) -> list[Record]:
    from streams.bench.dataset import events as generate

    return [(t, k.decode(), v, 0) for t, k, v in generate(events, subscribers)]


def sim_records(events: int, subscribers: int, seed: int = 5) -> tuple[list[Record], list[Record]]:
    """(bootstrap, run) records of a simulation with ``events`` run-phase records."""
    from streams.simulator.config import SimConfig
    from streams.simulator.simulation import Simulation
    from streams.simulator.truthlog import TruthLog

    sim = Simulation(SimConfig(seed=seed, subscribers=subscribers,
                               start_ms=1_748_736_000_000, horizon_s=12 * 3600,
                               faults_per_rule=40), TruthLog(keep=False))
    boot = [r for batch in sim.bootstrap() for r in batch]
    run = [r for batch in sim.run(max_records=events) for r in batch][:events]
    return boot, run


def run_steps(events: int, subscribers: int, rounds: int, partitions: int) -> list[dict[str, Any]]:
    """Per record set: per-event cost of ingestion only and of the full pipeline."""
    from streams.app import default_pipeline
    from streams.settings import Settings

    full = Settings(steps="unified-view,call-features,audit")
    ingest = Settings(steps="unified-view,call-features")
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # as the worker runs (streams.app.tune_gc)
    results = []
    boot, run = sim_records(events, max(1000, subscribers // 10))
    sets = {"bench": ([], bench_records(events, subscribers)), "sim": (boot, run)}
    for name, (warm, recs) in sets.items():
        warm_envs, timed = envelopes(warm, partitions), envelopes(recs, partitions)
        costs: dict[str, list[float]] = {"ingest": [], "full": []}
        for _ in range(rounds):
            for label, settings in (("ingest", ingest), ("full", full)):
                costs[label].append(cost_per_event(default_pipeline(settings), warm_envs,
                                                   timed, len(recs)))
        state = sum(1 for r in recs if r[0] == "subscriber-state") / len(recs)
        results.append({"records": name, "events": len(recs), "state_share": state,
                        "ingest_us": min(costs["ingest"]), "full_us": min(costs["full"])})
    return results


def format_steps(results: list[dict[str, Any]]) -> str:
    """The table.

    >>> print(format_steps([{"records": "bench", "events": 10, "state_share": 0.5,
    ...                      "ingest_us": 10.0, "full_us": 14.0}]))
    records   events  state share  ingest µs/event  full µs/event  audit cost (full / ingest)
    bench         10         50%             10.0           14.0                       1.40x
    """
    rows = ["records   events  state share  ingest µs/event  full µs/event  "
            "audit cost (full / ingest)"]
    for r in results:
        rows.append(f"{r['records']:8s} {r['events']:7d} {r['state_share']:11.0%} "
                    f"{r['ingest_us']:16.1f} {r['full_us']:14.1f} "
                    f"{r['full_us'] / r['ingest_us']:26.2f}x")
    return "\n".join(rows)
