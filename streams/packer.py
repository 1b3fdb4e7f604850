"""The packing front stage: single input events in, one envelope per source partition out.

Operators' systems produce single events keyed by subscriber; Faust costs ~60 µs per Kafka
message whatever its size. The packer (confluent-kafka, ~1 µs per record) consumes the
input topics and writes envelopes of up to ``batch_max_events`` records to the internal
``foresight-packed`` topic, **to the same partition number** the records came from, so the
co-partitioning by subscriber id holds end to end. An envelope closes on size, bytes or
age (``batch_linger_ms``), which bounds the latency it adds.

Delivery is at least once: input offsets are committed only after the envelopes holding
them are acknowledged by the broker. A record packed twice (a crash, a rebalance) is
harmless: the worker skips source offsets it has already applied.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from streams.envelope import pack

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Open:
    """An envelope being filled for one source partition."""

    started: float
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    size: int = 0


class Packer:
    """Consumes ``inputs`` (real topic names) and produces envelopes to ``packed_topic``.

    ``logical`` maps real input topic names to contract names (they differ when a topic
    prefix is configured); envelopes carry the contract name.
    """

    def __init__(
        self,
        client_config: dict[str, str],
        *,
        consumer_config: dict[str, str] | None = None,
        group_id: str,
        inputs: Sequence[str],
        logical: dict[str, str],
        packed_topic: str,
        max_events: int,
        max_bytes: int,
        linger_ms: int,
        on_envelope: Callable[[str, int], None] | None = None,
        commit_interval_s: float = 1.0,
    ) -> None:
        self.inputs = list(inputs)
        self.logical = logical
        self.packed_topic = packed_topic
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger = linger_ms / 1000.0
        self.on_envelope = on_envelope
        self.commit_interval = commit_interval_s
        self._consumer = Consumer({
            **client_config,
            **(consumer_config or {}),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": max(1, min(linger_ms, 100)),
            "queued.min.messages": 100_000,
            "max.partition.fetch.bytes": 4_194_304,
            "partition.assignment.strategy": "cooperative-sticky",
        })
        self._producer = Producer({
            **client_config,
            "enable.idempotence": True,
            "linger.ms": 1,
            "batch.num.messages": 1000,
            "message.max.bytes": max(1_000_000, max_bytes + 65_536),
            "queue.buffering.max.kbytes": 1_048_576,
        })
        self._open: dict[tuple[str, int], _Open] = {}
        self._delivered: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        self.records = 0
        self.envelopes = 0

    # --- main loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Pack until ``stop`` is set; then flush everything and commit."""
        self._consumer.subscribe(self.inputs, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        idle_timeout = max(0.001, min(self.linger / 2, 0.05))
        busy_timeout = 0.001
        timeout = idle_timeout
        try:
            while not stop.is_set():
                # consume(n, t) waits the whole timeout unless n records are queued: while
                # records flow, take what librdkafka has prefetched almost at once; wait
                # longer only when idle (measured: 10 ms waits capped packing at 35k/s)
                msgs = self._consumer.consume(10_000, timeout=timeout)
                timeout = busy_timeout if msgs else idle_timeout
                if msgs:
                    self._add(msgs)
                self._emit_aged(time.monotonic())
                self._producer.poll(0)
                if time.monotonic() - self._last_commit >= self.commit_interval:
                    self._commit(asynchronous=True)
        finally:
            self._emit(list(self._open))
            self._producer.flush(30)
            self._commit(asynchronous=False)
            self._consumer.close()

    def _add(self, msgs: Iterable[Any]) -> None:
        now = time.monotonic()
        opened = self._open
        max_events, max_bytes = self.max_events, self.max_bytes
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("packer consume error: %s", err)
                continue
            tp = (m.topic(), m.partition())
            buf = opened.get(tp)
            if buf is None:
                buf = opened[tp] = _Open(now)
            value = m.value() or b""
            buf.offsets.append(m.offset())
            buf.timestamps.append(m.timestamp()[1])
            buf.keys.append(m.key())
            buf.values.append(value)
            buf.size += len(value) + 40
            if len(buf.offsets) >= max_events or buf.size >= max_bytes:
                self._emit([tp])

    def _emit_aged(self, now: float) -> None:
        aged = [tp for tp, buf in self._open.items() if now - buf.started >= self.linger]
        if aged:
            self._emit(aged)

    def _emit(self, tps: Iterable[tuple[str, int]]) -> None:
        for tp in tps:
            buf = self._open.pop(tp, None)
            if buf is None or not buf.offsets:
                continue
            topic, partition = tp
            logical = self.logical.get(topic, topic)
            data = pack(logical, partition, buf.offsets, buf.timestamps, buf.keys, buf.values)
            last = buf.offsets[-1]

            def delivered(err: Any, _msg: Any, tp: tuple[str, int] = tp, last: int = last) -> None:
                if err is None:
                    if last > self._delivered.get(tp, -1):
                        self._delivered[tp] = last
                else:
                    log.error("envelope of %s up to offset %d not delivered: %s", tp, last, err)

            while True:
                try:
                    self._producer.produce(self.packed_topic, data, key=logical.encode(),
                                           partition=partition, on_delivery=delivered)
                    break
                except BufferError:
                    self._producer.poll(0.01)
            n = len(buf.offsets)
            self.records += n
            self.envelopes += 1
            if self.on_envelope is not None:
                self.on_envelope(logical, n)

    def _commit(self, *, asynchronous: bool, only: Iterable[tuple[str, int]] | None = None) -> None:
        self._last_commit = time.monotonic()
        wanted = set(only) if only is not None else None
        offsets = [
            TopicPartition(t, p, off + 1)
            for (t, p), off in self._delivered.items()
            if off > self._committed.get((t, p), -1) and (wanted is None or (t, p) in wanted)
        ]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
            for tp in offsets:
                self._committed[(tp.topic, tp.partition)] = tp.offset - 1
        except Exception as exc:
            log.warning("packer offset commit failed (will retry): %s", exc)

    # --- rebalance -----------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("packer assigned %s", [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Hand over cleanly: emit, wait for delivery and commit what we packed."""
        tps = [(p.topic, p.partition) for p in partitions]
        self._emit(tps)
        self._producer.flush(30)
        self._commit(asynchronous=False, only=tps)
        for tp in tps:
            self._delivered.pop(tp, None)
            self._committed.pop(tp, None)


    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a handover: drop, never commit for them."""
        for p in partitions:
            tp = (p.topic, p.partition)
            self._open.pop(tp, None)
            self._delivered.pop(tp, None)
            self._committed.pop(tp, None)


class PackerProcess:
    """Runs the packer in a child process of the worker: its own interpreter and GIL.

    The worker's event loop is bound by one core of Python; packing in a thread took ~14%
    of it (py-spy, docs/benchmarks.md). The child reports its counts through shared memory
    (one int64 per input topic and one for envelopes) that :meth:`sync` copies into the
    worker's Prometheus counters, and it is told to stop (flush, commit) when the worker
    dies, even by kill -9 (``PR_SET_PDEATHSIG``).
    """

    def __init__(self, settings: Any, worker_id: str, topics: Sequence[str],
                 on_counts: Callable[[str, int], None], on_envelopes: Callable[[int], None]) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.topics = list(topics)
        self._counts = ctx.Array("q", len(self.topics) + 1, lock=False)
        self._seen = [0] * (len(self.topics) + 1)
        self._on_counts = on_counts
        self._on_envelopes = on_envelopes
        self._proc = ctx.Process(target=_child_main, name="foresight-packer", daemon=True,
                                 args=(settings, worker_id, self.topics, self._counts))

    def start(self) -> None:
        self._proc.start()

    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self._proc.exitcode

    def packed(self) -> int:
        """Records the child has packed so far (read straight from shared memory)."""
        return sum(self._counts[i] for i in range(len(self.topics)))

    def sync(self) -> None:
        """Copy the child's counts into the worker's metrics (call it now and then)."""
        for i, topic in enumerate(self.topics):
            delta = self._counts[i] - self._seen[i]
            if delta:
                self._seen[i] += delta
                self._on_counts(topic, delta)
        j = len(self.topics)
        delta = self._counts[j] - self._seen[j]
        if delta:
            self._seen[j] += delta
            self._on_envelopes(delta)

    def stop(self, timeout: float = 30.0) -> None:
        if self._proc.is_alive():
            self._proc.terminate()  # SIGTERM: the child flushes and commits, then exits
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
        self.sync()


def _child_main(settings: Any, worker_id: str, topics: list[str], counts: Any) -> None:
    import ctypes
    import signal

    with contextlib.suppress(OSError):  # die with the worker, even on SIGKILL (Linux only)
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which stops us
    index = {t: i for i, t in enumerate(topics)}
    envelopes = len(topics)

    def on_envelope(topic: str, n: int) -> None:
        counts[index[topic]] += n
        counts[envelopes] += 1

    from streams.app import make_packer

    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s packer: %(message)s")
    make_packer(settings, on_envelope, worker_id).run(stop)


class PackerThread(threading.Thread):
    """Runs a :class:`Packer` beside the Faust event loop in the worker process."""

    def __init__(self, packer: Packer) -> None:
        super().__init__(name="foresight-packer", daemon=True)
        self.packer = packer
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.packer.run(self.stop_event)
        except BaseException as exc:  # surfaced by the worker's health check
            self.error = exc
            log.exception("packer stopped with an error")

    def packed(self) -> int:
        return self.packer.records

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout)
