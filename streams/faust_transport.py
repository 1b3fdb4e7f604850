"""Faust's aiokafka transport with ``read_committed`` consumers.

Foresight commits state, outputs and progress in Kafka transactions; a worker reading a
changelog (standby replicas) or an output topic must never see an aborted transaction's
records. Faust only reads committed data in its own exactly-once mode, which Foresight
does not use (its open duplicate and crash reports), so this transport sets the isolation
level on the consumer it creates. Selected by the broker URL scheme ``foresight://``.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as _aiokafka


class _ReadCommittedThread(_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the constructor argument here and hands it to its fetcher at start()
        consumer._isolation_level = "read_committed"
        return consumer


class ReadCommittedConsumer(_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class Transport(_aiokafka.Transport):
    """aiokafka transport whose worker consumer reads only committed records."""

    Consumer = ReadCommittedConsumer


def register() -> None:
    """Make ``foresight://host:port`` broker URLs select this transport."""
    TRANSPORTS.aliases.setdefault("foresight", f"{__name__}:Transport")


def consumer_lag(app: Any, topic: str) -> int:
    """Records of ``topic`` (in this worker's assignment) that Faust's consumer has not
    fetched yet: last stable offset minus position, as aiokafka last saw them (no request).

    For the health check only; reads aiokafka's subscription state the way Faust's own
    stall monitor (``verify_event_path``) does, and answers 0 when it cannot tell.
    """
    try:
        consumer = app.consumer._thread._ensure_consumer()
        assignment = consumer._fetcher._subscriptions.subscription.assignment
        lag = 0
        for tp in assignment.tps:
            if tp.topic != topic:
                continue
            state = assignment.state_value(tp)
            end = state.lso if state.lso is not None else state.highwater
            if end is not None and state.has_valid_position:
                lag += max(0, end - state.position)
        return lag
    except Exception:  # not started, rebalancing, or internals moved
        return 0
