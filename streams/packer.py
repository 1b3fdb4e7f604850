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

**No input can stop it.** A record larger than the worker accepts (or with a key no id can
have) travels as a small :class:`~streams.envelope.Oversize` stub, and an envelope closes
before a record would take it past ``max_bytes``, so every envelope fits in a Kafka
message whatever the operators produce. Broker outages are waited out (the producer
retries without a deadline); an envelope that still fails, or a consumer error librdkafka
calls fatal (a static member fenced after a broker restart), raises :class:`PackerFailed`:
the process exits non-zero, the worker starts a new packer, and it resumes from the last
committed input offsets.
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

from streams.envelope import KEY_LIMIT_BYTES, Oversize, pack
from streams.errors import BrokerError
from streams.logs import Throttle

log = logging.getLogger(__name__)

#: fixed per-record cost of an envelope (offset, timestamp, two lengths) with some margin
_RECORD_OVERHEAD = 40


class PackerFailed(BrokerError):
    """The packer cannot go on with this consumer or producer; a new packer resumes from
    the last committed input offsets."""


@dataclass(slots=True)
class _Open:
    """An envelope being filled for one source partition."""

    started: float
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    keys: list[bytes | Oversize | None] = field(default_factory=list)
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
        max_record_bytes: int = 64 * 1024,
        on_envelope: Callable[[str, int], None] | None = None,
        on_lag: Callable[[int], None] | None = None,
        on_partition_lag: Callable[[dict[tuple[str, int], int]], None] | None = None,
        commit_interval_s: float = 1.0,
    ) -> None:
        self.inputs = list(inputs)
        self.logical = logical
        self.packed_topic = packed_topic
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_record_bytes = max_record_bytes
        self.linger = linger_ms / 1000.0
        self.on_envelope = on_envelope
        self.on_lag = on_lag
        self.on_partition_lag = on_partition_lag
        self.commit_interval = commit_interval_s
        self._throttle = Throttle(60.0)
        self._failed: str | None = None
        self._broken: set[tuple[str, int]] = set()
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
            "reconnect.backoff.max.ms": 1000,  # back within a second of the broker
        })
        self._producer = Producer({
            **client_config,
            "enable.idempotence": True,
            "linger.ms": 1,
            "batch.num.messages": 1000,
            # an envelope is at most max_bytes, or one record (<= max_record_bytes) alone
            "message.max.bytes": max(max_bytes, max_record_bytes + KEY_LIMIT_BYTES) + 65_536,
            "queue.buffering.max.kbytes": 1_048_576,
            # wait out broker outages: an envelope is never given up on while the process
            # lives (a delivery failure would otherwise leave a gap behind later envelopes)
            "message.timeout.ms": 0,
            "reconnect.backoff.max.ms": 1000,
        })
        self._open: dict[tuple[str, int], _Open] = {}
        self._delivered: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        #: the group's committed offset (next to read) of partitions this packer has not
        #: committed yet, fetched once after they are assigned (consumer lag)
        self._base: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        self.records = 0
        self.envelopes = 0

    # --- main loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event, stop_timeout: float = 5.0) -> None:
        """Pack until ``stop`` is set; then flush everything (for at most ``stop_timeout``)
        and commit. Raises :class:`PackerFailed` when it cannot go on."""
        self._consumer.subscribe(self.inputs, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        idle_timeout = max(0.001, min(self.linger / 2, 0.05))
        busy_timeout = 0.001
        timeout = idle_timeout
        failed = True
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
                if self._failed is not None:
                    raise PackerFailed(self._failed)
                if time.monotonic() - self._last_commit >= self.commit_interval:
                    self._commit(asynchronous=True)
                    self._report_lag()
            failed = False
        finally:
            self._close(failed, stop_timeout)

    def _close(self, failed: bool, timeout: float) -> None:
        """Hand over what was packed: emit, wait for delivery (``timeout``), commit.

        After a failure nothing is committed beyond what was delivered; the envelopes of
        this session that were not are packed again by the next packer.
        """
        if not failed:
            self._emit(list(self._open))
        remaining = self._producer.flush(timeout)
        if remaining:
            log.warning("stopping with %d envelopes undelivered; the next packer packs their "
                        "records again", remaining)
        try:
            self._commit(asynchronous=False)
        finally:
            self._consumer.close()

    def _add(self, msgs: Iterable[Any]) -> None:
        now = time.monotonic()
        opened = self._open
        max_events, max_bytes = self.max_events, self.max_bytes
        max_record = self.max_record_bytes
        for m in msgs:
            err = m.error()
            if err is not None:
                self._consume_error(err)
                continue
            tp = (m.topic(), m.partition())
            value = m.value() or b""
            key = m.key()
            size = len(value) + _RECORD_OVERHEAD
            if len(value) > max_record or (key is not None and len(key) > KEY_LIMIT_BYTES):
                key = Oversize.of(key, value, max_value_bytes=max_record)
                value = b""
                size = len(key.value_head) + 200
            buf = opened.get(tp)
            if buf is not None and buf.size + size > max_bytes:
                self._emit([tp])  # close before this record would take it past the limit
                buf = None
            if buf is None:
                buf = opened[tp] = _Open(now)
            buf.offsets.append(m.offset())
            buf.timestamps.append(m.timestamp()[1])
            buf.keys.append(key)
            buf.values.append(value)
            buf.size += size
            if len(buf.offsets) >= max_events or buf.size >= max_bytes:
                self._emit([tp])

    def _consume_error(self, err: Any) -> None:
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise PackerFailed(f"fatal consumer error: {err}")
        if self._throttle.allow(code):
            log.warning("packer consume error (repeats are logged once a minute): %s", err)

    def _report_lag(self) -> None:
        """Input records not yet consumed, from librdkafka's cached high watermarks (no
        request to the broker): the worker's health check reads it."""
        if self.on_lag is None:
            return
        try:
            assigned = self._consumer.assignment()
            positions = self._consumer.position(assigned) if assigned else []
        except Exception:  # an unusable consumer shows up in run() soon
            return
        lag = 0
        marks = {}
        for tp in positions:
            lo, hi = self._consumer.get_watermark_offsets(tp, cached=True)
            marks[(tp.topic, tp.partition)] = (lo, hi)
            if hi >= 0 and tp.offset >= 0:
                lag += max(0, hi - tp.offset)
            elif hi > 0:
                lag += 1  # not fetched yet: something may be waiting
        self.on_lag(lag)
        if self.on_partition_lag is not None:
            self.on_partition_lag(self._partition_lag(marks))

    def _partition_lag(self, marks: dict[tuple[str, int], tuple[int, int]]
                       ) -> dict[tuple[str, int], int]:
        """High watermark minus the group's committed offset, per assigned partition
        (logical topic names); partitions whose high watermark is not known yet are left
        out. Uses cached watermarks; one committed-offsets request per new assignment."""
        unknown = [TopicPartition(t, p) for (t, p) in marks
                   if (t, p) not in self._committed and (t, p) not in self._base]
        if unknown:
            try:
                for tp in self._consumer.committed(unknown, timeout=2.0):
                    lo = marks[(tp.topic, tp.partition)][0]
                    # no committed offset: the group starts at the beginning (earliest)
                    self._base[(tp.topic, tp.partition)] = (tp.offset if tp.offset >= 0
                                                            else max(lo, 0))
            except Exception as exc:  # the broker is away: try again at the next report
                log.debug("committed offsets not available yet: %s", exc)
        out: dict[tuple[str, int], int] = {}
        for (topic, p), (_lo, hi) in marks.items():
            done = self._committed.get((topic, p))
            start = done + 1 if done is not None else self._base.get((topic, p))
            if hi < 0 or start is None:
                continue
            out[(self.logical.get(topic, topic), p)] = max(0, hi - start)
        return out

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
                if tp in self._broken:
                    return  # nothing of tp is committed past an envelope that failed
                if err is None:
                    if last > self._delivered.get(tp, -1):
                        self._delivered[tp] = last
                else:
                    self._broken.add(tp)
                    if self._failed is None:
                        self._failed = f"envelope of {tp} up to offset {last} not delivered: {err}"

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
            if self._throttle.allow("commit"):
                log.warning("packer offset commit failed (will retry; repeats are logged once "
                            "a minute): %s", exc)

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
            self._base.pop(tp, None)


    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a handover: drop, never commit for them."""
        for p in partitions:
            tp = (p.topic, p.partition)
            self._open.pop(tp, None)
            self._delivered.pop(tp, None)
            self._committed.pop(tp, None)
            self._base.pop(tp, None)


class PackerProcess:
    """Runs the packer in a child process of the worker: its own interpreter and GIL.

    The worker's event loop is bound by one core of Python; packing in a thread took ~14%
    of it (py-spy, docs/benchmarks.md). The child reports its counts and its input lag
    through shared memory (one int64 per input topic, one for envelopes, one for the lag)
    that :meth:`sync` copies into the worker's Prometheus counters, and it is told to stop
    (flush, commit) when the worker dies, even by kill -9 (``PR_SET_PDEATHSIG``). When the
    child exits on its own, the worker calls :meth:`restart` (a new child resumes from the
    last committed input offsets); the shared counts carry on across children.
    """

    def __init__(self, settings: Any, worker_id: str, topics: Sequence[str],
                 on_counts: Callable[[str, int], None], on_envelopes: Callable[[int], None]) -> None:
        import multiprocessing

        self._ctx = multiprocessing.get_context("spawn")
        self.settings = settings
        self.worker_id = worker_id
        self.topics = list(topics)
        self._counts = self._ctx.Array("q", len(self.topics) + 2, lock=False)
        #: consumer lag per (topic, partition), topic-major; -1: not assigned to this packer
        self.partitions = int(settings.partitions)
        self._lag = self._ctx.Array("q", len(self.topics) * self.partitions, lock=False)
        self._lag[:] = [-1] * len(self._lag)
        self._seen = [0] * (len(self.topics) + 1)
        self._on_counts = on_counts
        self._on_envelopes = on_envelopes
        self._proc = self._new()
        self.starts = 0

    def _new(self) -> Any:
        return self._ctx.Process(target=_child_main, name="foresight-packer", daemon=True,
                                 args=(self.settings, self.worker_id, self.topics, self._counts,
                                       self._lag))

    def start(self) -> None:
        self._proc.start()
        self.starts += 1

    def restart(self) -> None:
        """Start a new child after the previous one exited."""
        if self._proc.is_alive():
            return
        self._proc.close()
        self._counts[len(self.topics) + 1] = 0
        self._lag[:] = [-1] * len(self._lag)
        self._proc = self._new()
        self.start()

    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self._proc.exitcode

    def packed(self) -> int:
        """Records the children have packed so far (read straight from shared memory)."""
        return sum(self._counts[i] for i in range(len(self.topics)))

    def lag(self) -> int:
        """Input records waiting for the packer, as the child last measured them."""
        return int(self._counts[len(self.topics) + 1])

    def partition_lag(self) -> dict[tuple[str, int], int]:
        """Consumer lag per (topic, partition) the child owns, as it last measured it."""
        lag = self._lag[:]
        n = self.partitions
        return {(topic, p): lag[i * n + p] for i, topic in enumerate(self.topics)
                for p in range(n) if lag[i * n + p] >= 0}

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

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: the child flushes and commits within ``timeout``, else it is killed."""
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout)
            if self._proc.is_alive():
                log.warning("the packer did not stop within %.0fs; killed", timeout)
                self._proc.kill()
                self._proc.join(2.0)
        self.sync()


#: exit status of a packer child that failed in a way a new packer recovers from
EXIT_PACKER_FAILED = 3


def _child_main(settings: Any, worker_id: str, topics: list[str], counts: Any,
                lags: Any) -> None:
    import ctypes
    import signal
    import sys

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

    def on_lag(n: int) -> None:
        counts[envelopes + 1] = n

    parts = len(lags) // max(1, len(topics))

    def on_partition_lag(lag: dict[tuple[str, int], int]) -> None:
        values = [-1] * len(lags)
        for (topic, p), n in lag.items():
            i = index.get(topic)
            if i is not None and p < parts:  # more partitions than configured: not shown
                values[i * parts + p] = n
        lags[:] = values

    from streams.app import make_packer
    from streams.logs import configure

    # a spawned child starts with no logging set up: the worker's format, filters and worker
    # id, with "packer" as the component so its lines are told apart in a shared stderr
    configure(settings, "packer", worker=worker_id)
    try:
        make_packer(settings, on_envelope, worker_id, on_lag=on_lag,
                    on_partition_lag=on_partition_lag).run(
            stop, stop_timeout=settings.shutdown_timeout_s / 2)
    except PackerFailed as exc:
        log.error("%s; exiting so the worker starts a new packer", exc)
        sys.exit(EXIT_PACKER_FAILED)


class PackerThread:
    """Runs a :class:`Packer` in a thread beside the Faust event loop (``--packer thread``).

    ``factory`` makes a new packer for every (re)start: a failed one is not reused.
    """

    def __init__(self, factory: Callable[[], Packer]) -> None:
        self.factory = factory
        self.packer: Packer | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lag = 0
        self._partition_lag: dict[tuple[str, int], int] = {}
        self._packed_before = 0
        self.starts = 0

    def _run(self, packer: Packer) -> None:
        try:
            packer.run(self._stop)
        except BaseException as exc:  # surfaced by the worker's supervision
            self.error = exc
            log.exception("packer stopped with an error")

    def start(self) -> None:
        if self.packer is not None:
            self._packed_before += self.packer.records
        self.packer = self.factory()
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(self.packer,),
                                        name="foresight-packer", daemon=True)
        self._thread.start()
        self.starts += 1

    def restart(self) -> None:
        if not self.alive():
            self.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def exitcode(self) -> int | None:
        return None if self.alive() else (1 if self.error else 0)

    def set_lag(self, n: int) -> None:
        self._lag = n

    def lag(self) -> int:
        return self._lag

    def set_partition_lag(self, lag: dict[tuple[str, int], int]) -> None:
        self._partition_lag = lag

    def partition_lag(self) -> dict[tuple[str, int], int]:
        return dict(self._partition_lag) if self.alive() else {}

    def packed(self) -> int:
        return self._packed_before + (self.packer.records if self.packer else 0)

    def sync(self) -> None:
        """Counts are reported by the packer's callbacks directly."""

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
