"""The only module of the simulator that talks to Kafka: a thin confluent-kafka sink.

Records keep their key (subscriber, cell or line id) so Kafka's murmur2 partitioner puts
them where the Faust workers (Java-compatible partitioning) expect them. The record
timestamp is left to the producer (produce time): Kafka 4 rejects timestamps more than
``log.message.timestamp.after.max.ms`` (1 h) in the future, and a simulated clock runs
ahead of the wall clock; event time travels in the payload.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from confluent_kafka import KafkaError, Producer

from schemas.registry import CONTRACTS
from streams.errors import BrokerError
from streams.settings import Settings


class KafkaSink:
    """Produces records to their (prefixed) topics and counts what the broker acked."""

    def __init__(self, settings: Settings, *, linger_ms: int = 5) -> None:
        conf: dict[str, Any] = {
            **settings.kafka_client_config(),
            "partitioner": "murmur2_random",
            "linger.ms": linger_ms,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            "compression.type": "lz4",
            "message.max.bytes": 2 * 1024 * 1024,
        }
        self._producer = Producer(conf)
        self._brokers = settings.brokers
        self._names = {name: settings.topic(name) for name in CONTRACTS}
        self._logical = {v: k for k, v in self._names.items()}
        self.delivered: Counter[str] = Counter()
        self.failed = 0
        self.first_error: str | None = None
        self._since_poll = 0

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.delivered[self._logical[msg.topic()]] += 1
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = str(err)

    def send(self, topic: str, key: str | None, value: bytes, timestamp_ms: int) -> None:
        """Queue one record; when librdkafka's queue is full, serve it and retry."""
        name = self._names[topic]
        while True:
            try:
                self._producer.produce(name, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let librdkafka drain it
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._since_poll = 0
            self._producer.poll(0)

    def poll(self) -> None:
        """Serve delivery callbacks (called about once a second by the runner)."""
        self._producer.poll(0)

    def close(self, timeout: float = 60.0) -> int:
        """Wait for outstanding records; returns how many were never acknowledged."""
        remaining = int(self._producer.flush(timeout))
        if self.failed and self.first_error:
            raise BrokerError(
                f"{self.failed} records were not delivered (first error: {self.first_error}); "
                "check that the broker is up and the topics exist ('foresight topics create')"
            )
        if remaining:
            raise BrokerError(
                f"{remaining} records were still unacknowledged after {timeout:.0f}s; "
                f"is the broker at {self._brokers} reachable?")
        return 0
