"""Partitioned byte stores behind Foresight's Faust tables, with fast changelog restore.

Faust writes one changelog record per table assignment (about 120 µs each here) and has no
record cache; Foresight's processing unit writes each changed key once per commit, inside
the Kafka transaction that also carries the outputs. This module is the storage side:

* :class:`MemoryBackend` / :class:`RocksBackend` hold one partition's ``key -> bytes``.
* :class:`TableStore` is a Faust store plugin (``store="foresight://memory"`` or
  ``"foresight://rocksdb"``): Faust still declares the table, creates its compacted
  changelog topic, co-partitions it with the input and calls ``on_rebalance``; the store
  restores newly assigned partitions itself with a ``read_committed`` confluent-kafka
  consumer (aborted transactions never reach state) and then reports the changelog end as
  its persisted offset, so Faust's slower per-message recovery has nothing left to do.

Local data is written only after the transaction that carries it has committed, so a
RocksDB directory never holds state the changelog does not.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from faust.stores import base as faust_store
from faust.types import TP

log = logging.getLogger(__name__)

_OFFSET_KEY = b"\x00foresight:changelog-offset"


class MemoryBackend:
    """One partition in a dict (tests, demos, and state that fits in RAM)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.offset: int | None = None

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def write(self, items: Iterable[tuple[str, bytes | None]], offset: int | None) -> None:
        data = self.data
        for k, v in items:
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        if offset is not None:
            self.offset = offset

    def items(self) -> Iterator[tuple[str, bytes]]:
        return iter(list(self.data.items()))

    def __len__(self) -> int:
        return len(self.data)

    def key_count(self) -> int:
        """Keys held (exact, O(1))."""
        return len(self.data)

    def close(self) -> None:
        self.data.clear()


class RocksBackend:
    """One partition in a RocksDB directory (rocksdict wheel, no compiler needed).

    The changelog offset the data corresponds to is kept in the same database, so after a
    restart only the changelog tail written since is read back.
    """

    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict

        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.increase_parallelism(2)
        self.path = path
        self.db = Rdict(str(path), options=opts)
        raw = self.db.get(_OFFSET_KEY)
        self.offset: int | None = int(raw) if raw is not None else None

    def get(self, key: str) -> bytes | None:
        return self.db.get(key.encode())

    def write(self, items: Iterable[tuple[str, bytes | None]], offset: int | None) -> None:
        from rocksdict import WriteBatch

        wb = WriteBatch(raw_mode=True)
        for k, v in items:
            if v is None:
                wb.delete(k.encode())
            else:
                wb.put(k.encode(), v)
        if offset is not None:
            wb.put(_OFFSET_KEY, str(offset).encode())
            self.offset = offset
        self.db.write(wb)

    def items(self) -> Iterator[tuple[str, bytes]]:
        for k, v in self.db.items():
            if k != _OFFSET_KEY:
                yield k.decode(), v

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def key_count(self) -> int:
        """RocksDB's estimate of the keys held (``rocksdb.estimate-num-keys``): cheap enough
        for every scrape, unlike counting (a full scan); approximate until compaction
        folds overwritten and deleted keys. The changelog-offset key is not counted."""
        n = self.db.property_int_value("rocksdb.estimate-num-keys") or 0
        return max(0, n - (1 if self.offset is not None else 0))

    def close(self) -> None:
        self.db.close()


Backend = MemoryBackend | RocksBackend


class TableStore(faust_store.Store):
    """Faust store plugin holding one backend per assigned changelog partition."""

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.kind = self.url.host or "memory"
        if self.kind not in ("memory", "rocksdb"):
            raise ValueError(f"unknown foresight store kind {self.kind!r}: use memory or rocksdb")
        self.parts: dict[int, Backend] = {}
        self.restore_seconds: float = 0.0
        self.restored_records: int = 0

    # --- Foresight API -------------------------------------------------------------------
    @property
    def changelog_topic_name(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    def backend(self, partition: int) -> Backend:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = self._open(partition)
        return part

    def get(self, partition: int, key: str) -> bytes | None:
        return self.backend(partition).get(key)

    def write(self, partition: int, items: Iterable[tuple[str, bytes | None]],
              offset: int | None) -> None:
        self.backend(partition).write(items, offset)

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        return self.backend(partition).items()

    def _open(self, partition: int) -> Backend:
        if self.kind == "memory":
            return MemoryBackend()
        return RocksBackend(self._path(partition))

    def _path(self, partition: int) -> Path:
        return Path(self.app.conf.tabledir) / self.table_name / f"p{partition}"

    # --- restore -------------------------------------------------------------------------
    def restore(self, partitions: Iterable[int], consumer_factory: Callable[[], Any]) -> int:
        """Bring ``partitions`` up to the changelog's committed end; return records read."""
        started = time.monotonic()
        topic = self.changelog_topic_name
        total = 0
        consumer = consumer_factory()
        try:
            for p in partitions:
                part = self.backend(p)
                start = 0 if part.offset is None else part.offset + 1
                total += restore_partition(consumer, topic, p, start, part)
        finally:
            consumer.close()
        self.restore_seconds += time.monotonic() - started
        self.restored_records += total
        return total

    # --- Faust store API -----------------------------------------------------------------
    def persisted_offset(self, tp: TP) -> int | None:
        part = self.parts.get(tp.partition)
        return None if part is None else part.offset

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        part = self.parts.get(tp.partition)
        if part is not None:
            part.offset = offset

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        topics = self.table.changelog_topic.topics
        for tp in revoked:
            if tp.topic in topics:
                part = self.parts.pop(tp.partition, None)
                if part is not None:
                    part.close()
        # every assigned partition, not only new ones: a kept partition just confirms it is
        # at the end (one watermark request), a gap is read instead of trusted
        mine = sorted(tp.partition for tp in assigned if tp.topic in topics)
        if mine:
            factory = self.app.foresight_restore_consumer
            n = await asyncio.to_thread(self.restore, mine, factory)
            log.info("restored %d changelog records of %s partitions %s", n,
                     self.table_name, mine)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        return None

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        """Standby replicas: Faust hands us committed changelog records to apply."""
        by_part: dict[int, list[tuple[str, bytes | None]]] = {}
        last: dict[int, int] = {}
        for event in batch:
            msg = event.message
            if msg.key is None:
                continue
            by_part.setdefault(msg.partition, []).append((msg.key.decode(), msg.value))
            last[msg.partition] = msg.offset
        for p, items in by_part.items():
            self.write(p, items, last[p])

    def backup_partition(self, tp: Any, flush: bool = True, purge: bool = False,
                         keep: int = 1) -> None:
        """Backups are the changelog itself; nothing to do locally."""

    def restore_backup(self, tp: Any, latest: bool = True, backup_id: int = 0) -> None:
        """Backups are the changelog itself; nothing to do locally."""

    def reset_state(self) -> None:
        for part in self.parts.values():
            part.close()
        self.parts.clear()
        if self.kind == "rocksdb":
            shutil.rmtree(Path(self.app.conf.tabledir) / self.table_name, ignore_errors=True)

    # Mapping API over all local partitions (operators' table views, tests).
    def __getitem__(self, key: Any) -> Any:
        for part in self.parts.values():
            v = part.get(key)
            if v is not None:
                return v
        raise KeyError(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("Foresight tables are written by the processing unit, not by item")

    def __delitem__(self, key: Any) -> None:
        raise TypeError("Foresight tables are written by the processing unit, not by item")

    def __iter__(self) -> Iterator[Any]:
        for part in list(self.parts.values()):
            for k, _ in part.items():
                yield k

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts.values())

    def key_count(self) -> int:
        """Keys held in the local partitions, cheaply (``foresight_state_keys``)."""
        return sum(p.key_count() for p in list(self.parts.values()))

    def __contains__(self, key: object) -> bool:
        return any(part.get(key) is not None for part in self.parts.values())  # type: ignore[arg-type]

    def keys(self) -> Any:
        return list(iter(self))

    def values(self) -> Any:
        return [v for part in self.parts.values() for _, v in part.items()]

    def items(self) -> Any:
        return [kv for part in self.parts.values() for kv in part.items()]

    def clear(self) -> None:
        self.reset_state()


def restore_consumer_config(client: dict[str, Any], group_id: str) -> dict[str, Any]:
    """A group-less ``read_committed`` consumer's settings for :func:`restore_partition`
    (the group id only names it; it never joins or commits)."""
    return {
        **client,
        "group.id": group_id,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        # each partition is assigned in turn: the default 500 ms fetch wait of the previous
        # assignment delayed every next one (0.5 s per partition and table, seconds of a
        # takeover); with data waiting the broker answers at once anyway
        "fetch.wait.max.ms": 10,
        "fetch.max.bytes": 52_428_800,
        "queued.max.messages.kbytes": 262_144,
    }


def restore_partition(consumer: Any, topic: str, partition: int, start: int,
                      part: Backend, batch: int = 20_000, wait_open_txn_s: float = 120.0) -> int:
    """Read ``topic[partition]`` from ``start`` to its end into ``part``; return records read.

    ``consumer`` is a confluent-kafka consumer configured ``isolation.level=read_committed``
    and no group. Transaction markers and aborted records occupy offsets but are never
    delivered; librdkafka still moves the position past them, so the end is reached when
    the position reaches the high watermark. A transaction still open on the partition (a
    crashed writer's, until the coordinator aborts it) holds the position back: restore
    waits for it rather than miss data that may yet commit.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from streams.retry import retry_transient

    tp = TopicPartition(topic, partition)
    low, high = retry_transient(lambda: consumer.get_watermark_offsets(tp, timeout=10),
                                what=f"end offsets of {topic}[{partition}]")
    if high <= max(start, low):
        if high > 0:
            part.write((), high - 1)
        return 0
    consumer.assign([TopicPartition(topic, partition, start if start > low else OFFSET_BEGINNING)])
    n = 0
    stalled_since: float | None = None
    warned = False
    try:
        while True:
            msgs = consumer.consume(batch, timeout=0.05)
            items = []
            for m in msgs:
                if m.error():
                    raise RuntimeError(f"restore of {topic}[{partition}] failed: {m.error()}")
                k = m.key()
                if k is not None:
                    items.append((k.decode(), m.value()))
            if items:
                part.write(items, None)
                n += len(items)
            pos = retry_transient(lambda: consumer.position([tp])[0].offset,
                                  what=f"position in {topic}[{partition}]")
            if pos >= high:
                break
            now = time.monotonic()
            if msgs:
                stalled_since = None
            elif stalled_since is None:
                stalled_since, warned = now, False
            elif not warned and now - stalled_since > 1.0:
                log.warning("restore of %s[%d] waits at offset %d < %d for an open transaction",
                            topic, partition, pos, high)
                warned = True
            elif now - stalled_since > wait_open_txn_s:
                raise RuntimeError(
                    f"restore of {topic}[{partition}] stuck at offset {pos} < {high} for "
                    f"{wait_open_txn_s:.0f}s: a transaction is still open on the changelog")
    finally:
        consumer.unassign()
    part.write((), high - 1)
    return n
