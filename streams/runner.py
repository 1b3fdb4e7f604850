"""Glue between a Faust agent, the :class:`BatchUnit` and the transactional committer.

The agent feeds envelopes and never waits for Kafka; a commit loop wakes when something
was fed (:attr:`UnitRunner.work`) and commits it, at least ``commit_interval_ms`` after the
previous commit ended (and the agent commits early when too much is pending). Envelopes
are acknowledged to Faust only after the transaction holding their effects has committed,
so Faust's own offset commits never run ahead of the state and outputs: after a crash the
worker re-reads at most what was not yet committed, and the unit skips what was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from schemas.registry import ALERTS, CONTACT_DECISIONS
from streams.committer import CommitFailed, TransactionalCommitter
from streams.envelope import EnvelopeError
from streams.metrics import Metrics
from streams.unit import BatchUnit, Commit, Stats

log = logging.getLogger(__name__)


class UnitRunner:
    """Feeds a :class:`BatchUnit` from Faust events and commits it transactionally."""

    def __init__(
        self,
        unit: BatchUnit,
        committer: TransactionalCommitter,
        metrics: Metrics,
        *,
        max_pending_events: int = 100_000,
    ) -> None:
        self.unit = unit
        self.committer = committer
        self.metrics = metrics
        self.max_pending_events = max_pending_events
        self._acks: list[tuple[Any, Any]] = []
        #: (records, sum of their Kafka timestamps in ms) per envelope fed since the last
        #: snapshot: their latency is observed once the transaction holding them commits
        self._fed: list[tuple[int, int]] = []
        self._lock = asyncio.Lock()
        #: set when something was fed since the last commit: the commit loop sleeps on it
        self.work = asyncio.Event()
        self.commits = 0
        self.events = 0
        self.skipped = 0  # redelivered records skipped by offset (progress, for the watchdog)
        self.committed_records = 0
        self.last_commit_monotonic = time.monotonic()
        #: set by :meth:`final_commit`: nothing is committed after it
        self.closed = False
        #: records of the transaction being committed (the watchdog counts them as work)
        self.in_flight = 0

    def feed(self, stream: Any, event: Any) -> Stats:
        """Process one envelope event; it is acked after the next commit."""
        try:
            stats = self.unit.process_envelope(event.value)
        except EnvelopeError as exc:
            msg = event.message
            log.error("not an envelope at %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
            stats = self.unit.reject_envelope(msg.topic, msg.partition, msg.offset,
                                              event.value or b"", str(exc))
        self._acks.append((stream, event))
        self.work.set()
        self._count(stats)
        return stats

    def _count(self, stats: Stats) -> None:
        m = self.metrics
        m.envelopes.inc()
        m.envelope_events.observe(stats.records)
        for (topic, kind), n in stats.events.items():
            m.input_events.labels(topic, kind).inc(n)
        for (topic, reason), n in stats.dead.items():
            m.dead_letters.labels(topic, reason).inc(n)
        for topic, n in stats.duplicates.items():
            m.duplicates.labels(topic).inc(n)
            self.skipped += n
        self.events += stats.records
        if stats.records:
            self._fed.append((stats.records, stats.timestamp_sum_ms))

    def should_commit_now(self) -> bool:
        return self.unit.pending() >= self.max_pending_events

    async def commit(self) -> Commit | None:
        """Commit everything fed so far, then ack it. Serialised: one transaction at a time."""
        async with self._lock:
            if self.closed:
                return None
            started = time.perf_counter()
            fired = self.unit.tick()  # idle partitions' clocks follow the wall clock
            if fired:
                log.debug("%d timers fired on idle partitions", fired)
            commit = self.unit.snapshot()
            acks, self._acks = self._acks, []
            fed, self._fed = self._fed, []
            self.work.clear()
            if commit is not None:
                self.in_flight = commit.events
                try:
                    offsets = await asyncio.to_thread(self.committer.commit, commit)
                finally:
                    self.in_flight = 0
                self.unit.complete(commit, offsets)
                self._observe(commit, started, fed)
            for stream, event in acks:
                await stream.ack(event)
            self.last_commit_monotonic = time.monotonic()
            return commit

    async def final_commit(self, timeout: float) -> None:
        """Commit what was processed before the worker stops, within ``timeout``.

        Past the timeout (the broker is away) the commit is abandoned: nothing of it was
        visible, and the next owner of the partitions processes those records again.
        """
        try:
            await asyncio.wait_for(self.commit(), timeout)
        except TimeoutError:
            self.committer.abandon()
            log.warning("the final commit did not finish within %.1fs; its %d records are "
                        "processed again by the next owner of their partitions", timeout,
                        self.unit.pending())
        except CommitFailed as exc:
            log.warning("the final commit failed (%s); its records are processed again by the "
                        "next owner of their partitions", exc)
        finally:
            self.closed = True
            self.committer.abandon()

    def _observe(self, commit: Commit, started: float, fed: list[tuple[int, int]]) -> None:
        m = self.metrics
        self.commits += 1
        m.commits.inc()
        m.committed_records.inc(commit.events)
        self.committed_records += commit.events
        m.commit_seconds.observe(time.perf_counter() - started)
        # per record, observed per envelope: its n records at their mean Kafka timestamp
        # (the sum of their latencies is exact; a record's bucket is off by at most the
        # envelope's spread of timestamps, about the linger while the worker keeps up)
        committed_ms = time.time() * 1000.0
        for n, ts_sum in fed:
            m.latency.observe(max(0.0, (committed_ms - ts_sum / n) / 1000.0), n)
        for table, n in commit.updates.items():
            m.state_updates.labels(table).inc(n)
        for (table, _p), records in commit.changelog.items():
            m.changelog_records.labels(table).inc(len(records))
        out: dict[str, int] = {}
        for topic, _k, _v in commit.outputs:
            out[topic] = out.get(topic, 0) + 1
        for topic, n in out.items():
            m.outputs.labels(topic).inc(n)
        for o in commit.models:
            if o.topic == ALERTS:
                self._observe_alert(o.value)
            elif o.topic == CONTACT_DECISIONS:
                self._observe_decision(o.value)

    def _observe_decision(self, d: Any) -> None:
        m = self.metrics
        purpose = d.purpose or "unknown"
        m.contact_decisions.labels(purpose, d.channel, d.decision,
                                   d.reasons[0] if d.reasons else "none").inc()
        for reason in d.reasons:
            m.contact_reasons.labels(purpose, reason).inc()
        if d.shadow is not None and not d.shadow.agrees:
            m.contact_shadow_disagreements.labels(d.decision, d.shadow.decision).inc()

    def _observe_alert(self, alert: Any) -> None:
        m = self.metrics
        rule = alert.rule_id
        if alert.status == "resolved":
            m.audit_alerts.labels(rule, "expired" if "expired" in alert.annotations
                                  else "resolved").inc()
            m.audit_open.labels(rule).dec()
        elif alert.sequence == 1:
            m.audit_alerts.labels(rule, "fired").inc()
            m.audit_open.labels(rule).inc()
            # event time only: the instant the watermark decided (grace + watermark wait)
            # minus the episode's start; detected_at (wall clock) minus starts_at (event
            # time) would measure the replay's age, not the audit
            if alert.decided_at is not None:
                m.audit_time_to_detect.labels(rule).observe(
                    max(0.0, (alert.decided_at - alert.starts_at).total_seconds()))
        else:
            m.audit_alerts.labels(rule, "escalated").inc()

    def recount_open_episodes(self, partitions: Any) -> None:
        """Set the open-episode gauges from the audit table after a rebalance or restore."""
        if "audit" not in self.unit.tables:
            return
        from agents.audit.episodes import open_episodes

        counts: dict[str, int] = {}
        for state in self.unit.states("audit", partitions):
            for rule, n in open_episodes(state).items():
                counts[rule] = counts.get(rule, 0) + n
        for rule, n in counts.items():
            self.metrics.audit_open.labels(rule).set(n)
