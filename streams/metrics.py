"""Every Prometheus metric Foresight exports, in one place.

Names follow ``foresight_<thing>_<unit>`` with ``_total`` for counters; labels are bounded
(topics, event kinds, reasons, tables, rules: never a subscriber id). Every label value the
code can produce is pre-initialised to zero so dashboards and alerts see a series from the
first scrape instead of a gap. Tests pass their own ``CollectorRegistry``.
"""

from __future__ import annotations

import bisect
import threading
import typing
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from schemas.outputs import DeadLetterReason
from schemas.registry import CONTRACTS, INPUT_TOPICS, OUTPUT_TOPICS

# ``*_created`` series double every counter on the wire and no dashboard uses them.
disable_created_metrics()

#: who a stall is blamed on (streams.health.Verdict.component)
STALL_COMPONENTS = ("commit", "packer", "broker", "consumer")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: a live worker commits in tens of ms; a backlog shows up as seconds to minutes
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0, 30.0, 60.0, 300.0)
#: grace periods run from 0 s to hours; the watermark adds the lateness (2 s by default)
DETECT_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 86400)


class WeightedHistogram(Collector):
    """A label-less histogram that takes many equal observations in one call.

    ``prometheus_client``'s ``Histogram.observe`` takes one value at a time; the worker
    observes the latency of an envelope's records once per envelope (weight = its record
    count) so the cost stays per envelope, not per record. Exposed exactly like a
    ``Histogram`` (``_bucket{le}``, ``_count``, ``_sum``), so ``histogram_quantile`` works.
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, value: float, weight: int = 1) -> None:
        """Record ``weight`` observations of ``value``."""
        if weight <= 0:
            return
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[i] += weight
            self._sum += value * weight

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, acc = [], 0
        for bound, n in zip([*self.bounds, float("inf")], counts, strict=True):
            acc += n
            cumulative.append((_le(bound), acc))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative,
                                    sum_value=total)

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)


def _le(bound: float) -> str:
    """The ``le`` label as ``prometheus_client`` writes it (``0.05``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def kinds_of(topic: str) -> list[str]:
    """Every ``kind`` value the topic's contract allows (for pre-initialising labels)."""
    tp = CONTRACTS[topic].type
    args = typing.get_args(tp)
    members = typing.get_args(args[0]) if args else ()
    models = members or (tp,)
    out = []
    for m in models:
        field = m.model_fields.get("kind")
        if field is not None:
            out.extend(typing.get_args(field.annotation) or [field.default])
    return out


class Metrics:
    """The worker's metrics; one instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry, tables: Iterable[str] = (),
                 rules: Iterable[str] = ()) -> None:
        r = registry
        self.registry = registry
        self.input_events = Counter(
            "foresight_input_events_total", "Valid input events processed, by topic and kind.",
            ["topic", "kind"], registry=r)
        self.dead_letters = Counter(
            "foresight_dead_letters_total", "Inputs sent to dead-letters, by topic and reason.",
            ["topic", "reason"], registry=r)
        self.duplicates = Counter(
            "foresight_duplicate_records_total",
            "Input records skipped because their offset was already applied (redelivery).",
            ["topic"], registry=r)
        self.outputs = Counter(
            "foresight_output_records_total", "Records committed to output topics.",
            ["topic"], registry=r)
        self.envelopes = Counter(
            "foresight_envelopes_total", "Envelopes (packed batches) processed.", registry=r)
        self.envelope_events = Histogram(
            "foresight_envelope_events", "Input records per envelope.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r)
        self.state_updates = Counter(
            "foresight_state_updates_total", "State updates applied in memory, by table.",
            ["table"], registry=r)
        self.changelog_records = Counter(
            "foresight_changelog_records_total",
            "Changelog records written (one per changed key per commit), by table.",
            ["table"], registry=r)
        self.committed_records = Counter(
            "foresight_committed_records_total",
            "Input records whose effects (state, outputs, progress) are committed.", registry=r)
        self.commits = Counter(
            "foresight_commits_total", "Transactions committed (state + outputs + progress).",
            registry=r)
        self.commit_seconds = Histogram(
            "foresight_commit_duration_seconds", "Time to encode and commit one transaction.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.latency = WeightedHistogram(
            "foresight_processing_latency_seconds",
            "Per input record (valid or dead letter): from its Kafka timestamp on the input "
            "topic to the commit of the transaction holding its effects (observed per "
            "envelope, weighted by its records, at the envelope's mean timestamp).",
            PROCESSING_BUCKETS, registry=r)
        self.restore_records = Counter(
            "foresight_restore_records_total", "Changelog records read while restoring state.",
            ["table"], registry=r)
        self.restore_seconds = Counter(
            "foresight_restore_duration_seconds_total", "Time spent restoring state.",
            ["table"], registry=r)
        self.state_keys = Gauge(
            "foresight_state_keys",
            "Committed keys in the local store of each table (partitions this worker owns), "
            "counted at scrape time; RocksDB stores report RocksDB's estimate.",
            ["table"], registry=r)
        self.packer_records = Counter(
            "foresight_packer_records_total", "Input records packed into envelopes.",
            ["topic"], registry=r)
        self.packer_envelopes = Counter(
            "foresight_packer_envelopes_total", "Envelopes produced by the packer.", registry=r)
        self.stalled = Gauge(
            "foresight_worker_stalled",
            "1 while the worker has work and makes no progress, by the component blamed "
            "(commit, packer, broker, consumer); see /health for the reason.",
            ["component"], registry=r)
        self.commit_retries = Counter(
            "foresight_commit_retries_total",
            "Failed transaction attempts that were retried, by Kafka error (outages, fencing).",
            ["error"], registry=r)
        self.packer_restarts = Counter(
            "foresight_packer_restarts_total",
            "Times the packer process exited and was started again.", registry=r)
        self.input_lag = Gauge(
            "foresight_input_lag_records",
            "Input records the packer has not consumed yet (its assigned partitions).",
            registry=r)
        self.consumer_lag = Gauge(
            "foresight_consumer_lag_records",
            "Records of an input partition this worker's packer owns that are not yet handed "
            "over durably: high watermark minus the packer group's committed offset (what "
            "kafka-consumer-groups shows as LAG for <app id>-packer).",
            ["topic", "partition"], registry=r)
        self.commit_blocked = Gauge(
            "foresight_commit_blocked_seconds",
            "How long the transaction being committed has been retried (0 when commits "
            "succeed): broker outages, fencing.", registry=r)
        self.packed_lag = Gauge(
            "foresight_packed_lag_envelopes",
            "Envelopes on the packed topic this worker has not fetched yet.", registry=r)
        self.audit_alerts = Counter(
            "foresight_audit_alerts_total",
            "Audit episodes by rule and transition: fired (a hit), escalated, resolved, expired "
            "(its item left the unified view before it was fixed: check by hand).",
            ["rule", "transition"], registry=r)
        self.audit_open = Gauge(
            "foresight_audit_open_episodes",
            "Audit episodes firing now, by rule (partitions owned by this worker).",
            ["rule"], registry=r)
        self.audit_time_to_detect = Histogram(
            "foresight_audit_time_to_detect_seconds",
            "Event time from the start of an inconsistency (starts_at) to the decision to fire "
            "its alert (decided_at: the partition's event-time clock then): the rule's grace "
            "period plus the watermark's wait (lateness, and the next event on a quiet "
            "partition), by rule. Independent of replay speed and consumer lag.", ["rule"],
            buckets=DETECT_BUCKETS, registry=r)
        self.contact_decisions = Counter(
            "foresight_contact_decisions_total",
            "Contact-policy decisions (one per contact request) by purpose, channel, decision "
            "and primary reason (the first by the policy's precedence; 'none' when allowed).",
            ["purpose", "channel", "decision", "reason"], registry=r)
        self.contact_reasons = Counter(
            "foresight_contact_reasons_total",
            "Every reason code on a suppressed contact request (a decision with three reasons "
            "counts three times), by purpose and reason.", ["purpose", "reason"], registry=r)
        self.contact_shadow_disagreements = Counter(
            "foresight_contact_shadow_disagreements_total",
            "Requests the shadow (dry-run) policy decided differently from the live one, by "
            "live and shadow decision.", ["live", "shadow"], registry=r)
        for purpose in ("marketing", "service"):
            self.contact_decisions.labels(purpose, "telemarketing", "allow", "none")
        for live, shadow in (("allow", "suppress"), ("suppress", "allow")):
            self.contact_shadow_disagreements.labels(live, shadow)
        for rule in rules:
            for transition in ("fired", "escalated", "resolved", "expired"):
                self.audit_alerts.labels(rule, transition)
            self.audit_open.labels(rule)
            self.audit_time_to_detect.labels(rule)
        for component in STALL_COMPONENTS:
            self.stalled.labels(component)
        for topic in INPUT_TOPICS:
            for kind in kinds_of(topic):
                self.input_events.labels(topic, kind)
            for reason in DeadLetterReason:
                self.dead_letters.labels(topic, reason.value)
            self.duplicates.labels(topic)
            self.packer_records.labels(topic)
        for topic in OUTPUT_TOPICS:
            self.outputs.labels(topic)
        for table in tables:
            for m in (self.state_updates, self.changelog_records, self.restore_records,
                      self.restore_seconds, self.state_keys):
                m.labels(table)
        self._lag_series: set[tuple[str, str]] = set()
        self._lag_lock = threading.Lock()

    def set_consumer_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Set ``foresight_consumer_lag_records`` to exactly the partitions in ``lag``.

        Partitions the packer no longer owns lose their series (another worker reports
        them now), so ``sum by (topic)`` over all workers never counts one twice.
        """
        want = {(topic, str(p)): n for (topic, p), n in lag.items()}
        with self._lag_lock:
            for gone in self._lag_series - want.keys():
                self.consumer_lag.remove(*gone)
            for labels, n in want.items():
                self.consumer_lag.labels(*labels).set(n)
            self._lag_series = set(want)
