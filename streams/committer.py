"""One Kafka transaction per commit: outputs, changelog records and progress, all or nothing.

The transactional producer is confluent-kafka (librdkafka): about a microsecond per record
against tens for Faust's own send path. Its ``transactional.id`` is stable per worker, so a
restarted worker fences its crashed predecessor and aborts the transaction it left open
(``init_transactions``) before state is restored. Readers of outputs and changelogs use
``isolation.level=read_committed``: an aborted commit is invisible everywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer

from streams.errors import BrokerError
from streams.unit import Commit

log = logging.getLogger(__name__)


class CommitFailed(BrokerError):
    """The transaction could not be committed; the worker must restart from the changelog."""


class TransactionalCommitter:
    """Writes :class:`~streams.unit.Commit` objects transactionally.

    ``table_topics`` maps table names to changelog topic names; ``output_topics`` maps
    logical output names (``alerts``) to real topic names (with any prefix).
    """

    def __init__(
        self,
        client_config: Mapping[str, str],
        transactional_id: str,
        table_topics: Mapping[str, str],
        output_topics: Mapping[str, str],
        *,
        transaction_timeout_ms: int = 15_000,
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
            # Java clients' partitioner: records keyed by subscriber land where the
            # operator's (Java) producers put that subscriber's inputs.
            "partitioner": "murmur2_random",
            # librdkafka backs off 100 ms when the previous transaction's markers are
            # still being written (CONCURRENT_TRANSACTIONS); retry sooner.
            "retry.backoff.ms": 5,
            "retry.backoff.max.ms": 50,
        })
        self.transactional_id = transactional_id
        self.table_topics = dict(table_topics)
        self.output_topics = dict(output_topics)
        self._producer = Producer(conf)
        self._started = False

    def start(self, timeout: float = 60.0) -> None:
        """Register the transactional id; aborts a predecessor's open transaction."""
        try:
            self._producer.init_transactions(timeout)
        except KafkaException as exc:
            raise BrokerError(
                f"cannot initialise transactions for {self.transactional_id!r}: {exc}. Is the "
                "broker reachable, and does it allow transactions "
                "(transaction.state.log.replication.factor <= brokers)?"
            ) from exc
        self._started = True

    def commit(self, commit: Commit, timeout: float = 30.0) -> dict[tuple[str, int], int]:
        """Write ``commit`` in one transaction (blocking); return each changelog partition's
        new end: the offset of the transaction's commit marker, right after our last record
        (nothing else writes our changelog partitions), which is how far a restore of that
        partition has to read.

        Raises :class:`CommitFailed`; the caller must then stop processing, because its
        in-memory state is ahead of what Kafka holds.
        """
        if not self._started:
            raise CommitFailed("commit before start(): call start() once after creating")
        p = self._producer
        offsets: dict[tuple[str, int], int] = {}

        def _track(table: str, partition: int) -> Any:
            def on_delivery(err: Any, msg: Any) -> None:
                if err is None:
                    offsets[(table, partition)] = msg.offset() + 1  # the commit marker
            return on_delivery

        try:
            p.begin_transaction()
            produce = p.produce
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
                self._retry(topic, value, key.encode(), partition, _track(table, partition))
            p.commit_transaction(timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and getattr(err, "txn_requires_abort", lambda: False)():
                try:
                    p.abort_transaction(timeout)
                except KafkaException:
                    log.exception("abort after a failed commit failed too")
            raise CommitFailed(f"transaction of {commit.events} events failed: {exc}") from exc
        return offsets

    def _retry(self, topic: str, value: bytes | None, key: bytes, partition: int,
               cb: Any) -> None:
        """Produce, waiting for room when librdkafka's local queue is full."""
        while True:
            try:
                self._producer.produce(topic, value, key, partition, cb)
                return
            except BufferError:
                self._producer.poll(0.005)

    def close(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        self._producer.flush(max(0.0, deadline - time.monotonic()))
