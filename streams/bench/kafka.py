"""Broker side of the benchmarks: run topics, producing the dataset, cleaning up.

The broker is shared with other engineers, so everything a run creates carries its run tag
(topic names, consumer groups, Faust app ids, Quix changelogs) and cleanup deletes exactly
the topics and groups whose names contain that tag, nothing else.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.bench import procs
from streams.errors import BrokerError
from streams.settings import Settings
from streams.topics import delete_groups, delete_topics, ensure_topics

Progress = Callable[[int], None]


def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_client_config())


def run_settings(base: Settings, prefix: str, partitions: int, **extra: Any) -> Settings:
    """Settings of one run: its own topic prefix (and app id) on the configured broker."""
    return base.model_copy(update={"topic_prefix": prefix, "partitions": partitions, **extra})


def create_topics(settings: Settings, tables: tuple[str, ...] = ()) -> list[str]:
    """Every Foresight topic under the run prefix, with the right partition counts."""
    return ensure_topics(settings, tables)


def bench_producer(settings: Settings, **overrides: Any) -> Producer:
    """A producer partitioning like the operators' Java producers (murmur2 of the key)."""
    conf: dict[str, Any] = {
        **settings.kafka_client_config(),
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "enable.idempotence": True,
    }
    conf.update(overrides)
    return Producer(conf)


def produce(settings: Settings, records: Iterable[tuple[str, bytes, bytes]],
            progress: Progress | None = None) -> int:
    """Produce ``(contract topic, key, value)`` records to the run's topics; return the count.

    Raises :class:`BrokerError` if any record was not acknowledged: a benchmark over a
    partial dataset would compare lines over different inputs.
    """
    producer = bench_producer(settings)
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    names: dict[str, str] = {}
    n = 0
    for topic, key, value in records:
        real = names.get(topic)
        if real is None:
            real = names[topic] = settings.topic(topic)
        produce_one(producer, real, value, key, delivered, wait_s=0.05)
        n += 1
        if n % 50_000 == 0:
            producer.poll(0)
            if progress is not None:
                progress(n)
    remaining = producer.flush(120)
    if remaining or failures:
        raise BrokerError(f"producing the dataset failed: {remaining} records unsent, "
                          f"{len(failures)} failed (first: {failures[:1]})")
    return n


def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    """High watermarks of ``topic`` (what a consumer from the beginning will read up to)."""
    from confluent_kafka import Consumer

    c = Consumer({**settings.kafka_client_config(), "group.id": "foresight-bench-offsets"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def truncate(settings: Settings, topic: str, partitions: int) -> None:
    """Delete every record of ``topic`` (log start := end), so a new group reads nothing old.

    Foresight's packed topic is named by the prefix only; without this, a second worker run
    over the same inputs would re-read the first run's envelopes instead of packing anew.
    """
    from confluent_kafka import OFFSET_END

    adm = admin(settings)  # keep a reference: a collected client never completes its futures
    futures = adm.delete_records([TopicPartition(topic, p, OFFSET_END) for p in range(partitions)],
                                 operation_timeout=30, request_timeout=30)
    for tp, fut in futures.items():
        try:
            fut.result(timeout=60)
        except Exception as exc:
            raise BrokerError(f"cannot truncate {tp.topic}[{tp.partition}]: {exc!r}") from exc


def cleanup(settings: Settings, tag: str, log: Callable[[str], None] = print,
            group_wait_s: float = 30.0) -> None:
    """Delete the topics and consumer groups whose names contain ``tag`` (best effort;
    groups retried for ``group_wait_s``, see :func:`streams.topics.delete_groups`)."""
    if len(tag) < 6:
        raise ValueError("refusing to clean up with a tag shorter than 6 characters")
    n = delete_topics(settings, lambda t: tag in t, log)
    if n:
        log(f"deleted {n} topics of run {tag}")
    delete_groups(settings, lambda g: tag in g, log, group_wait_s)


def cleanup_or_say(settings: Settings, tag: str, say: Callable[[str], None]) -> None:
    """:func:`cleanup`, telling the operator what to delete by hand when it fails (a
    benchmark's results must not be lost to a cleanup error)."""
    try:
        cleanup(settings, tag, say)
    except Exception as exc:
        say(f"cleanup failed (delete topics containing {tag} by hand): {exc}")


def produce_one(producer: Producer, topic: str, value: bytes, key: bytes | None = None,
            on_delivery: Callable[..., Any] | None = None, wait_s: float = 0.01) -> None:
    """``producer.produce``, serving delivery callbacks while the local queue is full
    (a load generator outruns the broker for a moment: wait, never drop)."""
    while True:
        try:
            producer.produce(topic, value, key=key, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(wait_s)


@contextlib.contextmanager
def fresh_run(base: Settings, letters: str, partitions: int,
              say: Callable[[str], None]) -> Iterator[tuple[str, Path]]:
    """One measured run on fresh topics: its tag (topic prefix ``<prefix><tag>.`` and app
    id) and a scratch directory. Afterwards every process of the run is killed, its topics
    are deleted (or the operator told which) and the scratch is removed, whatever happened."""
    tag = letters + uuid.uuid4().hex[:8]
    scratch = (base.home / "bench" / tag).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        yield tag, scratch
    finally:
        procs.kill_all()
        cleanup_or_say(run_settings(base, f"{base.topic_prefix}{tag}.", partitions), tag, say)
        shutil.rmtree(scratch, ignore_errors=True)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
