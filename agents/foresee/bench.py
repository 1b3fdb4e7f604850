"""Micro-benchmark of the Foresee step (``foresight models bench``), in process.

* scoring cost: the time of one scoring (feature vector + ``predict_proba_one`` of every
  model + hysteresis) per scored event, p50 / p99, with models that have learned;
* pipeline cost: the same records through the pure steps with and without ``foresee``
  (unified view + audit vs unified view + audit + foresee), seconds and ratio. In process
  there is no Kafka, Faust or commit cost, which the worker pays per event whatever the
  steps: the ratio is an upper bound of the worker's.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from agents.foresee import evaluation as ev
from agents.foresee.catalog import load_catalog
from agents.foresee.step import Foresee


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def run(subscribers: int = 300, days: float = 30.0, seed: int = 5) -> dict[str, Any]:
    records = ev.simulate(subscribers, days, seed, 14.0, 0.2, 0.05)
    # the worker's garbage-collector settings (streams.app.tune_gc): without them a
    # young-generation collection every 700 allocations lands inside most scorings
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    catalog = load_catalog()
    timings: list[float] = []
    orig = Foresee._score

    def timed(self: Foresee, *a: Any) -> None:
        t0 = time.perf_counter()
        orig(self, *a)
        timings.append(time.perf_counter() - t0)

    Foresee._score = timed  # type: ignore[method-assign]
    try:
        with_f = ev.replay(records, catalog)
    finally:
        Foresee._score = orig  # type: ignore[method-assign]
    warm = timings[len(timings) // 2:]   # the second half: models have learned
    without = ev.replay(records, catalog, with_foresee=False)
    return {
        "events": with_f.events, "scored_events": len(timings),
        "score_us_p50": round(_pct(warm, 0.5) * 1e6, 1),
        "score_us_p99": round(_pct(warm, 0.99) * 1e6, 1),
        "pipeline_seconds_without_foresee": round(without.seconds, 2),
        "pipeline_seconds_with_foresee": round(with_f.seconds, 2),
        "ratio": round(with_f.seconds / without.seconds, 2) if without.seconds else None,
        "models": {n: m.estimator for n, m in catalog.models.items()},
    }
