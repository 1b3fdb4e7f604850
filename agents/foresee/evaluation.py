"""``foresight evaluate models``: progressive validation of the Foresee models.

In process (no Kafka): the records (from the simulator, or a user's recorded JSONL) go
through the real pipeline steps (unified view, audit, foresee) in a :class:`BatchUnit`
with in-memory stores, in event-time order, with one in-process :class:`Learner` that
learns every example the moment its label is known -- what the ``models`` topic does
across workers, minus the publishing delay. Every example carries the score the model
gave at prediction time, before it learned that example: progressive validation.

Labels come from the events themselves (complaints opened, low surveys, port-outs and
closures, offer answers), so the same code scores a user's own history.

Figures per model: ROC AUC and log loss (progressive), precision@k (each day's top-k
snapshots by score), lead time (complaint: first care-list entry within the horizon
before the complaint), and the seeds' baseline: a batch logistic regression refit every
day on all examples labelled so far (numpy IRLS, same features), scored on the next
day's snapshots.
"""

from __future__ import annotations

import base64
import statistics
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from agents.audit import Audit
from agents.foresee.catalog import DAY_MS, Catalog, load_catalog
from agents.foresee.learner import Learner, log_loss, roc_auc
from agents.foresee.step import Foresee
from agents.unified_view import UnifiedView
from schemas.models import ModelExample
from schemas.outputs import CareEntry
from streams.envelope import pack
from streams.unit import BatchUnit, DictStore, system_tables

TOPICS = ("subscriber-state", "call-events", "complaints", "contact-outcomes")


@dataclass
class Replay:
    """What a replay produced."""

    learner: Learner
    examples: list[ModelExample] = field(default_factory=list)
    care: list[Any] = field(default_factory=list)
    hints: int = 0
    events: int = 0
    seconds: float = 0.0
    complaints: list[tuple[str, int]] = field(default_factory=list)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def replay(records: Iterable[tuple[str, str | None, bytes, int]], catalog: Catalog, *,
           with_audit: bool = True, with_foresee: bool = True, partitions: int = 1,
           batch: int = 500, learn: bool = True, restart_after: int | None = None) -> Replay:
    """Run ``records`` (topic, key, value, ts) through the pipeline in process.

    ``restart_after``: after that many events, drop the processing unit and its steps and
    build new ones on the same stores, as a restarted worker restores its tables (state,
    timers, progress) from the changelogs; the learner goes on, as the learner process
    does (its model is on the ``models`` topic)."""
    learner = Learner(catalog)
    out = Replay(learner)

    def on_example(ex: ModelExample) -> None:
        out.examples.append(ex)
        if learn:
            learner.learn(ex)

    def make_steps() -> list[Any]:
        steps: list[Any] = [UnifiedView()]
        if with_audit:
            steps.append(Audit())
        if with_foresee:
            steps.append(Foresee(catalog, learner.store, on_example=on_example,
                                 emit_examples=False,
                                 reads=("unified-view", "audit") if with_audit
                                 else ("unified-view",)))
        return steps

    steps = make_steps()
    stores = {n: DictStore() for n in [s.name for s in steps] + list(system_tables(steps))}
    unit = BatchUnit(steps, stores, worker_id="w-eval", idle_ms=None, cache_keys=1_000_000)
    offsets = [0] * partitions
    pending: dict[int, list[tuple[str, str, bytes, int]]] = {}
    n_pending = 0
    t0 = time.perf_counter()

    def flush() -> None:
        nonlocal n_pending
        for p, rs in sorted(pending.items()):
            by_topic: dict[str, list[tuple[str, bytes, int]]] = {}
            for topic, key, value, ts in rs:
                by_topic.setdefault(topic, []).append((key, value, ts))
            for topic, items in by_topic.items():
                n = len(items)
                unit.process_envelope(pack(topic, p, list(range(offsets[p], offsets[p] + n)),
                                           [i[2] for i in items], [i[0].encode() for i in items],
                                           [i[1] for i in items]))
                offsets[p] += n
        pending.clear()
        n_pending = 0
        commit = unit.snapshot()
        if commit is not None:
            unit.complete(commit)
            for topic, _k, v in commit.outputs:
                if topic == "care-list":
                    out.care.append(CareEntry.model_validate_json(v))
                elif topic == "agent-hints":
                    out.hints += 1

    for topic, key, value, ts in records:
        if topic not in TOPICS or key is None:
            continue
        if topic == "complaints" and b'"opened"' in value and b'"consultation"' not in value:
            d = orjson.loads(value)
            if d.get("stage") == "opened" and d.get("type", "complaint") == "complaint":
                out.complaints.append((key, _ms(d["event_time"])))
        p = zlib.crc32(key.encode()) % partitions
        pending.setdefault(p, []).append((topic, key, value, ts))
        n_pending += 1
        out.events += 1
        if n_pending >= batch:
            flush()
        if restart_after is not None and out.events == restart_after:
            flush()
            unit = BatchUnit(make_steps(), stores, worker_id="w-eval-2", idle_ms=None,
                             cache_keys=1_000_000)
    flush()
    out.seconds = time.perf_counter() - t0
    return out


# --- the seeds' baseline -------------------------------------------------------------
def _fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 25
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch logistic regression (IRLS / Newton) on standardised features."""
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    Z = np.hstack([np.ones((X.shape[0], 1)), (X - mu) / sd])
    w = np.zeros(Z.shape[1])
    reg = l2 * np.eye(Z.shape[1])
    reg[0, 0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -30, 30)))
        g = Z.T @ (p - y) + reg @ w
        H = (Z * (p * (1 - p))[:, None]).T @ Z + reg + 1e-9 * np.eye(Z.shape[1])
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w, mu, sd


def baseline_scores(examples: list[ModelExample], names: tuple[str, ...]) -> list[float]:
    """Daily batch refit (labels known by each day's start), scored on that day's snapshots."""
    if not examples:
        return []
    X = np.array([[e.features.get(n, 0.0) for n in names] for e in examples])
    y = np.array([1.0 if e.label else 0.0 for e in examples])
    at = np.array([e.at_ms for e in examples])
    known = np.array([e.labelled_at_ms for e in examples])
    scores = np.full(len(examples), 0.5)
    day0 = int(at.min() // DAY_MS)
    for day in range(day0, int(at.max() // DAY_MS) + 1):
        start = day * DAY_MS
        todo = (at >= start) & (at < start + DAY_MS)
        if not todo.any():
            continue
        train = known <= start
        if train.sum() < 20 or len(set(y[train])) < 2:
            continue
        w, mu, sd = _fit_logistic(X[train], y[train])
        Z = np.hstack([np.ones((int(todo.sum()), 1)), (X[todo] - mu) / sd])
        scores[todo] = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -30, 30)))
    return [float(s) for s in scores]


def precision_at_k(examples: list[ModelExample], scores: list[float], k: int) -> float | None:
    """Mean over days of the share of positives among the day's top-k snapshots."""
    by_day: dict[int, list[tuple[float, bool]]] = {}
    for e, s in zip(examples, scores, strict=True):
        by_day.setdefault(e.at_ms // DAY_MS, []).append((s, e.label))
    vals = []
    for day in sorted(by_day):
        top = sorted(by_day[day], key=lambda sy: -sy[0])[:k]
        if len(top) >= k:
            vals.append(sum(1 for _, y in top if y) / k)
    return sum(vals) / len(vals) if vals else None


def lead_times(run: Replay, model: str, horizon_ms: int) -> tuple[list[float], int]:
    """Days between the first care-list entry within the horizon before each outcome and
    the outcome (complaint model: complaints opened); and how many outcomes there were."""
    added: dict[str, list[int]] = {}
    for c in run.care:
        if c.model == model and c.status == "added":
            added.setdefault(c.subscriber_id, []).append(int(c.decided_at.timestamp() * 1000))
    leads = []
    for sid, t in run.complaints:
        before = [a for a in added.get(sid, ()) if t - horizon_ms <= a < t]
        if before:
            leads.append((t - min(before)) / DAY_MS)
    return leads, len(run.complaints)


def figures(run: Replay, catalog: Catalog, subscribers: int, warmup_days: float = 7.0
            ) -> dict[str, Any]:
    """Every figure per model (``--json`` writes this)."""
    out: dict[str, Any] = {}
    k = max(5, subscribers // 100)
    first = min((e.at_ms for e in run.examples), default=0)
    end = max((e.labelled_at_ms for e in run.examples), default=0)
    for name, spec in catalog.models.items():
        # progressive figures count from the end of the warm-up: until one horizon has
        # passed, the only labels any model can have seen are positives (negatives are
        # learned when the horizon passes), so its early scores say nothing
        # ... and end one horizon before the stream does: later snapshots can only have
        # been labelled positive so far (their negatives are not due yet)
        warm = first + spec.horizon_ms + warmup_days * DAY_MS
        every = [e for e in run.examples if e.model == name]
        exs = sorted((e for e in every if spec.offer_id or (
            e.at_ms >= warm and e.at_ms + spec.horizon_ms <= end)), key=lambda e: e.at_ms)
        s = [e.score for e in exs]
        y = [e.label for e in exs]
        base_all = baseline_scores(sorted(every, key=lambda e: e.at_ms),
                                   catalog.features_of(name)) if every else []
        by_id = dict(zip((e.example_id for e in sorted(every, key=lambda e: e.at_ms)),
                         base_all, strict=True))
        base = [by_id[e.example_id] for e in exs]
        m: dict[str, Any] = {
            "examples": len(exs), "positives": sum(y), "examples_all": len(every),
            "auc_all": roc_auc([e.score for e in every], [e.label for e in every]),
            "auc": roc_auc(s, y), "logloss": log_loss(s, y),
            "precision_at_k": precision_at_k(exs, s, k), "k": k,
            "baseline_auc": roc_auc(base, y) if base else None,
            "baseline_logloss": log_loss(base, y) if base else None,
            "baseline_precision_at_k": precision_at_k(exs, base, k) if base else None,
            "version": run.learner.store.get(name).version,
            "estimator": spec.estimator,
        }
        if spec.offer_id is None:
            m["care_added"] = sum(1 for c in run.care if c.model == name and c.status == "added")
        if name == "complaint":
            leads, total = lead_times(run, name, spec.horizon_ms)
            m["lead_days_median"] = statistics.median(leads) if leads else None
            m["outcomes"] = total
            m["outcomes_flagged_before"] = len(leads)
        out[name] = m
    return out


def check_targets(figs: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets; each with met True/False."""
    rows = []
    for name in ("complaint", "churn"):
        f = figs.get(name) or {}
        auc, base = f.get("auc"), f.get("baseline_auc")
        rows.append({"target": f"{name} progressive ROC AUC >= 0.85", "value": auc,
                     "met": auc is not None and auc >= 0.85})
        rows.append({"target": f"{name} AUC not below the batch baseline", "value": base,
                     "met": auc is not None and (base is None or auc >= base)})
    lead = (figs.get("complaint") or {}).get("lead_days_median")
    rows.append({"target": "complaint median lead time >= 2 days", "value": lead,
                 "met": lead is not None and lead >= 2.0})
    return rows


def simulate(subscribers: int, days: float, seed: int, precursor_days: float,
             complaint_share: float, churn_share: float) -> list[tuple[str, str, bytes, int]]:
    """The simulator's records of a run, in memory (one epoch over the whole run)."""
    from streams.simulator.config import SimConfig
    from streams.simulator.simulation import Simulation
    from streams.simulator.truthlog import TruthLog

    start = 1_748_736_000_000
    cfg = SimConfig(seed=seed, subscribers=subscribers, start_ms=start,
                    horizon_s=days * 86_400, complaint_share=complaint_share,
                    churn_share=churn_share, precursor_days=precursor_days,
                    faults_per_rule=max(1, subscribers // 500), lookalike_rate=0.5)
    sim = Simulation(cfg, TruthLog(keep=False))
    records = [r for b in sim.bootstrap() for r in b]
    records += [r for b in sim.run(until_ms=start + int(days * DAY_MS)) for r in b
                if r[0] != "network-kpis"]
    sim.finish({})
    return records


def read_jsonl(path: str) -> list[tuple[str, str, bytes, int]]:
    """A recorded history: ``foresight simulate --record`` lines ({topic, key, value,
    timestamp_ms}, kept in their order; broken values stay broken and are dead-lettered
    like on Kafka) or plain events with a ``topic`` field (sorted by event time)."""
    recorded, plain = [], []
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            d = orjson.loads(line)
            topic = d.get("topic")
            if "timestamp_ms" in d and ("value" in d or "value_b64" in d):
                raw = d["value"].encode() if "value" in d else base64.b64decode(d["value_b64"])
                recorded.append((topic, d.get("key"), raw, int(d["timestamp_ms"])))
                continue
            value = {k: v for k, v in d.items() if k != "topic"}
            et = value.get("event_time")
            plain.append((topic, value.get("subscriber_id"), orjson.dumps(value),
                          _ms(et) if isinstance(et, str) else 0))
    plain.sort(key=lambda r: r[3])
    return recorded + plain


def evaluate(records: list[tuple[str, str, bytes, int]], *, subscribers: int,
             estimator: str | None = None) -> dict[str, Any]:
    catalog = load_catalog(estimator=estimator)
    run = replay(records, catalog)
    figs = figures(run, catalog, subscribers)
    return {"mode": "in-process replay through the pipeline steps (unified-view, audit, "
                    "foresee) with one in-process learner; no Kafka",
            "events": run.events, "seconds": round(run.seconds, 2),
            "us_per_event": round(run.seconds / max(1, run.events) * 1e6, 1),
            "care_list_records": len(run.care), "hints": run.hints,
            "models": figs, "targets": check_targets(figs)}
