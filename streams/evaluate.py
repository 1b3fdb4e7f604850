"""``foresight evaluate audit``: the audit, end to end on Kafka, scored against ground truth.

Runs a fresh worker and the simulator (with many injected inconsistencies of every rule)
on fresh topics, collects every alert with a ``read_committed`` consumer and every
``subscriber-state`` record's event time and CreateTime, then scores recall, precision,
resolution and the delay beyond grace per rule (:mod:`streams.scoring`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson

from streams.scoring import ClockIndex, HintSeen, Seen, percentile, score, table, targets, totals

FORESIGHT = str(Path(sys.executable).parent / "foresight")


def register(sub: Any, common: Any) -> None:
    p = sub.add_parser(
        "evaluate", help="score a capability end to end against the simulator's ground truth",
        description="Run a worker and the simulator with injected faults on fresh topics and "
        "score what the worker emitted against the ground truth.")
    p.add_argument("what", choices=["audit", "suppression", "models"],
                   help="the capability to evaluate (suppression: the contact policy, "
                   "replayed in-process, see streams/evaluate_suppression.py; models: the "
                   "Foresee models, in process, docs/foresee.md)")
    p.add_argument("--subscribers", type=int, default=10_000, help="simulated population (10000)")
    p.add_argument("--faults-per-rule", type=int, default=40,
                   help="injected faults per audit rule (40)")
    p.add_argument("--duration", type=float, default=150.0,
                   help="wall seconds of simulated traffic (150)")
    p.add_argument("--speed", type=float, default=120.0,
                   help="simulated seconds per wall second (120: 5 simulated hours)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--invalid-rate", type=float,
                   help="share of deliberately broken records (simulator default 0.001)")
    p.add_argument("--json", type=Path, help="write the per-rule figures here")
    p.add_argument("--keep", action="store_true", help="keep the run's topics")
    from streams.evaluate_suppression import register_args
    register_args(p)   # --days: models simulate 90 days unless given another number
    p.add_argument("--events", type=Path,
                   help="models: a recorded history (JSONL) instead of the simulator")
    p.add_argument("--estimator", choices=["logistic", "arf", "hat"],
                   help="models: override every model's estimator")
    common(p)
    p.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    if args.what == "models":
        from streams.models_command import run_evaluate_models
        return run_evaluate_models(args)
    return run_evaluate(args)


class _Collector(threading.Thread):
    """Reads a topic from the beginning (committed records only) until stopped."""

    def __init__(self, settings: Any, topic: str, handle: Any) -> None:
        super().__init__(daemon=True, name=f"collect-{topic}")
        from confluent_kafka import Consumer

        self.handle = handle
        self.stop_event = threading.Event()
        self.count = 0
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self._c = Consumer({**settings.kafka_client_config(),
                            "group.id": f"{settings.app_id}-eval-{topic}",
                            "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                            "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        # assigned, not subscribed: no group join that could delay (and so inflate) arrivals
        self._c.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                        for p in range(settings.partitions)])

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                for m in self._c.consume(2000, 0.05):
                    if m.error() is None:
                        self.handle(m, time.time() * 1000.0)
                        self.count += 1
        finally:
            self._c.close()


def run_evaluate(args: argparse.Namespace) -> int:
    if args.what == "suppression":
        from streams.evaluate_suppression import run_suppression
        return run_suppression(args)
    from agents.audit.catalog import load_catalog
    from streams.cli import ensure_broker, settings_from
    from streams.simulator.runner import future_allowance_s
    from streams.simulator.truth import Inconsistency, Summary, load_truth
    from streams.topics import ensure_topics

    stamp = time.strftime("%Y%m%d%H%M%S")
    base = settings_from(args)
    settings = base.model_copy(update={"topic_prefix": f"eval-{stamp}.",
                                       "app_id": f"eval-{stamp}"})
    run_dir = Path(settings.home).resolve() / "evaluate" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(f"[evaluate] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    started_kafka = ensure_broker(settings)
    ensure_topics(settings)
    catalog = load_catalog(settings.audit_rules)
    grace = {r.id: r.for_ms for r in catalog.rules if r.technician}
    lateness = {r.id: r.lateness_ms if r.lateness_ms is not None else settings.timer_lateness_ms
                for r in catalog.rules}
    settle = {r.id: r.settle_ms if r.settle_ms is not None else lateness[r.id]
              for r in catalog.rules}

    alerts: list[Seen] = []
    hints: list[HintSeen] = []
    clock = ClockIndex()

    def on_alert(m: Any, arrival: float) -> None:
        a = orjson.loads(m.value())
        alerts.append(Seen(arrival, a["fingerprint"], a["sequence"], a["status"], a["rule_id"],
                           a["subscriber_id"], a["labels"].get("item"), _ms(a["starts_at"]),
                           _ms(a["ends_at"]) if a.get("ends_at") else None))

    def on_hint(m: Any, _arrival: float) -> None:
        h = orjson.loads(m.value())
        hints.append(HintSeen(h["hint_id"], h["sequence"], h["active"],
                              h["source"].removeprefix("audit:"), h["subscriber_id"]))

    def on_dead(m: Any, _arrival: float) -> None:
        d = orjson.loads(m.value())
        if d.get("source_topic") == "subscriber-state":
            clock.reject(d["source_partition"], d["source_offset"])

    def on_state(m: Any, _arrival: float) -> None:
        # a cheap look here (the worker runs beside us); what the worker rejected is taken
        # out after the run, from its dead letters
        value = m.value()
        if not value or m.key() is None:
            return
        with suppress(ValueError, KeyError, TypeError, AttributeError):
            t = _aware_ms(orjson.loads(value)["event_time"])
            if t is not None:
                clock.add(m.partition(), m.offset(), m.key().decode(), t, m.timestamp()[1])

    env = {**os.environ, "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
           "FORESIGHT_APP_ID": settings.app_id, "FORESIGHT_HOME": str(run_dir),
           "FORESIGHT_PARTITIONS": str(settings.partitions), "FORESIGHT_WEB_PORT": str(_port()),
           "FORESIGHT_WORKER_ID": f"eval-{stamp}", "KAFKA_BOOTSTRAP_SERVERS": settings.brokers}
    # the simulated clock runs ahead of the wall clock: the worker accepts its events
    allowance = future_allowance_s(args.speed, args.duration)
    if allowance is not None:
        env["FORESIGHT_EVENT_TIME_MAX_FUTURE_S"] = str(allowance)
    procs: list[subprocess.Popen] = []
    collectors = [_Collector(settings, settings.topic("alerts"), on_alert),
                  _Collector(settings, settings.topic("agent-hints"), on_hint),
                  _Collector(settings, settings.topic("dead-letters"), on_dead),
                  _Collector(settings, settings.topic("subscriber-state"), on_state)]
    truth_path = run_dir / "truth.jsonl"
    try:
        for c in collectors:
            c.start()
        worker = _spawn([FORESIGHT, "worker"], env, run_dir / "worker.log")
        procs.append(worker)
        say(f"worker started; simulating {args.subscribers:,} subscribers for "
            f"{args.duration:.0f}s at speed {args.speed:g} with {args.faults_per_rule} faults/rule")
        sim = _spawn([FORESIGHT, "simulate", "--seed", str(args.seed), "--subscribers",
                      str(args.subscribers), "--speed", str(args.speed), "--rate", "0",
                      "--duration", str(args.duration), "--faults-per-rule",
                      str(args.faults_per_rule), "--truth", str(truth_path),
                      # look-alikes of for: 0s rules clear within half the lateness the
                      # worker allows: tell the simulator what that is
                      "--lateness", f"{settings.timer_lateness_ms / 1000:g}",
                      *(["--invalid-rate", str(args.invalid_rate)]
                        if args.invalid_rate is not None else [])],
                     env, run_dir / "simulator.log")
        procs.append(sim)
        if sim.wait() != 0:
            say(f"the simulator failed; see {run_dir / 'simulator.log'}")
            return 1
        records = load_truth(truth_path)
        summary = next(r for r in reversed(records) if isinstance(r, Summary))
        say(f"simulator done: {summary.records:,} records; waiting for the worker to finish")
        port = int(env["FORESIGHT_WEB_PORT"])
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and _committed(port) < summary.records:
            time.sleep(1.0)
        time.sleep(3.0)  # the last commits' alerts reach the collector
    finally:
        for c in collectors:
            c.stop_event.set()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
                if proc.poll() is None:
                    proc.kill()
        for c in collectors:
            c.join(10)
        if not args.keep:
            from streams.demo import delete_run

            delete_run(settings, "evaluate")
        if started_kafka:
            from streams.kafka_local import LocalKafka

            LocalKafka.from_settings(settings).stop()
    clock.freeze()
    truth = [r for r in records if isinstance(r, Inconsistency)]
    # a fault due within its rule's margin of the end was not decided when the run stopped
    margin = {rule: g // 4 + 60_000 for rule, g in grace.items()}
    late = settings.timer_lateness_ms
    scores = score(truth, alerts, grace, horizon_end_ms=_ms(summary.end.isoformat()),
                   margin_ms=margin, lateness_ms=late, clock=clock, hints=hints,
                   settle_ms=settle)
    print(table(scores))
    all_ = totals(scores)
    p50, p99 = percentile(all_.delays_ms, 0.5), percentile(all_.delays_ms, 0.99)
    print(f"\nrecall {all_.recall:.2%}, precision {all_.precision:.2%} ({all_.lookalikes} "
          f"look-alikes, {all_.on_lookalikes} fired on), hints withdrawn within their settle "
          f"time {all_.hints_withdrawn_early} of {all_.hints}, delay beyond grace "
          f"p50 {(p50 or 0) / 1000:.2f}s p99 {(p99 or 0) / 1000:.2f}s "
          f"over {len(all_.delays_ms)} alerts; {len(alerts)} alert records, {len(hints)} hint "
          f"records, {len(clock.rejected)} dead-lettered state records kept off the clock, "
          f"{summary.records:,} input records; truth and logs in {run_dir}")
    for delay, sub, due, passed, arrival in all_.slowest[:5]:
        print(f"  slowest: {delay / 1000:.2f}s {sub} due {_iso(due)} passed at {_iso(passed)} "
              f"(wall) alert at {_iso(arrival)} (wall)")
    missed = targets(scores, lateness_ms=late)
    if args.json:
        args.json.write_text(json.dumps({
            "lateness_ms": late, "settle_ms": settle, "records": summary.records,
            "targets": {"recall": 0.995, "precision": 0.995, "hints_withdrawn_early": 0,
                        "delay_p99_ms": late + 2_000},
            "missed": missed, "met": not missed,
            "rules": {rule: {
                "faults": s.expected, "lookalikes": s.lookalikes, "alerts": s.alerts,
                "matched": s.matched, "fired_on_lookalikes": s.on_lookalikes,
                "recall": s.recall, "precision": s.precision,
                "resolved": [s.resolved_ok, s.resolved_expected], "hints": s.hints,
                "hints_withdrawn": s.hints_withdrawn,
                "hints_withdrawn_within_settle": s.hints_withdrawn_early,
                "delay_p50_ms": percentile(s.delays_ms, 0.5),
                "delay_p99_ms": percentile(s.delays_ms, 0.99)}
                for rule, s in [*scores.items(), ("ALL", all_)]}}, indent=2))
    print(f"targets (per rule: recall >= 99.5%, precision >= 99.5% counting look-alikes, "
          f"0 hints withdrawn within their settle time; delay beyond grace p99 <= "
          f"{(late + 2000) / 1000:g} s): {'met' if not missed else 'MISSED'}")
    for line in missed:
        print(f"  missed: {line}")
    return 0 if not missed else 1


def _aware_ms(iso: str) -> int | None:
    """Epoch ms of a zoned ISO time; None for a zone-less one (the worker rejects it)."""
    from datetime import datetime

    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return None if dt.tzinfo is None else int(dt.timestamp() * 1000)


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _iso(ms: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _committed(port: int) -> float:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith("foresight_committed_records_total"))
