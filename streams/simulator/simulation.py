"""One simulated operator, assembled: population, systems, flows, director, truth.

``Simulation(cfg, truth)`` is pure (no Kafka, no wall clock): :meth:`bootstrap` and
:meth:`run` yield batches of records, :meth:`finish` closes the truth. The command line
and the tests drive it the same way, with different sinks.

>>> from streams.simulator.truthlog import TruthLog
>>> sim = Simulation(SimConfig(seed=7, subscribers=50, start_ms=1_748_736_000_000), TruthLog())
>>> sum(len(b) for b in sim.run(max_records=200)) >= 200
True
>>> sim.finish({})["type"]
'summary'
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from streams.simulator.bootstrap import bootstrap_records
from streams.simulator.clock import iso
from streams.simulator.config import SimConfig
from streams.simulator.engine import Engine, Record
from streams.simulator.faults import Faults
from streams.simulator.flows_activity import Activity
from streams.simulator.flows_state import StateFlows
from streams.simulator.lookalikes import KINDS, Lookalikes
from streams.simulator.model import Tracker
from streams.simulator.network import Network
from streams.simulator.population import build_population
from streams.simulator.stories import Director
from streams.simulator.systems import Systems
from streams.simulator.truthlog import TruthLog

#: 2: ``must_fire`` and ``lookalike`` on inconsistencies, ``lateness_s`` and
#: ``lookalike_rate`` in the header, look-alike counts in the summary.
TRUTH_VERSION = 2


class Simulation:
    """Wires the generators of one run; see the module docstring for the protocol."""

    def __init__(self, cfg: SimConfig, truth: TruthLog) -> None:
        self.cfg = cfg
        self.truth = truth
        self.pop = build_population(cfg.seed, cfg.subscribers)
        self.eng = eng = Engine(cfg, truth)
        self.tracker = Tracker(truth, cfg.lateness_ms)
        self.systems = Systems(eng, self.tracker)
        seed = cfg.seed
        self.flows = StateFlows(eng, self.systems, self.pop, random.Random(f"{seed}/state"))
        self.activity = Activity(eng, self.pop, self.tracker, random.Random(f"{seed}/activity"))
        self.network = Network(eng, self.pop, random.Random(f"{seed}/network"))
        self.faults = Faults(eng, self.systems, self.flows, self.pop,
                             random.Random(f"{seed}/faults"))
        self.lookalikes = Lookalikes(eng, self.systems, self.pop,
                                     random.Random(f"{seed}/lookalikes"))
        self.director = Director(eng, self.pop, self.flows, self.activity, self.network,
                                 self.faults, random.Random(f"{seed}/stories"),
                                 self.lookalikes)
        self.bootstrap_count = 0
        self._started = False

    def header(self, args: dict[str, Any], speed: float, rate: float) -> dict[str, Any]:
        """The truth file's first line."""
        return {
            "type": "run", "version": TRUTH_VERSION, "seed": self.cfg.seed,
            "start": iso(self.cfg.start_ms), "speed": float(speed),
            "subscribers": self.cfg.subscribers, "rate": float(rate),
            "cells": len(self.pop.cells), "lines": len(self.pop.lines),
            "horizon_s": self.cfg.horizon_s, "bootstrap": self.cfg.bootstrap,
            "late_rate": self.cfg.late_rate, "late_max_s": self.cfg.late_max_s,
            "duplicate_rate": self.cfg.duplicate_rate, "invalid_rate": self.cfg.invalid_rate,
            "event_id_prefix": f"{self.eng.tag}-", "args": args,
            "lateness_s": self.cfg.lateness_s, "lookalike_rate": self.cfg.lookalike_rate,
        }

    def bootstrap(self) -> Iterator[list[Record]]:
        """Batches of the bootstrap phase (empty with ``bootstrap=False``)."""
        if not self.cfg.bootstrap:
            return
        for batch in bootstrap_records(self.eng, self.pop):
            self.bootstrap_count += len(batch)
            yield batch

    def run(self, max_records: int | None = None,
            until_ms: int | None = None) -> Iterator[list[Record]]:
        """Batches of the run phase, until ``stop()``, ``max_records`` or ``until_ms``."""
        if not self._started:
            self._started = True
            self.network.start()
            self.flows.start()
            self.activity.start()
            self.director.start()
        self.eng.max_records = max_records
        self.eng.until_ms = until_ms
        return self.eng.run()

    def stop(self) -> None:
        """End the run after the current action (late events are still drained)."""
        self.eng.stop()

    def finish(self, topic_counts: dict[str, int], **extra: Any) -> dict[str, Any]:
        """Close open intervals and stories; write and return the summary line."""
        self.tracker.finish(self.pop.subs)
        self.network.finish()
        eng = self.eng
        written = sorted(self.tracker.written.items())
        inconsistencies = {kind: {rule: n for (rule, k), n in written if k == kind}
                           for kind in ("injected", "lookalike", "transient")}
        variants: dict[str, dict[str, int]] = {}
        for (rule, kind), n in sorted(self.tracker.lookalikes.items(),
                                      key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]))):
            variants.setdefault(rule, {})[kind] = n
        la = self.lookalikes
        summary = {
            "type": "summary",
            "end": iso(eng.now),
            "records": sum(topic_counts.values()),
            "bootstrap_records": self.bootstrap_count,
            "run_records": eng.n_out,
            "topics": dict(sorted(topic_counts.items())),
            "truth": dict(sorted(self.truth.counts.items())),
            "inconsistencies": inconsistencies,
            "faults": {"planned": dict(sorted(self.faults.planned.items())),
                       "skipped": dict(sorted(self.faults.skipped.items()))},
            "lookalikes": {"planned": dict(sorted(la.planned.items())),
                           "skipped": dict(sorted(la.skipped.items())),
                           "missed": dict(sorted(la.missed.items())),
                           "written": variants},
            "out_of_order": {"count": eng.late_count, "event_ids": eng.late_ids},
            "duplicates": {"count": eng.duplicate_count, "event_ids": eng.duplicate_ids},
            "invalid": eng.invalid_count,
            "subscribers_at_end": len(self.pop.subs),
            **extra,
        }
        summary["truth"]["summary"] = 1
        self.truth.write(summary)
        self.truth.close()
        return summary
