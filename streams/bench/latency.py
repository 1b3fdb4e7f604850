"""End-to-end latency at half load, followed through dead letters.

Dead letters take exactly the path of valid events (packer, envelope, pipeline, the
transaction that also carries state and progress), and each one carries its input's
Kafka CreateTime (``source_timestamp_ms``). So 1% of inputs are made deliberately invalid
and latency is the time a ``read_committed`` consumer receives the dead letter minus that
timestamp: what a downstream reader of Foresight's outputs actually waits.

The phase runs a fresh worker on fresh topics, waits until it has committed a warm-up
batch (group joined, partitions assigned), then produces at a constant rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.registry import INPUT_TOPICS
from streams.bench import dataset, kafka, procs
from streams.bench.report import percentile
from streams.bench.worker import start_worker, total
from streams.settings import Settings

INVALID_EVERY = 100  # 1% of inputs
WARMUP = 500


class DeadLetterClock(threading.Thread):
    """Reads dead letters (committed only) and records arrival - source CreateTime in ms."""

    def __init__(self, settings: Settings, topic: str, partitions: int, group: str) -> None:
        super().__init__(name="bench-dead-letters", daemon=True)
        self.latencies_ms: list[float] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._consumer = Consumer({
            **settings.kafka_client_config(), "group.id": group,
            "isolation.level": "read_committed", "enable.auto.commit": False,
            "fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 5,
        })
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                msgs = self._consumer.consume(1000, timeout=0.02)
                now_ms = time.time() * 1000.0
                for m in msgs:
                    if m.error() is None and m.value():
                        src = orjson.loads(m.value()).get("source_timestamp_ms")
                        if src is not None:
                            self.latencies_ms.append(now_ms - src)
        except BaseException as exc:
            self.error = exc
        finally:
            self._consumer.close()


def run_latency(base: Settings, *, prefix: str, app_id: str, partitions: int, rate: float,
                seconds: float, records: Sequence[tuple[str, bytes, bytes]], scratch: Path,
                say: Callable[[str], None], timeout: float = 120.0) -> dict[str, Any]:
    """Produce ``rate`` events/s for ``seconds`` (1% invalid) and time their dead letters."""
    settings = kafka.run_settings(base, prefix, partitions)
    kafka.create_topics(settings)
    worker = start_worker(settings, app_id=app_id, worker_id=f"{app_id}-w0",
                          home=scratch / f"{app_id}-w0", log_path=scratch / f"{app_id}.log")
    clock = DeadLetterClock(settings, settings.topic("dead-letters"), partitions, f"{app_id}-dl")
    producer = kafka.bench_producer(settings, **{"linger.ms": 1})
    names = {t: settings.topic(t) for t in INPUT_TOPICS}
    try:
        if not kafka.wait_for(lambda: _alive(worker) and worker.scrape() is not None, timeout):
            raise procs.LineFailed(f"latency: worker never served /metrics; log: {worker.log_tail()}")
        for topic, key, value in records[:WARMUP]:
            producer.produce(names[topic], value, key=key)
        producer.flush(30)
        if not kafka.wait_for(lambda: _alive(worker) and _committed(worker) >= WARMUP,
                              timeout, 0.1):
            raise procs.LineFailed(
                f"latency: warm-up of {WARMUP} events not committed within {timeout:.0f} s "
                f"(saw {_committed(worker):.0f}); log: {worker.log_tail()}")
        clock.start()
        say(f"latency: producing {rate:,.0f} events/s for {seconds:.0f} s, 1% invalid")
        sent, invalid, elapsed = _paced(producer, names, records, rate, seconds, _alive_check(worker))
        producer.flush(30)
        kafka.wait_for(lambda: len(clock.latencies_ms) >= invalid or not clock.is_alive(), 30, 0.1)
        lat = list(clock.latencies_ms)
        series = worker.scrape() or {}
        envelopes = total(series, "foresight_envelopes_total")
        committed = total(series, "foresight_committed_records_total")
        result: dict[str, Any] = {
            "rate": rate, "load": None, "seconds": seconds, "produced": sent, "achieved_rate": sent / elapsed,
            "expected": invalid, "count": len(lat), "committed": int(committed),
            "commits": int(total(series, "foresight_commits_total")),
            "avg_envelope_events": committed / envelopes if envelopes else None,
        }
        if lat:
            q = max(1, len(lat) // 4)  # arrival order: a growing backlog shows as a rising p50
            result.update(p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99), max_ms=max(lat),
                          min_ms=min(lat), p50_first_quarter_ms=percentile(lat[:q], 50),
                          p50_last_quarter_ms=percentile(lat[-q:], 50))
        if clock.error is not None:
            result["error"] = f"dead-letter consumer failed: {clock.error!r}"
        elif len(lat) != invalid:
            result["error"] = f"received {len(lat)} dead letters, expected {invalid}"
        return result
    finally:
        clock.stop_event.set()
        if clock.is_alive():
            clock.join(10)
        procs.stop(worker.proc, grace=20.0)


def _paced(producer: Any, names: dict[str, str], records: Sequence[tuple[str, bytes, bytes]],
           rate: float, seconds: float, check: Callable[[], None]) -> tuple[int, int, float]:
    """Produce on a schedule (catching up every ~2 ms); every 100th value is invalid."""
    n = len(records)
    i = WARMUP
    sent = invalid = 0
    start = time.monotonic()
    next_check = start
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= seconds:
            break
        due = int(rate * elapsed)
        while sent < due:
            topic, key, value = records[i % n]
            i += 1
            sent += 1
            if sent % INVALID_EVERY == 0:
                value = dataset.invalid_event(sent)
                invalid += 1
            kafka.produce_one(producer, names[topic], value, key, wait_s=0.005)
        producer.poll(0)
        if now >= next_check:
            next_check = now + 1.0
            check()
        time.sleep(0.002)
    return sent, invalid, time.monotonic() - start


def _committed(worker: Any) -> float:
    series = worker.scrape()
    return total(series or {}, "foresight_committed_records_total")


def _alive(worker: Any) -> bool:
    if worker.proc.poll() is not None:
        raise procs.LineFailed(f"latency: worker exited with code {worker.proc.returncode}; "
                               f"log: {worker.log_tail()}")
    return True


def _alive_check(worker: Any) -> Callable[[], None]:
    return lambda: _alive(worker) and None


def run_sweep(base: Settings, *, rates: Sequence[float], seconds: float, repeat: int,
              partitions: int, subscribers: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """``run_latency`` at each rate (``repeat`` times, round-robin), each on fresh topics
    and a fresh worker, so an operator sees where latency starts to grow with load."""
    need = int(max(rates) * seconds) + WARMUP + 1
    records = list(dataset.events(need, subscribers))
    results: list[dict[str, Any]] = []
    for k in range(repeat):
        for rate in rates:
            with kafka.fresh_run(base, "fsl", partitions, say) as (tag, scratch):
                say(f"latency at {rate:,.0f} events/s, run {k + 1}/{repeat} ({tag})")
                try:
                    r = run_latency(base, prefix=f"{base.topic_prefix}{tag}.", app_id=tag,
                                    partitions=partitions, rate=rate, seconds=seconds,
                                    records=records, scratch=scratch, say=say)
                except procs.LineFailed as exc:
                    r = {"rate": rate, "error": str(exc)}
            results.append(r)
            say(format_row(r))
    return results


def format_row(r: dict[str, Any]) -> str:
    """One result as a table row.

    >>> format_row({"rate": 3000, "achieved_rate": 2999.7, "count": 599, "expected": 599,
    ...             "p50_ms": 77.8, "p99_ms": 129.5, "max_ms": 169.1, "p50_first_quarter_ms": 79.1,
    ...             "p50_last_quarter_ms": 77.7, "avg_envelope_events": 10.9, "commits": 406})
    '| 3,000 | 599/599 | 78 | 130 | 169 | 79 → 78 | 10.9 | 406 |'
    """
    if r.get("error") and "p50_ms" not in r:
        return f"| {r['rate']:,.0f} | FAILED: {r['error']} | | | | | | |"
    env = r.get("avg_envelope_events") or 0.0
    row = (f"| {r['rate']:,.0f} | {r['count']}/{r['expected']} | {r['p50_ms']:.0f} | "
           f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['p50_first_quarter_ms']:.0f} → "
           f"{r['p50_last_quarter_ms']:.0f} | {env:.1f} | {r.get('commits', 0)} |")
    return row + (f" {r['error']}" if r.get("error") else "")


def format_sweep(results: Sequence[dict[str, Any]], seconds: float) -> str:
    """The sweep as a markdown table (p50 first → last quarter: a rise means a backlog)."""
    head = (f"end-to-end latency, produce → committed dead letter, {seconds:.0f} s per run (ms)\n"
            "| events/s | dead letters | p50 | p99 | max | p50 first → last quarter "
            "| events/envelope | commits |\n|---:|---:|---:|---:|---:|---:|---:|---:|")
    return "\n".join([head, *(format_row(r) for r in results)])
