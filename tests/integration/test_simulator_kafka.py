"""A short simulation into the real local Kafka reads back exactly as reported."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from schemas.registry import INPUT_TOPICS
from streams.settings import Settings
from streams.simulator.clock import parse_start
from streams.simulator.config import SimConfig
from streams.simulator.producer import KafkaSink
from streams.simulator.runner import run_simulation
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration


def _read_back(settings: Settings, expected: int, timeout: float = 90.0) -> Counter[str]:
    from confluent_kafka import Consumer

    consumer = Consumer({
        **settings.kafka_client_config(),
        "group.id": f"{settings.app_id}-readback",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    names = {settings.topic(t): t for t in INPUT_TOPICS}
    consumer.subscribe(list(names))
    counts: Counter[str] = Counter()
    keys_ok = True
    deadline = time.monotonic() + timeout
    try:
        while sum(counts.values()) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    continue
                counts[names[msg.topic()]] += 1
                keys_ok = keys_ok and msg.key() is not None
        # anything beyond what was reported would show up within a moment
        for msg in consumer.consume(10_000, timeout=2.0):
            if not msg.error():
                counts[names[msg.topic()]] += 1
    finally:
        consumer.close()
    assert keys_ok, "every simulator record is keyed (subscriber, cell or line id)"
    return counts


def test_simulation_into_kafka_reads_back_per_topic(isolated: Settings) -> None:
    ensure_topics(isolated)
    cfg = SimConfig(seed=21, subscribers=300, start_ms=parse_start(None), horizon_s=2 * 3600,
                    faults_per_rule=3)
    result = run_simulation(cfg, KafkaSink(isolated), speed=0, rate=0, events=6000,
                            progress=False)
    reported = result.summary["topics"]
    assert sum(reported.values()) == result.summary["records"] > 6000
    assert result.delivered == Counter(reported)          # every record acknowledged
    assert set(reported) == set(INPUT_TOPICS)
    assert _read_back(isolated, sum(reported.values())) == Counter(reported)
