"""Deliver the ``alerts`` topic to Prometheus Alertmanager (API v2), at least once.

One process, one thread, one loop: read committed records (its own consumer group), queue
them (bounded: :mod:`sinks.outbox`), post the head batch to ``POST /api/v2/alerts``, commit
the batch's offsets only after a 2xx, and re-send every firing alert each
``resend_interval`` (:mod:`sinks.firing`) as Prometheus does. Why a single thread: the
order of commits must follow the order of acceptance, and a POST is milliseconds; while
Alertmanager is away the loop keeps reading into the queue (nothing else waits), and once
the queue is full it pauses its partitions instead of dropping anything.

On assignment of a partition the firing set is rebuilt from the partition's records of the
last ``rebuild_max_age`` (default 30 d, the topic's retention) up to the group's committed
offset, so a restarted sink re-sends what still fires without posting history again; a
group that never committed starts at the end of the topic (what fires is re-sent, what
already resolved is not posted). The rebuild reads the topic itself (no compacted view:
``alerts`` is keyed by fingerprint but not compacted, and records are small: 30 days of a
large operator's alerts is a few hundred MB read once at start).

The sink never logs phone numbers or subscriber ids: fingerprints, rule ids, offsets.
"""

from __future__ import annotations

import http.client
import logging
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from pydantic import ValidationError

from schemas.outputs import Alert, DeadLetterReason
from schemas.registry import ALERTS, DEAD_LETTERS
from sinks.alertmanager_config import AlertmanagerSinkConfig
from sinks.alertmanager_mapping import to_postable
from sinks.firing import FiringAlerts
from sinks.outbox import Backoff, Outbox, Pending, transient
from streams.decoding import Rejected, dead_letter
from streams.logs import Throttle, client_logging
from streams.retry import retry_transient
from streams.settings import Settings

log = logging.getLogger("foresight.sink.alertmanager")
disable_created_metrics()

#: ``post(url, body, timeout) -> (HTTP status or 0 when there was no answer, text)``
Post = Callable[[str, bytes, float], tuple[int, str]]
SINK = "alertmanager"


def post_json(url: str, body: bytes, timeout: float) -> tuple[int, str]:
    """POST ``body`` as JSON; (status, first 2000 characters of the answer or the error)."""
    # the URL's scheme is checked (http/https) by AlertmanagerSinkConfig
    req = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
            return r.status, r.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


class SinkMetrics:
    """The sink's own registry, served on its own port (it is not a worker)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.sent = Counter("foresight_sink_alerts_sent_total", "alerts Alertmanager accepted "
                            "(new: from the topic; resend: firing alerts sent again)",
                            ["sink", "kind"], registry=r)
        self.failed = Counter("foresight_sink_alerts_failed_total", "alerts in posts that were "
                              "not accepted (unavailable: no answer/5xx; rejected: 4xx)",
                              ["sink", "reason"], registry=r)
        self.retries = Counter("foresight_sink_retries_total", "posts tried again after a failure",
                               ["sink"], registry=r)
        self.dead = Counter("foresight_sink_dead_letters_total", "records written to dead-letters",
                            ["sink", "reason"], registry=r)
        self.queue_depth = Gauge("foresight_sink_queue_depth", "records read and not yet accepted",
                                 ["sink"], registry=r)
        self.last_success = Gauge("foresight_sink_last_success_timestamp_seconds",
                                  "wall-clock time of the last accepted post", ["sink"], registry=r)
        self.firing = Gauge("foresight_sink_firing_alerts", "firing alerts re-sent periodically",
                            ["sink"], registry=r)
        self.paused = Gauge("foresight_sink_backpressure", "1 while the queue is full and "
                            "reading is paused", ["sink"], registry=r)
        for kind in ("new", "resend"):
            self.sent.labels(SINK, kind)
        for reason in ("unavailable", "rejected"):
            self.failed.labels(SINK, reason)
        self.retries.labels(SINK)
        for dl in (DeadLetterReason.DELIVERY_FAILED, DeadLetterReason.INVALID,
                   DeadLetterReason.NOT_JSON):
            self.dead.labels(SINK, dl.value)


def parse_alert(value: bytes) -> Alert | Rejected:
    """The record as an :class:`Alert`, or why it is not one."""
    try:
        return Alert.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return Rejected(DeadLetterReason.NOT_JSON, first["msg"])
        return Rejected(DeadLetterReason.INVALID, str(exc)[:1500])


class AlertmanagerSink:
    """``run(stop)`` until ``stop`` is set; see the module docstring."""

    def __init__(self, settings: Settings, config: AlertmanagerSinkConfig, *,
                 post: Post = post_json, metrics: SinkMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.config = config
        self.topic = settings.topic(ALERTS)
        self.group = config.group or f"{settings.app_id}-sink-alertmanager"
        self.post = post
        self.metrics = metrics or SinkMetrics()
        self.clock = clock
        self.wall = wall
        self.outbox = Outbox(config.queue_size, config.batch_size,
                             Backoff(config.backoff_initial_s, config.backoff_max_s),
                             config.reject_attempts)
        self.firing: FiringAlerts[Alert] = FiringAlerts(config.resend_interval_s)
        self._resend_failures = 0
        self._resend_not_before = 0.0
        self._paused = False
        self._consumer: Any = None
        self._producer: Any = None
        self._throttle = Throttle(60.0)
        self.accepted_posts = 0
        self._failing_since: float | None = None

    # --- Kafka ---------------------------------------------------------------------------
    def _kafka(self) -> dict[str, Any]:
        return client_logging(self.settings.kafka_client_config())

    def _consumer_config(self) -> dict[str, Any]:
        return {**self._kafka(), "group.id": self.group, "isolation.level": "read_committed",
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": int(self.settings.session_timeout_s * 1000)}

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Start each partition where the group left it (its end if it never committed),
        after rebuilding the partition's firing alerts from the records before that."""
        committed = retry_transient(lambda: consumer.committed(partitions, timeout=30),
                                    what="committed offsets")
        targets: dict[int, int] = {}
        fresh: list[TopicPartition] = []
        for tp in committed:
            if tp.offset >= 0:
                targets[tp.partition] = tp.offset
            else:
                _, hi = retry_transient(lambda tp=tp: consumer.get_watermark_offsets(tp, timeout=30),
                                        what="end offsets")
                targets[tp.partition] = hi
                fresh.append(TopicPartition(self.topic, tp.partition, hi))
        rebuilt = self._rebuild(targets)
        assigned = [TopicPartition(self.topic, p, off) for p, off in targets.items()]
        consumer.assign(assigned)
        if fresh:  # a restart must not skip what arrives meanwhile: remember where we began
            consumer.commit(offsets=fresh, asynchronous=False)
        if self._paused:
            consumer.pause(assigned)
        log.info("assigned %s partitions %s; %d firing alerts rebuilt", self.topic,
                 sorted(targets), rebuilt)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        gone = [tp.partition for tp in partitions]
        self.outbox.drop_partitions(gone)
        self.firing.drop_partitions(gone)
        log.info("revoked partitions %s of %s", sorted(gone), self.topic)

    def _rebuild(self, targets: dict[int, int], timeout_s: float = 120.0) -> int:
        """Apply every record of the last ``rebuild_max_age`` before ``targets`` to the
        firing set (nothing is posted here; what fires is due for a re-send at once)."""
        since_ms = int((self.wall().timestamp() - self.config.rebuild_max_age_s) * 1000)
        c = Consumer({**self._kafka(), "group.id": f"{self.group}-rebuild",
                      "isolation.level": "read_committed", "enable.auto.commit": False})
        try:
            starts = c.offsets_for_times([TopicPartition(self.topic, p, since_ms) for p in targets],
                                         timeout=30)
            todo = {tp.partition: targets[tp.partition] for tp in starts
                    if 0 <= tp.offset < targets[tp.partition]}
            if not todo:
                return 0
            c.assign([tp for tp in starts if tp.partition in todo])
            deadline = time.monotonic() + timeout_s
            n = 0
            while todo and time.monotonic() < deadline:
                for m in c.consume(1000, 0.5):
                    if m.error() is not None or m.partition() not in todo:
                        continue
                    if m.offset() >= todo[m.partition()]:
                        continue
                    alert = parse_alert(m.value() or b"")
                    if isinstance(alert, Alert):
                        self.firing.apply(m.partition(), alert.fingerprint, alert.sequence,
                                          alert.status, alert, scheduled=None)
                        n += 1
                pos = c.position([TopicPartition(self.topic, p) for p in todo])
                for tp in pos:
                    if tp.offset != OFFSET_INVALID and tp.offset >= todo[tp.partition]:
                        del todo[tp.partition]
            if todo:
                log.warning("rebuild of %s partitions %s did not reach the committed offsets in "
                            "%.0fs; their older firing alerts are not re-sent until they change",
                            self.topic, sorted(todo), timeout_s)
            return len(self.firing)
        finally:
            c.close()

    def _commit(self, offsets: dict[int, int]) -> None:
        if not offsets:
            return
        owned = {tp.partition for tp in self._consumer.assignment()}
        tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items() if p in owned]
        if not tps:
            return
        try:
            self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            # accepted but not committed: redelivered later, and a duplicate post is harmless
            log.warning("could not commit %s: %s", tps, exc.args[0])

    def _dead_letters(self, items: list[tuple[Pending, Rejected]]) -> None:
        """Write dead letters and wait until the broker has them (then the caller commits)."""
        if not items:
            return
        if self._producer is None:
            self._producer = Producer({**self._kafka(), "enable.idempotence": True, "linger.ms": 5})
        now = self.wall()
        for item, why in items:
            dl = dead_letter(why, topic=ALERTS, partition=item.partition, offset=item.offset,
                             timestamp_ms=None, key=item.key, value=item.value,
                             worker=self.config.sink_id, now=now)
            self._producer.produce(self.settings.topic(DEAD_LETTERS), dl.model_dump_json().encode(),
                                   key=ALERTS.encode())
            self.metrics.dead.labels(SINK, why.reason).inc()
            if isinstance(item.alert, Alert):
                self.firing.forget(item.partition, item.alert.fingerprint)
            log.error("dead letter: %s[%d]@%d: %s", self.topic, item.partition, item.offset,
                      why.error[:300])
        while self._producer.flush(10) > 0:
            log.warning("waiting for the broker to take %d dead letters", len(self._producer))

    # --- the loop ------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self._consumer = Consumer(self._consumer_config())
        self._consumer.subscribe([self.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)
        log.info("delivering %s to %s (group %s)", self.topic, self.config.alerts_endpoint,
                 self.group)
        try:
            while not stop.is_set():
                self.step()
        finally:
            self._consumer.close()
            if self._producer is not None:
                self._producer.flush(10)

    def step(self) -> None:
        """Read what fits, deliver the head batch if due, re-send what is due."""
        self._read()
        self._deliver()
        self._resend()
        self.metrics.queue_depth.labels(SINK).set(len(self.outbox))
        self.metrics.firing.labels(SINK).set(len(self.firing))

    def _read(self) -> None:
        consumer = self._consumer
        if self.outbox.full != self._paused:
            self._paused = self.outbox.full
            parts = consumer.assignment()
            (consumer.pause if self._paused else consumer.resume)(parts)
            self.metrics.paused.labels(SINK).set(int(self._paused))
            if self._paused:
                log.warning("queue full (%d records): reading paused until Alertmanager "
                            "accepts", len(self.outbox))
        now = self.clock()
        wake = self.outbox.wake_at()
        ready = wake is not None and wake <= now
        timeout = 0.0 if ready else 0.2 if wake is None else min(0.2, max(0.0, wake - now))
        room = max(1, self.outbox.capacity - len(self.outbox))
        for m in consumer.consume(min(room, self.config.batch_size), timeout):
            if m.error() is not None:
                if self._throttle.allow(("consume", str(m.error()))):
                    log.warning("consuming %s: %s", self.topic, m.error())
                continue
            value = m.value() or b""
            alert = parse_alert(value)
            if isinstance(alert, Rejected):
                self.outbox.add(Pending(m.partition(), m.offset(), m.key(), value, None, alert))
                continue
            self.firing.apply(m.partition(), alert.fingerprint, alert.sequence, alert.status,
                              alert, scheduled=self.clock())
            self.outbox.add(Pending(m.partition(), m.offset(), m.key(), value, alert))

    def _postables(self, alerts: list[Alert]) -> bytes:
        now = self.wall()
        return orjson.dumps([to_postable(a, view_url=self.config.view_url, now=now,
                                         valid_for_s=self.config.valid_for_s) for a in alerts])

    def _deliver(self) -> None:
        invalid = self.outbox.invalid()
        if invalid:
            self._dead_letters([(p, p.error) for p in invalid])
            self._commit({p.partition: p.offset + 1 for p in invalid})
        batch = self.outbox.next_batch(self.clock())
        if batch is None:
            return
        alerts = [p.alert for p in batch.items]
        status, text = self.post(self.config.alerts_endpoint, self._postables(alerts),
                                 self.config.timeout_s)
        now = self.clock()
        if 200 <= status < 300:
            outcome = self.outbox.accepted()
            self._commit(outcome.commit)
            self.firing.sent([a.fingerprint for a in alerts if a.status == "firing"], now)
            self._success(len(alerts), "new")
            return
        reason = "unavailable" if transient(status) else "rejected"
        self.metrics.failed.labels(SINK, reason).inc(len(alerts))
        outcome = self.outbox.failed(status, text, now)
        if outcome.dead:
            self._dead_letters([(p, Rejected(DeadLetterReason.DELIVERY_FAILED, why))
                                for p, why in outcome.dead])
            self._commit(outcome.commit)
        else:
            self.metrics.retries.labels(SINK).inc()
            if self._failing_since is None:
                self._failing_since = now
            if self._throttle.allow(("post", reason)):
                held = self._throttle.released
                log.warning("Alertmanager did not accept %d alerts (HTTP %s: %s); trying again "
                            "in %.1fs%s", len(alerts), status or "-", text[:200],
                            outcome.retry_in or 0.0,
                            f" ({held} similar failures in the last minute)" if held else "")

    def _resend(self) -> None:
        now = self.clock()
        if now < self._resend_not_before or self.outbox.wake_at() is not None:
            return  # Alertmanager is failing the head batch: re-sends wait for it
        due = self.firing.due(now, limit=self.config.batch_size)
        if not due:
            return
        alerts = [a for _, a in due]
        status, text = self.post(self.config.alerts_endpoint, self._postables(alerts),
                                 self.config.timeout_s)
        now = self.clock()
        if 200 <= status < 300:
            self.firing.sent([fp for fp, _ in due], now)
            self._resend_failures = 0
            self._success(len(alerts), "resend")
            return
        self._resend_failures += 1
        self._resend_not_before = now + self.outbox.backoff.delay(self._resend_failures)
        self.metrics.failed.labels(SINK, "unavailable" if transient(status) else "rejected").inc(len(alerts))
        self.metrics.retries.labels(SINK).inc()
        if self._throttle.allow(("resend", status)):
            log.warning("re-sending %d firing alerts failed (HTTP %s: %s)", len(alerts),
                        status or "-", text[:200])

    def _success(self, n: int, kind: str) -> None:
        if self._failing_since is not None:
            log.warning("Alertmanager accepts again after %.1fs of failures; %d records "
                        "queued", self.clock() - self._failing_since, len(self.outbox))
            self._failing_since = None
        self.accepted_posts += 1
        self.metrics.sent.labels(SINK, kind).inc(n)
        self.metrics.last_success.labels(SINK).set(time.time())


def run_sink(settings: Settings, config: AlertmanagerSinkConfig) -> int:
    """The ``foresight sink alertmanager`` process: metrics server, signals, the loop."""
    from prometheus_client import start_http_server

    from streams.topics import ensure_topics

    ensure_topics(settings)
    sink = AlertmanagerSink(settings, config)
    server = None
    if config.metrics_port:
        server, _ = start_http_server(config.metrics_port, addr=config.metrics_host,
                                      registry=sink.metrics.registry)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the post in flight, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sink.run(stop)
    finally:
        if server is not None:
            server.shutdown()
    return 0
