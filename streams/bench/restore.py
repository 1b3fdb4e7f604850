"""``foresight bench restore``: time and memory to restore N subscribers' unified views.

Answers "memory and restore time for 1 million subscribers are measured and reported".
The states are real: each is built with :func:`agents.unified_view.new_view` and
:func:`~agents.unified_view.apply_event` from a few validated ``subscriber-state`` events,
encoded with orjson, and written to the table's compacted changelog topic in Kafka
transactions by a confluent-kafka transactional producer partitioning by key, as the
worker's committer does. Each backend is then restored by
:func:`streams.store.restore_partition` in a **fresh process**, so the RSS growth it
reports is the state's and the consumer's, not left-overs of building the data.
"""

from __future__ import annotations

import gc
import json
import random
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streams.bench import dataset, kafka, procs
from streams.bench.lines import peak_rss
from streams.settings import Settings

TABLE = "unified-view"
TXN_RECORDS = 5_000
EXTRA_KINDS = ("charged", "charged", "topped_up", "product_ordered", "product_provisioned",
               "profile_changed", "balance_reported", "granted", "plan_changed", "suspended")


@dataclass(frozen=True)
class RestoreOptions:
    subscribers: int = 1_000_000
    stores: tuple[str, ...] = ("memory", "rocksdb")
    json_out: Path | None = None
    keep: bool = False
    timeout: float = 1800.0


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def build_views(subscribers: int, seed: int = dataset.DEFAULT_SEED) -> Any:
    """Yield ``(key, value)``: each subscriber's unified view after 3 to 6 real events."""
    from agents.unified_view import apply_event, new_view
    from schemas.registry import SUBSCRIBER_STATE, decode

    rng = random.Random(seed)
    i = 0
    for sub in range(subscribers):
        sid = dataset.subscriber_id(sub)
        view = new_view(sid, dataset.msisdn(sub))
        kinds = ["opened", "activated", *rng.sample(EXTRA_KINDS, rng.randint(1, 4))]
        for kind in kinds:
            raw = orjson.dumps(dataset.state_event(rng, i, sub, kind))
            apply_event(view, decode(SUBSCRIBER_STATE, raw))
            i += 1
        yield sid.encode(), orjson.dumps(view)


def write_changelog(settings: Settings, topic: str, subscribers: int, tag: str) -> dict[str, Any]:
    """Produce the states transactionally (``TXN_RECORDS`` per transaction); return sizes."""
    from confluent_kafka import Producer

    p = Producer({**settings.kafka_client_config(), "transactional.id": f"{tag}-restore-writer",
                  "enable.idempotence": True, "linger.ms": 2, "batch.num.messages": 10_000,
                  "queue.buffering.max.kbytes": 1_048_576, "compression.type": "lz4",
                  "partitioner": "murmur2_random"})
    p.init_transactions(60)
    n = value_bytes = 0
    started = time.monotonic()
    p.begin_transaction()
    for key, value in build_views(subscribers):
        kafka.produce_one(p, topic, value, key)
        n += 1
        value_bytes += len(value)
        if n % TXN_RECORDS == 0:
            p.commit_transaction(60)
            p.begin_transaction()
        if n % 100_000 == 0:
            say(f"built and wrote {n:,} states ({time.monotonic() - started:.0f} s)")
    p.commit_transaction(60)
    return {"records": n, "value_bytes": value_bytes, "avg_value_bytes": value_bytes / max(n, 1),
            "transactions": -(-n // TXN_RECORDS), "write_seconds": time.monotonic() - started}


def _rss() -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) * 1024
    return 0


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class NullBackend:
    """Keeps nothing: restoring into it measures the consumer alone (``--store none``)."""

    def __init__(self) -> None:
        self.offset: int | None = None
        self.data: dict[str, bytes] = {}

    def write(self, items: Any, offset: int | None) -> None:
        for _ in items:
            pass
        if offset is not None:
            self.offset = offset

    def __len__(self) -> int:
        return 0


def _backend(kind: str, path: Path) -> Any:
    from streams.store import MemoryBackend, RocksBackend

    if kind == "memory":
        return MemoryBackend()
    if kind == "rocksdb":
        return RocksBackend(path)
    return NullBackend()


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Restore every partition into one backend; measure time and memory (child side)."""
    from confluent_kafka import Consumer

    from streams.store import restore_consumer_config, restore_partition

    workdir = Path(cfg["workdir"])
    # security settings come from this process's environment (FORESIGHT_SASL_*, ...), never
    # from argv, where every local user could read a password
    client = Settings(bootstrap_servers=cfg["bootstrap"]).kafka_client_config()
    consumer = Consumer(restore_consumer_config(client, cfg["group"]))  # as the worker's
    gc.collect()
    before = _rss()
    parts: dict[int, Any] = {}
    records = 0
    started = time.perf_counter()
    for p in range(cfg["partitions"]):
        part = _backend(cfg["backend"], workdir / f"p{p}")
        parts[p] = part
        records += restore_partition(consumer, cfg["topic"], p, 0, part)
        procs.emit_progress(records)
    seconds = time.perf_counter() - started
    after = _rss()
    consumer.close()
    gc.collect()
    settled = _rss()
    if cfg["backend"] != "rocksdb":
        keys = sum(len(part) for part in parts.values())
        state_bytes = sum(len(k) + len(v) for part in parts.values() for k, v in part.data.items())
        disk = 0
    else:
        keys = sum(len(part) for part in parts.values())
        state_bytes = sum(len(k) + len(v) for part in parts.values() for k, v in part.items())
        for part in parts.values():
            part.close()
        disk = _dir_bytes(workdir)
    return {"backend": cfg["backend"], "records": records, "keys": keys, "seconds": seconds,
            "rate": records / seconds if seconds > 0 else 0.0,
            "rss_before_bytes": before, "rss_after_bytes": after, "rss_settled_bytes": settled,
            "rss_growth_bytes": after - before, "rss_growth_settled_bytes": settled - before,
            "peak_rss_bytes": peak_rss(),
            "state_bytes": state_bytes, "disk_bytes": disk}


def run_restore(base: Settings, opts: RestoreOptions) -> int:
    """Write the changelog once, restore it into each backend, print the table."""
    from streams.bench.report import machine_info
    from streams.topics import changelog_topic, topic_specs

    tag = "fsb" + uuid.uuid4().hex[:8]
    settings = kafka.run_settings(base, f"{base.topic_prefix}{tag}.", base.partitions,
                                  app_id=f"{tag}-restore")
    topic = changelog_topic(settings, TABLE)
    scratch = (base.home / "bench" / tag).resolve()
    info = machine_info(settings.brokers, None)
    results: list[dict[str, Any]] = []
    written: dict[str, Any] = {}
    try:
        _create(settings, next(s for s in topic_specs(settings, (TABLE,)) if s.name == topic))
        say(f"building {opts.subscribers:,} unified views and writing them to {topic} "
            f"({settings.partitions} partitions, {TXN_RECORDS:,} records per transaction)")
        written = write_changelog(settings, topic, opts.subscribers, tag)
        for backend in opts.stores:
            workdir = scratch / backend
            workdir.mkdir(parents=True, exist_ok=True)
            cfg = {"backend": backend, "bootstrap": settings.brokers, "topic": topic,
                   "partitions": settings.partitions, "workdir": str(workdir),
                   "group": f"{tag}-restore-{backend}"}
            say(f"restoring into {backend}")
            c = procs.Child(f"restore-{backend}",
                            [sys.executable, "-m", "streams.bench.restore", json.dumps(cfg)],
                            expected=written["records"],
                            on_progress=lambda name, n, e: say(f"{name}: {n:,}/{e:,} records"))
            try:
                results.append(c.wait(opts.timeout))
            except procs.LineFailed as exc:
                results.append({"backend": backend, "error": str(exc)})
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        procs.kill_all()
        if not opts.keep:
            kafka.cleanup(settings, tag, say)
        shutil.rmtree(scratch, ignore_errors=True)
    print(render(opts, settings, written, results, info))
    if opts.json_out is not None:
        opts.json_out.write_text(json.dumps({"run": tag, "machine": info, "written": written,
                                             "results": results}, indent=2) + "\n")
    return 0 if results and all("error" not in r for r in results) else 1


def _create(settings: Settings, spec: Any) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    adm = AdminClient(settings.kafka_client_config())
    fut = adm.create_topics([NewTopic(spec.name, num_partitions=settings.partitions,
                                      replication_factor=settings.replication_factor,
                                      config=spec.config)])[spec.name]
    fut.result(timeout=60)


def render(opts: RestoreOptions, settings: Settings, written: dict[str, Any],
           results: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The restore table: rate, time, memory growth and state size per backend."""
    mb = 2**20
    out = ["", f"foresight bench restore: {written.get('records', 0):,} unified-view states "
           f"(avg {written.get('avg_value_bytes', 0):.0f} B, {written.get('value_bytes', 0) / mb:,.0f} MB "
           f"of values) in {settings.partitions} partitions, written in "
           f"{written.get('transactions', 0):,} transactions in {written.get('write_seconds', 0):.0f} s", "",
           f"{'store':8} {'records':>10} {'seconds':>8} {'records/s':>10} {'RSS growth MB':>14} "
           f"{'settled MB':>11} {'peak RSS MB':>12} {'state MB':>9} {'on disk MB':>11}"]
    for r in results:
        if "error" in r:
            out.append(f"{r['backend']:8} FAILED: {r['error']}")
            continue
        out.append(f"{r['backend']:8} {r['records']:>10,} {r['seconds']:>8.2f} {r['rate']:>10,.0f} "
                   f"{r['rss_growth_bytes'] / mb:>14,.0f} {r['rss_growth_settled_bytes'] / mb:>11,.0f} "
                   f"{r['peak_rss_bytes'] / mb:>12,.0f} {r['state_bytes'] / mb:>9,.0f} "
                   f"{(r['disk_bytes'] / mb) if r['disk_bytes'] else 0:>11,.0f}")
    out += ["", "RSS growth: VmRSS after restore minus before (consumer still open); settled: after "
            "closing the consumer; state: key + value bytes held",
            f"machine: {info['cpu']}, {info['cores']} cores, load {info['load_avg_1m']:.2f}; "
            f"Python {info['python']}; date {info['date']}"]
    return "\n".join(out)


if __name__ == "__main__":
    procs.emit_result(child(json.loads(sys.argv[1])))
