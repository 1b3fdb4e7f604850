"""The Kafka side of Foresee's single learner: examples in, model versions out.

* :func:`run_learner` (``foresight models learn``): consumes ``model-examples`` (group
  ``<app>-learner``, ``read_committed``), learns with :class:`agents.foresee.learner.Learner`,
  and every ``interval`` publishes a snapshot of each model that learned to the compacted
  ``models`` topic **in the same transaction** as the consumed offsets. A restart loads
  the newest versions from ``models`` and resumes at the committed offsets: every example
  is learned once, and the published model is always the one those offsets describe.
* :class:`ModelLoader` (every worker with the ``foresee`` step): reads ``models`` from the
  beginning (no group) and swaps newer versions into the worker's model store.
* :func:`read_models`: the newest snapshot per model (``foresight models list/show``).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from agents.foresee.catalog import load_catalog
from agents.foresee.learner import Learner, restore, trained_from
from agents.foresee.models import ModelStore
from schemas.models import ModelExample, ModelSnapshot
from schemas.registry import MODEL_EXAMPLES, MODELS
from streams.settings import Settings

log = logging.getLogger(__name__)


def _consumer(settings: Settings, group: str | None = None) -> Consumer:
    conf = dict(settings.kafka_client_config())
    conf.update({"group.id": group or f"{settings.app_id}-models-reader-unused",
                 "enable.auto.commit": False, "auto.offset.reset": "earliest",
                 "isolation.level": "read_committed", "enable.partition.eof": True})
    return Consumer(conf)


def read_models(settings: Settings, timeout: float = 10.0) -> dict[str, ModelSnapshot]:
    """The newest published snapshot of every model (reads ``models`` to its end)."""
    c = _consumer(settings)
    topic = settings.topic(MODELS)
    try:
        md = c.list_topics(topic, timeout=timeout)
        parts = md.topics.get(topic)
        if parts is None or parts.error is not None:
            return {}
        c.assign([TopicPartition(topic, p, 0) for p in parts.partitions])
        left = set(parts.partitions)
        out: dict[str, ModelSnapshot] = {}
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    left.discard(m.partition())
                continue
            snap = ModelSnapshot.model_validate_json(m.value())
            cur = out.get(snap.model)
            if cur is None or snap.version >= cur.version:
                out[snap.model] = snap
        return out
    finally:
        c.close()


class ModelLoader(threading.Thread):
    """Follows the ``models`` topic and hot-swaps newer versions into ``store``."""

    def __init__(self, settings: Settings, store: ModelStore) -> None:
        super().__init__(name="foresee-model-loader", daemon=True)
        self.settings = settings
        self.store = store
        self.stopping = threading.Event()
        self.loaded = 0

    def run(self) -> None:
        topic = self.settings.topic(MODELS)
        c = None
        while not self.stopping.is_set():
            try:
                if c is None:
                    c = _consumer(self.settings)
                    md = c.list_topics(topic, timeout=10)
                    parts = md.topics.get(topic)
                    if parts is None or not parts.partitions:
                        c.close()
                        c = None
                        self.stopping.wait(2.0)
                        continue
                    c.assign([TopicPartition(topic, p, 0) for p in parts.partitions])
                m = c.poll(0.5)
                if m is None or m.error():
                    continue
                snap = ModelSnapshot.model_validate_json(m.value())
                if self.store.offer(trained_from(snap)):
                    self.loaded += 1
                    log.info("foresee: loaded model %s (%d examples)", snap.version,
                             snap.examples)
            except Exception as exc:  # a bad record or a broker hiccup: keep the model held
                log.warning("foresee model loader: %s", exc)
                self.stopping.wait(1.0)
        if c is not None:
            c.close()


def start_model_loader(settings: Settings, store: ModelStore) -> ModelLoader:
    loader = ModelLoader(settings, store)
    loader.start()
    return loader


def run_learner(settings: Settings, *, interval_s: float = 2.0, max_seconds: float | None = None,
                estimator: str | None = None, metrics: Any = None) -> Learner:
    """Learn from ``model-examples`` and publish versions to ``models`` (exactly once)."""
    from streams.topics import ensure_topics

    ensure_topics(settings)
    catalog = load_catalog(settings.foresee_catalog, estimator=estimator)
    learner = Learner(catalog)
    n = restore(learner, list(read_models(settings).values()))
    log.info("learner: restored %d model versions", n)
    conf = dict(settings.kafka_client_config())
    group = f"{settings.app_id}-learner"
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    producer = Producer({**conf, "transactional.id": f"{settings.app_id}-learner",
                         "enable.idempotence": True, "linger.ms": 5,
                         "message.max.bytes": 8 * 1024 * 1024})
    producer.init_transactions(30)
    consumer.subscribe([settings.topic(MODEL_EXAMPLES)])
    models_topic = settings.topic(MODELS)
    started = time.monotonic()
    last = time.monotonic()
    offsets: dict[tuple[str, int], int] = {}
    def publish() -> None:
        """The new versions and the offsets they learned up to, in one transaction."""
        producer.begin_transaction()
        for snap in learner.snapshots(datetime.now(UTC)):
            producer.produce(models_topic, snap.model_dump_json().encode(),
                             snap.model.encode())
            if metrics is not None:
                metrics(snap)
        producer.send_offsets_to_transaction(
            [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        log.info("learner: published; offsets %s", offsets)
        offsets.clear()

    try:
        try:
            while max_seconds is None or time.monotonic() - started < max_seconds:
                for m in consumer.consume(500, 0.5):
                    if m.error():
                        continue
                    try:
                        learner.learn(ModelExample.model_validate_json(m.value()))
                    except ValueError as exc:
                        log.warning("learner: skipping an invalid example: %s", exc)
                    offsets[(m.topic(), m.partition())] = m.offset() + 1
                if offsets and time.monotonic() - last >= interval_s:
                    publish()
                    last = time.monotonic()
        except KeyboardInterrupt:
            pass   # SIGTERM / Ctrl-C: publish what was learned, then leave the group
        if offsets:
            publish()
    except KafkaException as exc:
        log.error("learner: %s", exc)
        raise
    finally:
        consumer.close()
    return learner
