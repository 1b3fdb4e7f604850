"""Contact-policy decision latency: request produced -> decision readable (``read_committed``).

Per rate: a fresh worker (default pipeline, which includes ``contact-policy``) on fresh
topics, a warm-up of ingest events, then, for ``seconds``, contact requests at the rate
beside a constant ingest load (the bench dataset's subscriber-state and call events).
Each request has a unique id and is timed from just before ``produce`` to the moment a
``read_committed`` consumer of ``contact-decisions`` receives its decision: what a
campaign system waiting for the answer sees. Worker settings come from the environment
or ``--env`` (``FORESIGHT_BATCH_LINGER_MS``, ``FORESIGHT_COMMIT_INTERVAL_MS``...).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.registry import CONTACT_DECISIONS, CONTACT_REQUESTS
from streams.bench import dataset, kafka, procs
from streams.bench.report import percentile
from streams.bench.worker import start_worker, total
from streams.settings import Settings

WARMUP = 500
CHANNELS = ("telemarketing", "sms", "app_push", "ivr")


class DecisionClock(threading.Thread):
    """Reads committed decisions; records arrival - produce time per request id (ms)."""

    def __init__(self, settings: Settings, partitions: int, group: str,
                 sent: dict[str, float]) -> None:
        super().__init__(name="bench-decisions", daemon=True)
        self.sent = sent
        self.latencies_ms: list[float] = []
        self.decisions: dict[str, int] = {}
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._c = Consumer({**settings.kafka_client_config(), "group.id": group,
                            "isolation.level": "read_committed", "enable.auto.commit": False,
                            "fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 5})
        self._c.assign([TopicPartition(settings.topic(CONTACT_DECISIONS), p, OFFSET_BEGINNING)
                        for p in range(partitions)])

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                msgs = self._c.consume(1000, timeout=0.02)
                now_ms = time.time() * 1000.0
                for m in msgs:
                    if m.error() is None and m.value():
                        d = orjson.loads(m.value())
                        rid = d["request_id"]
                        self.decisions[d["decision"]] = self.decisions.get(d["decision"], 0) + 1
                        t = self.sent.get(rid)
                        if t is not None:
                            self.latencies_ms.append(now_ms - t)
        except BaseException as exc:
            self.error = exc
        finally:
            self._c.close()


def _request(i: int, tag: str, subscribers: int) -> tuple[str, bytes, bytes]:
    sid = f"S{(i * 7919) % subscribers:08d}"
    rid = f"{tag}-{i}"
    value = orjson.dumps({
        "schema_version": 1, "event_id": f"ev-{rid}", "kind": "contact_request",
        "event_time": datetime.now(UTC).isoformat(), "request_id": rid, "subscriber_id": sid,
        "msisdn": f"86138{i % 100_000_000:08d}", "campaign_id": "CMP-BENCH",
        "purpose": "marketing" if i % 4 else "service", "channel": CHANNELS[i % 4]})
    return rid, sid.encode(), value


def run_contact_latency(base: Settings, *, prefix: str, app_id: str, partitions: int,
                        rate: float, ingest_rate: float, seconds: float,
                        records: Sequence[tuple[str, bytes, bytes]], subscribers: int,
                        scratch: Any, say: Callable[[str], None],
                        env: dict[str, str] | None = None,
                        timeout: float = 120.0) -> dict[str, Any]:
    settings = kafka.run_settings(base, prefix, partitions)
    kafka.create_topics(settings)
    worker = start_worker(settings, app_id=app_id, worker_id=f"{app_id}-w0",
                          home=scratch / f"{app_id}-w0", log_path=scratch / f"{app_id}.log",
                          env_extra=env)
    sent: dict[str, float] = {}
    clock = DecisionClock(settings, partitions, f"{app_id}-decisions", sent)
    producer = kafka.bench_producer(settings, **{"linger.ms": 1})
    req_topic = settings.topic(CONTACT_REQUESTS)
    names = {t: settings.topic(t) for t in {r[0] for r in records}}
    try:
        if not kafka.wait_for(lambda: worker.proc.poll() is None and worker.scrape() is not None,
                              timeout):
            raise procs.LineFailed(f"contact: worker never served /metrics: {worker.log_tail()}")
        for topic, key, value in records[:WARMUP]:
            producer.produce(names[topic], value, key=key)
        producer.flush(30)
        if not kafka.wait_for(lambda: total(worker.scrape() or {},
                                            "foresight_committed_records_total") >= WARMUP,
                              timeout, 0.1):
            raise procs.LineFailed(f"contact: warm-up not committed: {worker.log_tail()}")
        clock.start()
        say(f"contact: {rate:,.0f} requests/s beside {ingest_rate:,.0f} ingest events/s "
            f"for {seconds:.0f} s")
        tag = uuid.uuid4().hex[:6]
        start = time.monotonic()
        n_req = n_ing = 0
        j = WARMUP
        while (elapsed := time.monotonic() - start) < seconds:
            while n_req < int(rate * elapsed):
                rid, key, value = _request(n_req, tag, subscribers)
                sent[rid] = time.time() * 1000.0
                kafka.produce_one(producer, req_topic, value, key, wait_s=0.005)
                n_req += 1
            while n_ing < int(ingest_rate * elapsed):
                topic, key, value = records[j % len(records)]
                j += 1
                kafka.produce_one(producer, names[topic], value, key, wait_s=0.005)
                n_ing += 1
            producer.poll(0)
            if worker.proc.poll() is not None:
                raise procs.LineFailed(f"contact: worker exited: {worker.log_tail()}")
            time.sleep(0.002)
        achieved = n_req / (time.monotonic() - start)
        producer.flush(30)
        kafka.wait_for(lambda: len(clock.latencies_ms) >= n_req or not clock.is_alive(), 60, 0.1)
        lat = list(clock.latencies_ms)
        series = worker.scrape() or {}
        result: dict[str, Any] = {
            "rate": rate, "ingest_rate": ingest_rate, "seconds": seconds, "requests": n_req,
            "achieved_rate": achieved, "decisions": len(lat), "by_decision": dict(clock.decisions),
            "commits": int(total(series, "foresight_commits_total")), "env": env or {}}
        if lat:
            q = max(1, len(lat) // 4)
            result.update(p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99),
                          max_ms=max(lat), p50_first_quarter_ms=percentile(lat[:q], 50),
                          p50_last_quarter_ms=percentile(lat[-q:], 50))
        if len(lat) != n_req:
            result["error"] = f"received {len(lat)} decisions for {n_req} requests"
        return result
    finally:
        clock.stop_event.set()
        if clock.is_alive():
            clock.join(10)
        procs.stop(worker.proc, grace=20.0)


def run_contact_sweep(base: Settings, *, rates: Sequence[float], ingest_rate: float,
                      seconds: float, partitions: int, subscribers: int,
                      say: Callable[[str], None],
                      env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    need = int(ingest_rate * seconds) + WARMUP + 1
    records = [r for r in dataset.events(need, subscribers)]
    results = []
    for rate in rates:
        with kafka.fresh_run(base, "fsc", partitions, say) as (tag, scratch):
            try:
                r = run_contact_latency(base, prefix=f"{base.topic_prefix}{tag}.", app_id=tag,
                                        partitions=partitions, rate=rate,
                                        ingest_rate=ingest_rate, seconds=seconds,
                                        records=records, subscribers=subscribers,
                                        scratch=scratch, say=say, env=env)
            except procs.LineFailed as exc:
                r = {"rate": rate, "error": str(exc)}
        results.append(r)
        say(format_row(r))
    return results


def format_row(r: dict[str, Any]) -> str:
    """One rate as a markdown row."""
    if "p50_ms" not in r:
        return f"| {r['rate']:,.0f} | FAILED: {r.get('error')} | | | | |"
    return (f"| {r['rate']:,.0f} | {r['ingest_rate']:,.0f} | {r['decisions']}/{r['requests']} | "
            f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} | "
            f"{r['p50_first_quarter_ms']:.0f} → {r['p50_last_quarter_ms']:.0f} |"
            + (f" {r['error']}" if r.get("error") else ""))
