"""The processing unit: a batch of input records through the pure pipeline, state coalesced.

One :class:`BatchUnit` per worker runs every pipeline step over whatever partitions Faust
assigned. It is deliberately free of Kafka and asyncio so the same object runs in unit
tests, in replays and behind the Faust agent:

* ``process_envelope`` / ``process_record`` decode, deduplicate, validate and apply the
  steps; state changes stay in a **record cache** (decoded dicts) and a key changed many
  times is written once, like Kafka Streams' cache.
* timers of steps with grace periods fire when the partition's event-time clock passes
  them (:mod:`streams.timers`); a key's due timer also fires just before a later event for
  that key is applied, so an episode is judged on what held until its deadline.
* ``snapshot`` freezes everything since the last commit into a :class:`Commit` (changelog
  records, outputs, progress, clocks, timers) that the committer writes in one Kafka
  transaction; ``complete`` then moves it into the local stores.

**Progress** is the highest source offset applied per ``(input topic, partition)``; it is
changelogged with the state in the same transaction, so after a crash the restored state
and progress agree exactly, and redelivered records (a replayed envelope, a re-packed
batch) are skipped by offset.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from agents.core import EventContext, Output, Processor, Result, State
from schemas.outputs import DeadLetterReason
from schemas.registry import DEAD_LETTERS, INPUT_TOPICS
from streams.decoding import Rejected, TimeBounds, dead_letter, decode_record
from streams.envelope import unpack
from streams.timers import PartitionTimers, split_timer_key, timer_key

log = logging.getLogger(__name__)

PROGRESS_TABLE = "progress"
TIMERS_TABLE = "timers"
_CLOCK_KEY = "\x00clock"

class PartitionStore(Protocol):
    """Where committed state lives (a :class:`streams.store.TableStore` in the worker)."""

    def get(self, partition: int, key: str) -> bytes | None: ...

    def write(self, partition: int, items: Iterable[tuple[str, bytes | None]],
              offset: int | None) -> None: ...

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]: ...


class DictStore:
    """A :class:`PartitionStore` in plain dicts, for tests, replays and the reference path."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, bytes]] = {}

    def get(self, partition: int, key: str) -> bytes | None:
        return self.parts.get(partition, {}).get(key)

    def write(self, partition: int, items: Iterable[tuple[str, bytes | None]],
              offset: int | None) -> None:
        part = self.parts.setdefault(partition, {})
        for k, v in items:
            if v is None:
                part.pop(k, None)
            else:
                part[k] = v

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        return iter(list(self.parts.get(partition, {}).items()))


def system_tables(processors: Sequence[Processor]) -> tuple[str, ...]:
    """The unit's own tables a pipeline needs besides one per step."""
    timed = any(hasattr(p, "on_timer") for p in processors)
    return (PROGRESS_TABLE, TIMERS_TABLE) if timed else (PROGRESS_TABLE,)


@dataclass(slots=True)
class Commit:
    """Everything one transaction carries. ``changelog`` maps (table, partition) to records."""

    changelog: dict[tuple[str, int], list[tuple[str, bytes | None]]]
    outputs: list[tuple[str, bytes, bytes]]
    events: int
    oldest_timestamp_ms: int | None
    updates: Tally[str] = field(default_factory=Tally)
    models: list[Output] = field(default_factory=list)  # the outputs before encoding


@dataclass(slots=True)
class Stats:
    """What one envelope (or record) did, for metrics."""

    events: dict[tuple[str, str], int] = field(default_factory=dict)
    dead: Tally[tuple[str, str]] = field(default_factory=Tally)
    duplicates: Tally[str] = field(default_factory=Tally)
    records: int = 0
    timers: int = 0
    #: sum of the Kafka timestamps (ms) of the ``records`` applied: the processing-latency
    #: histogram observes them at their mean, once per envelope
    timestamp_sum_ms: int = 0


class _Table:
    """A table's state: dirty decoded values over in-flight encoded ones over the store.

    Decoded values that were committed stay in a small **clean cache** (per partition,
    oldest written first out), so a subscriber active again soon is not decoded from
    bytes again. Steps must therefore never mutate a state they report as unchanged.
    """

    __slots__ = ("clean", "clean_max", "dirty", "inflight", "name", "store", "updates")

    def __init__(self, name: str, store: PartitionStore, clean_max: int = 0) -> None:
        self.name = name
        self.store = store
        self.dirty: dict[int, dict[str, Any]] = {}
        self.inflight: dict[int, dict[str, bytes | None]] = {}
        self.clean: dict[int, dict[str, Any]] = {}
        self.clean_max = clean_max
        self.updates = 0

    def get(self, p: int, key: str) -> Any:
        d = self.dirty.get(p)
        if d is not None and key in d:
            return d[key]
        c = self.clean.get(p)
        if c is not None:
            v = c.get(key)
            if v is not None:
                return v
        f = self.inflight.get(p)
        raw = f[key] if f is not None and key in f else self.store.get(p, key)
        return None if raw is None else orjson.loads(raw)

    def put(self, p: int, key: str, value: Any) -> None:
        d = self.dirty.get(p)
        if d is None:
            d = self.dirty[p] = {}
        d[key] = value
        self.updates += 1

    def keep_clean(self, p: int, dirty: dict[str, Any]) -> None:
        """Move just-encoded values into the clean cache, within its bound."""
        if not self.clean_max:
            return
        c = self.clean.get(p)
        if c is None:
            c = self.clean[p] = {}
        for k, v in dirty.items():
            c.pop(k, None)
            if v is not None:
                c[k] = v
        if len(c) > self.clean_max * 1.25:  # trim in chunks: cheap, and keeps the newest
            keep = list(c.items())[-self.clean_max:]
            self.clean[p] = dict(keep)

    def items(self, p: int) -> Iterator[tuple[str, Any]]:
        """Current items of partition ``p`` (committed, in flight and dirty)."""
        merged: dict[str, Any] = {k: orjson.loads(v) for k, v in self.store.partition_items(p)}
        for k, v in self.inflight.get(p, {}).items():
            merged[k] = None if v is None else orjson.loads(v)
        merged.update(self.dirty.get(p, {}))
        return ((k, v) for k, v in merged.items() if v is not None)


class BatchUnit:
    """Runs ``processors`` over input records with coalesced, progress-tracked state.

    ``stores`` maps every step name and every name of :func:`system_tables` to a store.
    ``idle_ms`` is how long a partition may stay silent before its clock follows the wall
    clock, if its events are dated within ``live_ms`` of the wall clock (``None`` never:
    replays and evaluations run on event time only; see :mod:`streams.timers`). ``cache_keys``
    bounds the decoded states kept per table and partition after they are committed.
    """

    def __init__(
        self,
        processors: Sequence[Processor],
        stores: Mapping[str, PartitionStore],
        *,
        worker_id: str,
        max_event_bytes: int = 64 * 1024,
        idle_ms: int | None = 5_000,
        live_ms: int = 300_000,
        lateness_ms: int = 0,
        cache_keys: int = 0,
        time_bounds: TimeBounds | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        names = [p.name for p in processors]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline step names must be unique: {names}")
        systems = system_tables(processors)
        missing = [n for n in [*names, *systems] if n not in stores]
        if missing:
            raise ValueError(f"no store for tables {missing}")
        self.processors = list(processors)
        self.tables = {n: _Table(n, stores[n], cache_keys) for n in names}
        self.system = {n: _Table(n, stores[n]) for n in systems}
        self.by_topic: dict[str, list[Processor]] = {}
        self.by_name = {p.name: p for p in processors}
        for proc in self.processors:
            for t in proc.topics:
                self.by_topic.setdefault(t, []).append(proc)
            for r in proc.reads:
                if r not in self.tables or names.index(r) > names.index(proc.name):
                    raise ValueError(f"step {proc.name!r} reads {r!r}, which must run before it")
        self.timed = frozenset(p.name for p in processors if hasattr(p, "on_timer"))
        #: only the topics timed steps consume move a partition's clock
        self.clock_topics = frozenset(t for p in processors if p.name in self.timed
                                      for t in p.topics)
        self.lateness_ms = lateness_ms
        self.worker_id = worker_id
        self.max_event_bytes = max_event_bytes
        self.time_bounds = time_bounds
        self.idle_ms = idle_ms
        self.live_ms = live_ms
        self.clock = clock
        self._progress: dict[int, dict[str, int]] = {}
        #: what the progress table holds (or will once in flight commits land), per partition
        self._persisted: dict[int, dict[str, int]] = {}
        self._progress_dirty: set[int] = set()
        self._timers: dict[int, PartitionTimers] = {}
        self._outputs: list[Output] = []
        self._events = 0
        self._oldest_ts: int | None = None
        self.timer_errors = 0

    # --- processing ----------------------------------------------------------------------
    def process_envelope(self, data: bytes) -> Stats:
        """Apply every record of one envelope (all from one source partition)."""
        env = unpack(data)
        return self._records(env.topic, env.partition, env.records(), self.clock())

    def reject_envelope(self, topic: str, partition: int, offset: int, data: bytes,
                        error: str) -> Stats:
        """Something not an envelope reached the packed topic: keep it as a dead letter."""
        stats = Stats()
        stats.dead[(topic, DeadLetterReason.INVALID)] += 1
        rejected = Rejected(DeadLetterReason.INVALID, f"not a Foresight envelope: {error}")
        self._outputs.append(Output(DEAD_LETTERS, topic, dead_letter(
            rejected, topic=topic, partition=partition, offset=offset, timestamp_ms=None,
            key=None, value=data, worker=self.worker_id, now=self.clock(),
            max_copy_bytes=self.max_event_bytes)))
        self._events += 1
        return stats

    def process_record(self, topic: str, partition: int, offset: int, timestamp_ms: int,
                       key: bytes | None, value: bytes) -> Stats:
        """Apply one input record (the per-event path and tests)."""
        return self._records(topic, partition, ((offset, timestamp_ms, key, value),),
                             self.clock())

    def _records(self, topic: str, p: int,
                 records: Iterable[tuple[int, int, bytes | None, bytes]], now: datetime) -> Stats:
        # One topic and partition per call: everything loop-invariant is hoisted, this loop
        # is the per-event cost of the whole worker.
        stats = Stats()
        progress = self._progress.get(p)
        if progress is None:
            progress = self._load_partition(p)
        last = progress.get(topic, -1)
        timers = self._timers[p] if self.timed else None
        clocked = timers is not None and topic in self.clock_topics
        procs = [(proc, self.tables[proc.name],
                  tuple((r, self.tables[r]) for r in proc.reads), proc.name in self.timed)
                 for proc in self.by_topic.get(topic, ())]
        events = stats.events
        max_bytes = self.max_event_bytes
        bounds = self.time_bounds
        outputs = self._outputs
        oldest = self._oldest_ts
        wall_ms = int(time.time() * 1000)
        n = dups = tsum = 0
        lo, hi = (bounds.floor_ms, wall_ms + bounds.max_future_ms) if bounds else (_MIN, _MAX)
        for offset, ts, key, value in records:
            if offset <= last:
                dups += 1
                continue
            last = offset
            n += 1
            tsum += ts
            if oldest is None or ts < oldest:
                oldest = ts
            event = decode_record(topic, key, value, max_bytes)
            if type(event) is not Rejected:
                event_ms = int(event.event_time.timestamp() * 1000)
                if event_ms > hi or event_ms < lo:
                    event = bounds.check(event_ms, wall_ms)  # type: ignore[union-attr]
            if type(event) is Rejected:
                stats.dead[(topic, event.reason)] += 1
                outputs.append(Output(DEAD_LETTERS, topic, dead_letter(
                    event, topic=topic, partition=p, offset=offset, timestamp_ms=ts, key=key,
                    value=value, worker=self.worker_id, now=now, max_copy_bytes=max_bytes)))
                continue
            ek = (topic, event.kind)
            events[ek] = events.get(ek, 0) + 1
            if not procs:
                continue
            ctx = EventContext(topic, p, offset, ts, now, event_ms, 0, self.lateness_ms)
            try:
                self._apply_steps(p, event, ctx, procs, timers, wall_ms, stats, clocked)
                if clocked and timers.ready():  # type: ignore[union-attr]
                    # what the clock passed fires now, before the next event is applied:
                    # the same order as an event-at-a-time worker
                    stats.timers += self._fire_due(p, now)
            except Exception as exc:  # a bug must not stop the partition: quarantine the event
                log.exception("step failed on %s[%d]@%d; sent to dead letters", topic, p, offset)
                stats.dead[(topic, DeadLetterReason.PROCESSING_ERROR)] += 1
                failed = Rejected(DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
                outputs.append(Output(DEAD_LETTERS, topic, dead_letter(
                    failed, topic=topic, partition=p, offset=offset, timestamp_ms=ts, key=key,
                    value=value, worker=self.worker_id, now=now, max_copy_bytes=max_bytes)))
        if n:
            progress[topic] = last
            self._progress_dirty.add(p)
            self._events += n
            self._oldest_ts = oldest
        if timers is not None:
            stats.timers += self._fire_due(p, now)
        if dups:
            stats.duplicates[topic] += dups
        stats.records = n
        stats.timestamp_sum_ms = tsum
        return stats

    def _apply_steps(self, p: int, event: Any, ctx: EventContext, procs: list[Any],
                     timers: PartitionTimers | None, wall_ms: int, stats: Stats,
                     clocked: bool) -> None:
        event_ms = ctx.event_ms
        if timers is not None:
            if clocked:
                timers.observe(ctx.topic, event_ms, wall_ms)
            ctx.clock_ms = clock = timers.clock
            # Deadlines of this event's keys that the watermark (clock - lateness) passed
            # are judged first, on the state every step (and every table they read) had
            # before the event: the event that moved the clock is later than them.
            due_at = timers.due_at
            if due_at:
                mark = clock - timers.lateness
                for proc, table, reads, timed in procs:
                    if timed:
                        k = proc.key_of(event)
                        due = due_at.get((proc.name, k)) if k is not None else None
                        if due is not None and due <= mark:
                            timers.set(proc.name, k, None)
                            self._fire(p, proc, table, reads, k, due, ctx, timers)
                            stats.timers += 1
        outputs = self._outputs
        for proc, table, reads, timed in procs:
            k = proc.key_of(event)
            if k is None:
                continue
            r = {name: t.get(p, k) for name, t in reads} if reads else _NO_READS
            state = table.get(p, k)
            result = proc.apply(state, event, ctx, r)
            if result.changed and (result.state is not None or state is not None):
                table.put(p, k, result.state)
            if result.outputs:
                outputs.extend(result.outputs)
            if timed and timers.due_at.get((proc.name, k)) != result.wake_at_ms:  # type: ignore[union-attr]
                self._schedule(p, timers, proc.name, k, result)  # type: ignore[arg-type]

    # --- timers --------------------------------------------------------------------------
    def _schedule(self, p: int, timers: PartitionTimers, step: str, key: str,
                  result: Result) -> None:
        if timers.set(step, key, result.wake_at_ms):
            self.system[TIMERS_TABLE].put(p, timer_key(step, key), result.wake_at_ms)
            self._progress_dirty.add(p)

    def _fire(self, p: int, proc: Any, table: _Table, reads: tuple[tuple[str, _Table], ...],
              key: str, due: int, ctx: EventContext, timers: PartitionTimers) -> None:
        r = {name: t.get(p, key) for name, t in reads} if reads else _NO_READS
        state = table.get(p, key)
        result = proc.on_timer(state, key, due, ctx, r)
        if result.changed and (result.state is not None or state is not None):
            table.put(p, key, result.state)
        if result.outputs:
            self._outputs.extend(result.outputs)
        wake = result.wake_at_ms
        if wake is not None and wake <= due:
            wake = due + 1  # never re-fire within the same round
        # the fired timer already left the index: record its removal or its renewal
        timers.set(proc.name, key, wake)
        self.system[TIMERS_TABLE].put(p, timer_key(proc.name, key), wake)
        self._progress_dirty.add(p)

    def _fire_due(self, p: int, now: datetime) -> int:
        timers = self._timers[p]
        fired = 0
        while True:  # a firing may re-arm a timer that is already due: fire until none is
            batch = list(timers.due())
            if not batch:
                return fired
            fired += self._fire_batch(p, timers, batch, now)

    def _fire_batch(self, p: int, timers: PartitionTimers, batch: list[tuple[str, str, int]],
                    now: datetime) -> int:
        fired = 0
        for step, key, due in batch:
            proc = self.by_name[step]
            table = self.tables[step]
            reads = tuple((r, self.tables[r]) for r in proc.reads)
            ctx = EventContext("", p, -1, due, now, due, timers.clock, timers.lateness)
            try:
                self._fire(p, proc, table, reads, key, due, ctx, timers)
            except Exception:  # drop the timer rather than retry a failing one forever
                log.exception("timer of step %s for %s failed; dropped", step, key)
                self.system[TIMERS_TABLE].put(p, timer_key(step, key), None)
                self.timer_errors += 1
            fired += 1
        return fired

    def tick(self, wall_ms: int | None = None) -> int:
        """Advance idle live partitions' clocks with the wall clock and fire what is due.

        A clock that moved without firing anything is not persisted by itself (an idle
        worker commits nothing): it is written with the next commit that has something to
        commit, and after a restart the next events move it again.
        """
        if not self.timed or self.idle_ms is None:
            return 0
        wall = int(time.time() * 1000) if wall_ms is None else wall_ms
        fired = 0
        for p, timers in self._timers.items():
            before = timers.clock
            timers.advance_idle(wall, self.idle_ms, self.live_ms)
            if timers.clock != before and timers.ready():
                n = self._fire_due(p, self.clock())
                if n:
                    fired += n
                    self._progress_dirty.add(p)
        return fired

    def partitions(self) -> list[int]:
        """Partitions this unit has processed since they were (last) assigned to it."""
        return sorted(self._progress)

    def clock_of(self, partition: int) -> int | None:
        """The event-time clock of a partition (ms), if the partition has been seen."""
        t = self._timers.get(partition)
        return None if t is None else t.clock

    def _load_partition(self, p: int) -> dict[str, int]:
        progress_table = self.system[PROGRESS_TABLE]
        progress: dict[str, int] = {}
        for topic in INPUT_TOPICS:
            off = progress_table.get(p, topic)
            if off is not None:
                progress[topic] = int(off)
        self._progress[p] = progress
        persisted = self._persisted[p] = dict(progress)
        if self.timed:
            timers = self._timers[p] = PartitionTimers(lateness=self.lateness_ms)
            clock = progress_table.get(p, _CLOCK_KEY)
            timers.clock = int(clock) if clock is not None else 0
            persisted[_CLOCK_KEY] = timers.clock
            timers.load((*split_timer_key(k), int(v))
                        for k, v in self.system[TIMERS_TABLE].items(p))
        return progress

    # --- committing ----------------------------------------------------------------------
    def pending(self) -> int:
        """Records applied since the last snapshot."""
        return self._events

    def snapshot(self) -> Commit | None:
        """Freeze and encode everything since the last snapshot; None if nothing changed."""
        table = self.system[PROGRESS_TABLE]
        for p in self._progress_dirty:  # only what changed: an unchanged offset is no record
            persisted = self._persisted[p]
            for topic, off in self._progress[p].items():
                if persisted.get(topic) != off:
                    table.put(p, topic, off)
                    persisted[topic] = off
            timers = self._timers.get(p)
            if timers is not None and persisted.get(_CLOCK_KEY) != timers.clock:
                table.put(p, _CLOCK_KEY, timers.clock)
                persisted[_CLOCK_KEY] = timers.clock
        self._progress_dirty = set()
        all_tables = (*self.tables.values(), *self.system.values())
        if not self._events and not self._outputs and not any(t.dirty for t in all_tables):
            return None
        changelog: dict[tuple[str, int], list[tuple[str, bytes | None]]] = {}
        updates: Tally[str] = Tally()
        dumps = orjson.dumps
        for table in all_tables:
            for p, dirty in table.dirty.items():
                # exact-size copies: orjson's results keep a ~4 KB buffer each, which would
                # make a long-running worker's memory store ~4x larger than a restored one
                enc = {k: (None if v is None else bytes(memoryview(dumps(v))))
                       for k, v in dirty.items()}
                table.inflight.setdefault(p, {}).update(enc)
                changelog[(table.name, p)] = list(enc.items())
                table.keep_clean(p, dirty)
            table.dirty = {}
            if table.name in self.tables:
                updates[table.name] = table.updates
            table.updates = 0
        outputs = [(o.topic, o.key.encode(), o.value.__pydantic_serializer__.to_json(o.value))
                   for o in self._outputs]
        commit = Commit(changelog, outputs, self._events, self._oldest_ts, updates,
                        self._outputs)
        self._outputs = []
        self._events = 0
        self._oldest_ts = None
        return commit

    def complete(self, commit: Commit, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """The commit is durable: move its records from in-flight into the stores."""
        offsets = offsets or {}
        for (name, p), records in commit.changelog.items():
            table = self.tables.get(name) or self.system[name]
            table.store.write(p, records, offsets.get((name, p)))
            inflight = table.inflight.get(p)
            if inflight is not None:
                # keep keys re-snapshotted since; drop the ones this commit wrote
                for k, v in records:
                    if inflight.get(k, _MISSING) is v:
                        del inflight[k]
                if not inflight:
                    del table.inflight[p]

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop cached progress, timers and uncommitted state of partitions no longer ours."""
        for p in partitions:
            self._progress.pop(p, None)
            self._persisted.pop(p, None)
            self._progress_dirty.discard(p)
            self._timers.pop(p, None)
            for table in (*self.tables.values(), *self.system.values()):
                table.dirty.pop(p, None)
                table.inflight.pop(p, None)
                table.clean.pop(p, None)

    def states(self, table: str, partitions: Iterable[int]) -> Iterator[State]:
        """Every current state of ``table`` in ``partitions`` (metrics after a restore)."""
        t = self.tables[table]
        for p in partitions:
            for _, v in t.items(p):
                yield v

    def read_state(self, table: str, partition: int, key: str) -> State | None:
        """Current state of ``key`` (for queries and tests)."""
        return self.tables[table].get(partition, key)


_NO_READS: Mapping[str, State | None] = {}
_MIN, _MAX = -(2**63), 2**63
_MISSING = object()
