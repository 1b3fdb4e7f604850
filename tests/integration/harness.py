"""Helpers for integration tests: real worker processes against the real broker."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.demo import scrape_metrics
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FORESIGHT = str(Path(sys.executable).parent / "foresight")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Worker:
    proc: subprocess.Popen
    port: int
    log: Path

    def metrics(self) -> dict[str, float]:
        return scrape_metrics(self.port)

    def progress(self) -> dict[str, Any]:
        """The worker's cheap ``/progress`` counters (processed, committed, pending...)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/progress", timeout=2) as r:
            return orjson.loads(r.read())

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flush, no commit."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> float:
        """SIGTERM; wait for the exit and return how long it took (seconds)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - started

    def packer_pid(self) -> int:
        """PID of the worker's packer child process."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        for pid in children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:  # not the resource tracker
                return int(pid)
        raise AssertionError(f"no packer child among {children}")

    def log_lines(self, level: str) -> list[str]:
        """Lines of the worker's log at ``level`` (ERROR, WARNING...)."""
        marks = (f"[{level}]", f" {level} ")
        return [ln for ln in self.log.read_text(errors="replace").splitlines()
                if any(m in ln for m in marks)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def start_worker(settings: Settings, *, worker_id: str, reference: bool = False,
                 env: dict[str, str] | None = None) -> Worker:
    port = free_port()
    log = settings.home / f"worker-{worker_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
                "FORESIGHT_APP_ID": settings.app_id, "FORESIGHT_HOME": str(settings.home),
                "FORESIGHT_PARTITIONS": str(settings.partitions), "FORESIGHT_WEB_PORT": str(port),
                "FORESIGHT_WORKER_ID": worker_id, "KAFKA_BOOTSTRAP_SERVERS": settings.brokers,
                "FORESIGHT_LOG_LEVEL": "info", **(env or {})}
    cmd = [FORESIGHT, "worker"] + (["--reference"] if reference else [])
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)
    worker = Worker(proc, port, log)
    wait_until(lambda: _up(worker), 90, f"worker {worker_id} did not serve /metrics", worker)
    return worker


def _up(worker: Worker) -> bool:
    if worker.proc.poll() is not None:
        raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.tail()}")
    try:
        worker.metrics()
        return True
    except OSError:
        return False


def total(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's series whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in metrics.items()
               if (k == name or k.startswith(name + "{")) and all(w in k for w in want))


def wait_until(cond: Callable[[], Any], timeout: float, what: str,
               worker: Worker | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    extra = ""
    if worker is not None:
        try:
            extra = f"\n--- worker progress: {worker.progress()}"
        except OSError as exc:
            extra = f"\n--- worker progress unavailable: {exc}"
        extra += f"\n--- worker log ---\n{worker.tail()}"
    raise AssertionError(f"timed out after {timeout:.0f}s: {what}{extra}")


@dataclass(frozen=True)
class Sent:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def produce(settings: Settings, records: Iterable[tuple[str, bytes | None, bytes]],
            timestamp_ms: int | None = None, config: dict[str, Any] | None = None) -> list[Sent]:
    """Produce (logical topic, key, value) records; return where each landed.

    ``timestamp_ms`` fixes every record's CreateTime (so two productions are identical);
    ``config`` adds producer settings (``message.max.bytes`` for very large records).
    """
    p = Producer({**settings.kafka_client_config(), "partitioner": "murmur2_random",
                  "linger.ms": 5, "enable.idempotence": True, **(config or {})})
    sent: list[Sent] = []

    def cb(err: Any, msg: Any) -> None:
        assert err is None, err
        logical = msg.topic()[len(settings.topic_prefix):]
        sent.append(Sent(logical, msg.partition(), msg.offset(), msg.key(), msg.value()))

    for topic, key, value in records:
        while True:
            try:
                p.produce(settings.topic(topic), value, key=key, on_delivery=cb,
                          timestamp=timestamp_ms or 0)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(30) == 0
    return sorted(sent, key=lambda s: (s.topic, s.partition, s.offset))


def read_topic(settings: Settings, topic: str, *, timeout: float = 20.0) -> list[Any]:
    """Every committed record of a (real-named) topic, partition by partition."""
    c = Consumer({**settings.kafka_client_config(), "group.id": f"reader-{time.time_ns()}",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    tps = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
    marks = {tp.partition: c.get_watermark_offsets(tp, timeout=10) for tp in tps}
    ends = {p: hi for p, (lo, hi) in marks.items() if hi > lo}
    out: list[Any] = []
    if not ends:
        c.close()
        return out
    c.assign([TopicPartition(topic, p, marks[p][0]) for p in ends])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in c.consume(1000, 0.2):
            assert m.error() is None, m.error()
            out.append(m)
        pos = {tp.partition: tp.offset for tp in c.position([TopicPartition(topic, p) for p in ends])}
        if all(pos[p] >= ends[p] for p in ends):
            break
    c.close()
    return out


def table_contents(settings: Settings, table: str) -> dict[tuple[int, str], Any]:
    """Final state of a changelogged table: last committed value per (partition, key)."""
    from streams.topics import changelog_topic

    state: dict[tuple[int, str], Any] = {}
    for m in read_topic(settings, changelog_topic(settings, table)):
        k = (m.partition(), m.key().decode())
        if m.value() is None:
            state.pop(k, None)
        else:
            state[k] = orjson.loads(m.value())
    return state


def all_applied(settings: Settings, sent: Iterable[Sent]) -> bool:
    """True once the committed progress covers every sent record: progress is committed
    with the state and outputs, so every effect is durable then (sleeps a little when not,
    for polling loops)."""
    progress = table_contents(settings, "progress")
    done = all(progress.get((s.partition, s.topic), -1) >= s.offset for s in sent)
    if not done:
        time.sleep(0.5)
    return done


T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def workload(n: int, *, subscribers: int = 200, invalid_every: int = 97,
             seed: int = 7) -> list[tuple[str, bytes | None, bytes]]:
    """A mix of subscriber-state and call events with some invalid records."""
    from schemas.examples import INPUT_EXAMPLES

    rng = random.Random(seed)
    ss = [e for e in INPUT_EXAMPLES["subscriber-state"]]
    out: list[tuple[str, bytes | None, bytes]] = []
    for i in range(n):
        sid = f"S{rng.randrange(subscribers):08d}"
        at = (T0 + timedelta(seconds=i * 3 + rng.randrange(3))).isoformat()
        if i % invalid_every == invalid_every - 1:
            out.append((rng.choice(["subscriber-state", "call-events"]), sid.encode(),
                        rng.choice([b"not json", b"", b'{"kind": "opened"}'])))
            continue
        if rng.random() < 0.5:
            ev = dict(rng.choice(ss))
            topic = "subscriber-state"
        else:
            ev = dict(INPUT_EXAMPLES["call-events"][rng.randrange(2)])
            ev["call_id"] = f"C{i}"
            topic = "call-events"
        ev.update(subscriber_id=sid, event_id=f"E{i}", event_time=at)
        out.append((topic, sid.encode(), orjson.dumps(ev)))
    return out
