"""One Kafka transaction per commit: outputs, changelog records and progress, all or nothing.

The transactional producer is confluent-kafka (librdkafka): about a microsecond per record
against tens for Faust's own send path. Its ``transactional.id`` is stable per worker, so a
restarted worker fences its crashed predecessor and aborts the transaction it left open
(``init_transactions``) before state is restored. Readers of outputs and changelogs use
``isolation.level=read_committed``: an aborted commit is invisible everywhere.

**A commit waits out broker outages.** Nothing of a transaction is visible until it
commits, and the :class:`~streams.unit.Commit` it carries stays in memory until then, so
every failure short of a real fence can be retried without loss or duplicates: a timed-out
``commit_transaction`` is resumed; a transaction the producer must abort (its messages
timed out while the broker was away) is aborted and written again from the start; a
producer that became unusable (its epoch was bumped when the coordinator timed the
transaction out) is replaced by a new one with the same ``transactional.id``, whose
``init_transactions`` fences the old. While it retries, :attr:`blocked_since` and
:attr:`last_error` say so (the worker reports ``stalled``). Only errors no retry can fix
(a record the broker refuses, missing authorisation) raise :class:`CommitFailed`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from streams.errors import BrokerError
from streams.unit import Commit

log = logging.getLogger(__name__)

#: Errors that never heal by retrying: the commit fails and the worker exits.
_PERMANENT = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError._INVALID_ARG, KafkaError.INVALID_CONFIG,
    KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._AUTHENTICATION,
})
#: A fenced producer was replaced by another instance with this transactional id.
_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED})


class CommitFailed(BrokerError):
    """The transaction cannot be committed; the worker must restart from the changelog."""


class CommitAbandoned(CommitFailed):
    """The worker is stopping while a commit waits for the broker; nothing was committed."""


class TransactionalCommitter:
    """Writes :class:`~streams.unit.Commit` objects transactionally, retrying through outages.

    ``table_topics`` maps table names to changelog topic names; ``output_topics`` maps
    logical output names (``alerts``) to real topic names (with any prefix). ``on_retry`` is
    called with the error of every failed attempt (metrics).
    """

    def __init__(
        self,
        client_config: Mapping[str, Any],
        transactional_id: str,
        table_topics: Mapping[str, str],
        output_topics: Mapping[str, str],
        *,
        transaction_timeout_ms: int = 15_000,
        call_timeout_s: float = 2.0,
        max_backoff_s: float = 1.0,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        conf: dict[str, Any] = dict(client_config)
        conf.update({
            "transactional.id": transactional_id,
            "transaction.timeout.ms": transaction_timeout_ms,
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "compression.type": "lz4",
            # dead letters carry up to 512 KiB of input (base64: ~700 KB); topics allow 4 MiB
            "message.max.bytes": 4 * 1024 * 1024,
            # Java clients' partitioner: records keyed by subscriber land where the
            # operator's (Java) producers put that subscriber's inputs.
            "partitioner": "murmur2_random",
            # librdkafka backs off 100 ms when the previous transaction's markers are
            # still being written (CONCURRENT_TRANSACTIONS); retry sooner.
            "retry.backoff.ms": 5,
            "retry.backoff.max.ms": 50,
            # after an outage, reconnect within a second (librdkafka's default backs off to
            # 10 s: up to 10 s of a returned broker unused)
            "reconnect.backoff.max.ms": 1000,
        })
        self._conf = conf
        self.transactional_id = transactional_id
        self.table_topics = dict(table_topics)
        self.output_topics = dict(output_topics)
        self.call_timeout_s = call_timeout_s
        self.max_backoff_s = max_backoff_s
        self.on_retry = on_retry
        self._producer: Any = None
        self._committing = False  # a commit_transaction call timed out: resume it
        self._offsets: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        #: monotonic time the current commit first failed (None: not blocked)
        self.blocked_since: float | None = None
        self.last_error: str | None = None
        self.retries = 0
        self.producers_replaced = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Register the transactional id; aborts a predecessor's open transaction."""
        try:
            self._producer = self._new_producer(deadline=time.monotonic() + timeout)
        except KafkaException as exc:
            raise BrokerError(
                f"cannot initialise transactions for {self.transactional_id!r}: {exc}. Is the "
                "broker reachable, and does it allow transactions "
                "(transaction.state.log.replication.factor <= brokers)?"
            ) from exc

    def abandon(self) -> None:
        """Stop retrying (shutdown): a blocked commit raises :class:`CommitAbandoned` within
        ``call_timeout_s``; its effects were never visible and are redone after a restart."""
        self._stop.set()

    def close(self, timeout: float = 5.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)

    def probe(self, timeout: float = 3.0) -> bool:
        """True if the cluster answers a metadata request (is the broker the problem?)."""
        producer = self._producer
        if producer is None:
            return False
        try:
            return bool(producer.list_topics(timeout=timeout).brokers)
        except KafkaException:
            return False

    def _new_producer(self, deadline: float | None) -> Any:
        """A producer with our transactional id, initialised (fences every older one)."""
        producer = Producer(self._conf)
        delay = 0.2
        while True:
            try:
                producer.init_transactions(self.call_timeout_s)
                return producer
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                retriable = err is not None and (err.retriable() or
                                                 err.code() == KafkaError._TIMED_OUT)
                if not retriable or (deadline is not None and time.monotonic() > deadline):
                    raise
                self._note(err)
                if self._stop.wait(delay):
                    raise CommitAbandoned("stopping while initialising transactions") from exc
                delay = min(delay * 2, self.max_backoff_s)

    # --- committing ------------------------------------------------------------------------
    def commit(self, commit: Commit) -> dict[tuple[str, int], int]:
        """Write ``commit`` in one transaction (blocking, retried until it commits); return
        each changelog partition's new end: the offset of the transaction's commit marker,
        right after our last record (nothing else writes our changelog partitions), which is
        how far a restore of that partition has to read.

        Raises :class:`CommitFailed` when no retry can succeed; the caller must then stop
        processing, because its in-memory state is ahead of what Kafka holds.
        """
        if self._producer is None:
            raise CommitFailed("commit before start(): call start() once after creating")
        delay = 0.2
        while True:
            if self._stop.is_set():
                self._discard()
                raise CommitAbandoned(f"stopping with {commit.events} events uncommitted "
                                      "(they are processed again after the restart)")
            try:
                offsets = self._attempt(commit)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                self._recover(err, commit)
                if self._stop.wait(delay):
                    continue
                delay = min(delay * 2, self.max_backoff_s)
                continue
            if self.blocked_since is not None:
                log.warning("commit of %d events succeeded after %.1fs of retries", commit.events,
                            time.monotonic() - self.blocked_since)
            self.blocked_since = None
            self.last_error = None
            return offsets

    def _attempt(self, commit: Commit) -> dict[tuple[str, int], int]:
        p = self._producer
        if not self._committing:
            self._offsets = {}
            p.begin_transaction()
            self._produce(commit)
            self._committing = True
        p.commit_transaction(self.call_timeout_s)
        self._committing = False
        return self._offsets

    def _produce(self, commit: Commit) -> None:
        produce = self._producer.produce
        offsets = self._offsets
        for topic, key, value in commit.outputs:
            real = self.output_topics[topic]
            try:
                produce(real, value, key)
            except BufferError:
                self._retry(real, value, key, -1, None)
        for (table, partition), records in commit.changelog.items():
            topic = self.table_topics[table]
            # the hot loop of the commit: positional arguments, no per-record wrapper
            for key, value in records[:-1]:
                try:
                    produce(topic, value, key.encode(), partition)
                except BufferError:
                    self._retry(topic, value, key.encode(), partition, None)
            key, value = records[-1]

            def on_delivery(err: Any, msg: Any, tp: tuple[str, int] = (table, partition)) -> None:
                if err is None:
                    offsets[tp] = msg.offset() + 1  # the commit marker
            self._retry(topic, value, key.encode(), partition, on_delivery)

    def _recover(self, err: Any, commit: Commit) -> None:
        """Decide how to go on after a failed attempt; raise if nothing can fix it."""
        code = err.code() if err is not None else None
        self._note(err)
        if code in _PERMANENT:
            self._discard()
            raise CommitFailed(f"transaction of {commit.events} events failed: {err}. This is "
                               "not a broker outage (retrying cannot help): check the error")
        if (err is not None and err.fatal()) or code in _FENCED:
            self._replace(err)
        elif err is not None and err.txn_requires_abort():
            try:
                self._abort()
            except KafkaException as exc:  # the abort found the producer unusable
                self._replace(exc.args[0] if exc.args else None)
        # else retriable (a timed-out commit_transaction is resumed; a begin that failed is
        # retried): the next attempt goes on from where this one stopped

    def _replace(self, err: Any) -> None:
        """The producer is unusable (fenced, or its epoch bumped when the coordinator aborted
        a transaction that outlived ``transaction.timeout.ms``): a new producer with the
        same id fences it and starts clean; the whole commit is then written again."""
        log.warning("transactional producer %s unusable (%s); replacing it",
                    self.transactional_id, err)
        self._discard()
        self._producer = self._new_producer(deadline=None)
        self.producers_replaced += 1

    def _abort(self) -> None:
        delay = 0.2
        while True:
            try:
                self._producer.abort_transaction(self.call_timeout_s)
                self._committing = False
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if err is not None and err.fatal():
                    raise
                self._note(err)
                if self._stop.wait(delay):
                    self._committing = False
                    return
                delay = min(delay * 2, self.max_backoff_s)

    def _discard(self) -> None:
        """Drop the current producer's queue (nothing of it was committed)."""
        self._committing = False
        if self._producer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):  # best effort: may be dead
                self._producer.purge()

    def _note(self, err: Any) -> None:
        now = time.monotonic()
        if self.blocked_since is None:
            self.blocked_since = now
        self.last_error = str(err)
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry(_code_name(err))

    def _retry(self, topic: str, value: bytes | None, key: bytes, partition: int,
               cb: Any) -> None:
        """Produce, waiting for room when librdkafka's local queue is full."""
        while True:
            try:
                self._producer.produce(topic, value, key, partition, cb)
                return
            except BufferError:
                self._producer.poll(0.005)


def _code_name(err: Any) -> str:
    try:
        return str(err.name()).lower().lstrip("_")
    except AttributeError:
        return "unknown"
