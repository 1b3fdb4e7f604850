"""Every Prometheus metric Foresight exports, in one place.

Names follow ``foresight_<thing>_<unit>`` with ``_total`` for counters; labels are bounded
(topics, event kinds, reasons, tables, rules: never a subscriber id). Every label value the
code can produce is pre-initialised to zero so dashboards and alerts see a series from the
first scrape instead of a gap. Tests pass their own ``CollectorRegistry``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from schemas.outputs import DeadLetterReason
from schemas.registry import CONTRACTS, INPUT_TOPICS, OUTPUT_TOPICS

# ``*_created`` series double every counter on the wire and no dashboard uses them.
disable_created_metrics()

#: who a stall is blamed on (streams.health.Verdict.component)
STALL_COMPONENTS = ("commit", "packer", "broker", "consumer")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
        self.latency = Histogram(
            "foresight_processing_latency_seconds",
            "From an input record's Kafka timestamp to the commit of its effects.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.restore_records = Counter(
            "foresight_restore_records_total", "Changelog records read while restoring state.",
            ["table"], registry=r)
        self.restore_seconds = Counter(
            "foresight_restore_duration_seconds_total", "Time spent restoring state.",
            ["table"], registry=r)
        self.state_keys = Gauge(
            "foresight_state_keys", "Keys held locally, by table.", ["table"], registry=r)
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
            "From the start of an inconsistency (event time) to its alert (wall clock): the "
            "grace period plus the detection delay, by rule.", ["rule"],
            buckets=(1, 10, 60, 300, 600, 1800, 3600, 7200, 14400, 86400), registry=r)
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
