"""The processing unit: a batch of input records through the pure pipeline, state coalesced.

One :class:`BatchUnit` per worker runs every pipeline step over whatever partitions Faust
assigned. It is deliberately free of Kafka and asyncio so the same object runs in unit
tests, in replays and behind the Faust agent:

* ``process_envelope`` / ``process_record`` decode, deduplicate, validate and apply the
  steps; state changes stay in a **record cache** (decoded dicts) and a key changed many
  times is written once, like Kafka Streams' cache.
* ``snapshot`` freezes everything since the last commit into a :class:`Commit` (changelog
  records, outputs, per-partition progress) that the committer writes in one Kafka
  transaction; ``complete`` then moves it into the local stores.

**Progress** is the highest source offset applied per ``(input topic, partition)``; it is
changelogged with the state in the same transaction, so after a crash the restored state
and progress agree exactly, and redelivered records (a replayed envelope, a re-packed
batch) are skipped by offset.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import orjson

from agents.core import EventContext, Output, Processor, State
from schemas.registry import DEAD_LETTERS
from streams.decoding import Rejected, dead_letter, decode_record
from streams.envelope import unpack

PROGRESS_TABLE = "progress"


class PartitionStore(Protocol):
    """Where committed state lives (a :class:`streams.store.TableStore` in the worker)."""

    def get(self, partition: int, key: str) -> bytes | None: ...

    def write(self, partition: int, items: Iterable[tuple[str, bytes | None]],
              offset: int | None) -> None: ...


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


@dataclass(slots=True)
class Commit:
    """Everything one transaction carries. ``changelog`` maps (table, partition) to records."""

    changelog: dict[tuple[str, int], list[tuple[str, bytes | None]]]
    outputs: list[tuple[str, bytes, bytes]]
    events: int
    oldest_timestamp_ms: int | None
    updates: Tally[str] = field(default_factory=Tally)


@dataclass(slots=True)
class Stats:
    """What one envelope (or record) did, for metrics."""

    events: Tally[tuple[str, str]] = field(default_factory=Tally)
    dead: Tally[tuple[str, str]] = field(default_factory=Tally)
    duplicates: Tally[str] = field(default_factory=Tally)
    records: int = 0


class _Table:
    """A step's state: dirty decoded values over in-flight encoded ones over the store."""

    __slots__ = ("dirty", "inflight", "name", "store", "updates")

    def __init__(self, name: str, store: PartitionStore) -> None:
        self.name = name
        self.store = store
        self.dirty: dict[int, dict[str, State | None]] = {}
        self.inflight: dict[int, dict[str, bytes | None]] = {}
        self.updates = 0

    def get(self, p: int, key: str) -> State | None:
        d = self.dirty.get(p)
        if d is not None and key in d:
            return d[key]
        f = self.inflight.get(p)
        raw = f[key] if f is not None and key in f else self.store.get(p, key)
        return None if raw is None else orjson.loads(raw)

    def put(self, p: int, key: str, state: State | None) -> None:
        d = self.dirty.get(p)
        if d is None:
            d = self.dirty[p] = {}
        d[key] = state
        self.updates += 1


class BatchUnit:
    """Runs ``processors`` over input records with coalesced, progress-tracked state."""

    def __init__(
        self,
        processors: Sequence[Processor],
        stores: Mapping[str, PartitionStore],
        *,
        worker_id: str,
        max_event_bytes: int = 64 * 1024,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        names = [p.name for p in processors]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline step names must be unique: {names}")
        missing = [n for n in [*names, PROGRESS_TABLE] if n not in stores]
        if missing:
            raise ValueError(f"no store for tables {missing}")
        self.processors = list(processors)
        self.tables = {n: _Table(n, stores[n]) for n in names}
        self.progress_table = _Table(PROGRESS_TABLE, stores[PROGRESS_TABLE])
        self.by_topic: dict[str, list[Processor]] = {}
        for proc in self.processors:
            for t in proc.topics:
                self.by_topic.setdefault(t, []).append(proc)
            for r in proc.reads:
                if r not in self.tables or names.index(r) > names.index(proc.name):
                    raise ValueError(f"step {proc.name!r} reads {r!r}, which must run before it")
        self.worker_id = worker_id
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self._progress: dict[int, dict[str, int]] = {}
        self._progress_dirty: set[int] = set()
        self._outputs: list[Output] = []
        self._raw_outputs: list[tuple[str, bytes, bytes]] = []
        self._events = 0
        self._oldest_ts: int | None = None

    # --- processing ----------------------------------------------------------------------
    def topics(self) -> frozenset[str]:
        return frozenset(self.by_topic)

    def process_envelope(self, data: bytes) -> Stats:
        """Apply every record of one envelope (all from one source partition)."""
        env = unpack(data)
        return self._records(env.topic, env.partition, env.records(), self.clock())

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
            progress = self._load_progress(p)
        last = progress.get(topic, -1)
        procs = [(proc, self.tables[proc.name],
                  tuple((r, self.tables[r]) for r in proc.reads))
                 for proc in self.by_topic.get(topic, ())]
        events = stats.events
        max_bytes = self.max_event_bytes
        outputs = self._outputs
        oldest = self._oldest_ts
        n = dups = 0
        for offset, ts, key, value in records:
            if offset <= last:
                dups += 1
                continue
            last = offset
            n += 1
            if oldest is None or ts < oldest:
                oldest = ts
            event = decode_record(topic, key, value, max_bytes)
            if type(event) is Rejected:
                stats.dead[(topic, event.reason)] += 1
                dl = dead_letter(event, topic=topic, partition=p, offset=offset, timestamp_ms=ts,
                                 key=key, value=value, worker=self.worker_id, now=now)
                outputs.append(Output(DEAD_LETTERS, topic, dl))
                continue
            ek = (topic, event.kind)
            events[ek] = events.get(ek, 0) + 1
            if not procs:
                continue
            ctx = EventContext(topic, p, offset, ts, now)
            for proc, table, reads in procs:
                k = proc.key_of(event)
                if k is None:
                    continue
                r = {name: t.get(p, k) for name, t in reads} if reads else _NO_READS
                result = proc.apply(table.get(p, k), event, ctx, r)
                table.put(p, k, result.state)
                if result.outputs:
                    outputs.extend(result.outputs)
        if n:
            progress[topic] = last
            self._progress_dirty.add(p)
            self._events += n
            self._oldest_ts = oldest
        if dups:
            stats.duplicates[topic] += dups
        stats.records = n
        return stats

    def _load_progress(self, p: int) -> dict[str, int]:
        progress: dict[str, int] = {}
        for topic in self.by_topic.keys() | _ALL_INPUTS:
            raw = self.progress_table.get(p, topic)
            if raw is not None:
                progress[topic] = int(raw)
        self._progress[p] = progress
        return progress

    # --- committing ----------------------------------------------------------------------
    def pending(self) -> int:
        """Records applied since the last snapshot."""
        return self._events

    def snapshot(self) -> Commit | None:
        """Freeze and encode everything since the last snapshot; None if nothing changed."""
        if not self._events and not self._outputs and not self._raw_outputs and not any(
                t.dirty for t in self.tables.values()):
            return None
        changelog: dict[tuple[str, int], list[tuple[str, bytes | None]]] = {}
        updates: Tally[str] = Tally()
        dumps = orjson.dumps
        for table in self.tables.values():
            for p, dirty in table.dirty.items():
                enc = {k: (None if v is None else dumps(v)) for k, v in dirty.items()}
                table.inflight.setdefault(p, {}).update(enc)
                changelog[(table.name, p)] = list(enc.items())
            table.dirty = {}
            updates[table.name] = table.updates
            table.updates = 0
        for p in self._progress_dirty:
            enc = {t: str(o).encode() for t, o in self._progress[p].items()}
            self.progress_table.inflight.setdefault(p, {}).update(enc)
            changelog[(PROGRESS_TABLE, p)] = list(enc.items())
        self._progress_dirty = set()
        outputs = self._raw_outputs
        for out in self._outputs:
            outputs.append((out.topic, out.key.encode(),
                            out.value.__pydantic_serializer__.to_json(out.value)))
        commit = Commit(changelog, outputs, self._events, self._oldest_ts, updates)
        self._outputs = []
        self._raw_outputs = []
        self._events = 0
        self._oldest_ts = None
        return commit

    def complete(self, commit: Commit, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """The commit is durable: move its records from in-flight into the stores."""
        offsets = offsets or {}
        for (name, p), records in commit.changelog.items():
            table = self.progress_table if name == PROGRESS_TABLE else self.tables[name]
            table.store.write(p, records, offsets.get((name, p)))
            inflight = table.inflight.get(p)
            if inflight is not None:
                # keep keys re-dirtied and re-snapshotted since; drop the ones we wrote
                for k, v in records:
                    if inflight.get(k, _MISSING) is v:
                        del inflight[k]
                if not inflight:
                    del table.inflight[p]

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop cached progress and uncommitted state of partitions no longer ours."""
        for p in partitions:
            self._progress.pop(p, None)
            self._progress_dirty.discard(p)
            for table in (*self.tables.values(), self.progress_table):
                table.dirty.pop(p, None)
                table.inflight.pop(p, None)

    def read_state(self, table: str, partition: int, key: str) -> State | None:
        """Current state of ``key`` (for queries and tests)."""
        return self.tables[table].get(partition, key)


_NO_READS: Mapping[str, State | None] = {}
_MISSING = object()


def _all_inputs() -> frozenset[str]:
    from schemas.registry import INPUT_TOPICS

    return frozenset(INPUT_TOPICS)


_ALL_INPUTS = _all_inputs()
