"""Baseline lines, each run as its own process: ``python -m streams.bench.lines CONFIG_JSON``.

Every baseline is written the way a reasonable user of that library would write it (no
tricks that only a benchmark would use), reads the same pre-filled topics from the
beginning with a fresh group, decodes every value with orjson and stops after exactly
``events`` records. The rate runs from the first received message to the last one, so
group joins and client start-up are excluded for every line alike.

* ``aiokafka-raw``: ``getmany`` + ``orjson.loads``; what the Python client can deliver.
* ``faust-passthrough``: a bare faust-streaming agent, ``async for`` over the values.
* ``faust-table``: the same plus one changelogged table write per event.
* ``quix-state``: Quix Streams with per-key RocksDB state and its changelog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from streams.bench.procs import emit_progress, emit_result

LINES = ("aiokafka-raw", "faust-passthrough", "faust-table", "quix-state")


class Tally:
    """Counts events, timestamps the first and the N-th, reports progress twice a second."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.n = 0
        self.first: float | None = None
        self.last: float | None = None
        self._next_report = 0.0

    def add(self, k: int) -> bool:
        """Count ``k`` more events; True once ``expected`` is reached."""
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.n += k
        if now >= self._next_report:
            self._next_report = now + 0.5
            emit_progress(self.n)
        if self.n >= self.expected and self.last is None:
            self.last = now
            emit_progress(self.n)
        return self.last is not None

    def result(self, **extra: Any) -> dict[str, Any]:
        seconds = (self.last or time.perf_counter()) - (self.first or time.perf_counter())
        return {"events": self.n, "seconds": seconds,
                "rate": self.n / seconds if seconds > 0 else 0.0,
                "rss_bytes": peak_rss(), **extra}


def peak_rss() -> int:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over ``exec``
    from the forking parent, so every child would report the harness's own peak."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) * 1024
    return 0


# --- aiokafka --------------------------------------------------------------------------------
async def _aiokafka_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.record import default_records

    c_ext = default_records.DefaultRecordBatch.__module__.startswith("aiokafka.record._crecords")
    consumer = AIOKafkaConsumer(
        *cfg["topics"], bootstrap_servers=cfg["bootstrap"], group_id=cfg["group"],
        auto_offset_reset="earliest", enable_auto_commit=False)
    tally = Tally(cfg["events"])
    loads = orjson.loads
    await consumer.start()
    try:
        done = False
        while not done:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for msgs in batches.values():
                for m in msgs:
                    loads(m.value)
                if msgs:
                    done = tally.add(len(msgs))
    finally:
        await consumer.stop()
    return tally.result(c_extension=c_ext)


def aiokafka_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_aiokafka_raw(cfg))


# --- faust -----------------------------------------------------------------------------------
def faust_line(cfg: dict[str, Any], *, table: bool) -> dict[str, Any]:
    """A faust-streaming worker run programmatically; it stops itself after N events."""
    import faust

    workdir = Path(cfg["workdir"])
    app = faust.App(
        cfg["app_id"],
        broker=f"kafka://{cfg['bootstrap']}",
        store="memory://",
        datadir=str(workdir / "faust-data"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=131_072,  # the docs' advice for >30k events/s (default 4096)
        topic_partitions=cfg["partitions"],
    )
    # raw bytes in, orjson by hand: faster than Faust's own json codec
    source = app.topic(*cfg["topics"], key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    counts = (app.Table("counts", default=int, partitions=cfg["partitions"], key_type=bytes,
                        value_type=int) if table else None)
    tally = Tally(cfg["events"])
    out: dict[str, Any] = {}
    loads = orjson.loads

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for key, value in stream.items():
            loads(value)
            if counts is not None:
                counts[key] = counts[key] + 1
            if tally.add(1) and not out:
                out.update(tally.result(table_keys=len(counts) if counts is not None else None))
                emit_result(out)
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful shutdown

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()
    return out


# --- quix ------------------------------------------------------------------------------------
def quix_state(cfg: dict[str, Any]) -> dict[str, Any]:
    """Quix Streams: per-key state in RocksDB with its changelog, defaults elsewhere."""
    from quixstreams import Application

    app = Application(
        broker_address=cfg["bootstrap"], consumer_group=cfg["group"],
        auto_offset_reset="earliest", state_dir=str(Path(cfg["workdir"]) / "quix-state"),
        loglevel="WARNING")
    tally = Tally(cfg["events"])

    def count(value: Any, state: Any) -> Any:
        n = state.get("count", 0) + 1
        state.set("count", n)
        if tally.add(1):
            app.stop()
        return n

    for name in cfg["topics"]:
        topic = app.topic(name, key_deserializer="bytes", value_deserializer="json")
        app.dataframe(topic).apply(count, stateful=True)
    app.run()
    return tally.result()


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "aiokafka-raw": aiokafka_raw,
    "faust-passthrough": lambda cfg: faust_line(cfg, table=False),
    "faust-table": lambda cfg: faust_line(cfg, table=True),
    "quix-state": quix_state,
}


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    result = RUNNERS[cfg["line"]](cfg)
    if result and cfg["line"] not in ("faust-passthrough", "faust-table"):
        emit_result(result)
    return 0 if result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
