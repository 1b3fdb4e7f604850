"""The per-event reference path: the simplest correct Foresight worker, kept on purpose.

One Faust agent reads every input topic directly (no packer, no envelopes), decodes each
event, runs the same pipeline steps, writes each changed state to a plain Faust table
(one changelog record per write) and sends outputs with Faust. Timers are a dict scanned
after each event. It is ~10x slower than the batched unit and at-least-once only, but it
is obviously right, so the equivalence test runs the same recorded input through both and
demands identical outputs and final state (``foresight worker --reference``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from prometheus_client import REGISTRY

from agents.core import EventContext, Output, Processor
from schemas.registry import DEAD_LETTERS, INPUT_TOPICS, OUTPUT_TOPICS
from sinks.prometheus import register_metrics_page
from streams import faust_transport
from streams.decoding import Rejected, TimeBounds, dead_letter, decode_record
from streams.metrics import Metrics
from streams.security import faust_credentials
from streams.settings import Settings
from streams.topics import changelog_topic, ensure_topics
from streams.unit import TIMERS_TABLE
from streams.web_auth import web_application_options

log = logging.getLogger(__name__)


def create_reference_app(settings: Settings, pipeline: Sequence[Processor] | None = None,
                         create_topics: bool = True) -> faust.App:
    """A Faust app that processes each input event on its own (see module docstring)."""
    from streams.app import default_pipeline

    faust_transport.register()
    steps = list(pipeline if pipeline is not None else default_pipeline(settings))
    timed = [s for s in steps if hasattr(s, "on_timer")]
    names = [s.name for s in steps] + ([TIMERS_TABLE] if timed else [])
    if create_topics:
        ensure_topics(settings, tuple(names))
    worker_id = settings.worker_id or f"{socket.gethostname()}-{settings.web_port}"
    datadir = (settings.home / "state" / settings.app_id / worker_id).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id, broker=f"foresight://{settings.brokers}", store="memory://",
        broker_credentials=faust_credentials(settings),
        datadir=str(datadir), web_enabled=True, web_port=settings.web_port,
        web_bind=settings.web_host, web_host=settings.web_host,
        web_application_options=web_application_options(settings),
        topic_partitions=settings.partitions, topic_allow_declare=False,
        table_standby_replicas=0, consumer_auto_offset_reset="earliest",
        key_serializer="raw", value_serializer="raw",
    )
    metrics = Metrics(REGISTRY, tuple(names))
    register_metrics_page(app, metrics.registry)
    done = {"processed": 0}

    @app.page("/progress")
    async def progress(web: Any, request: Any) -> Any:
        return web.json({"worker": worker_id, "reference": True, **done})
    raw = faust.Schema(key_serializer="raw", value_serializer="raw")
    tables = {
        n: app.Table(n, partitions=settings.partitions, schema=raw,
                     changelog_topic=app.topic(changelog_topic(settings, n), schema=raw,
                                               partitions=settings.partitions))
        for n in names
    }
    outs = {t: app.topic(settings.topic(t), schema=raw) for t in OUTPUT_TOPICS}
    by_topic: dict[str, list[Processor]] = {}
    for s in steps:
        for t in s.topics:
            by_topic.setdefault(t, []).append(s)
    logical = {settings.topic(t): t for t in INPUT_TOPICS}
    inputs = app.topic(*logical, schema=raw)
    clocks: dict[int, int] = {}
    seen: dict[int, dict[str, int]] = {}  # partition -> clock topic -> highest event time
    clock_topics = {t for step in timed for t in step.topics}
    lateness = settings.timer_lateness_ms
    pending: dict[int, dict[tuple[str, str], int]] = {}  # partition -> (step, key) -> due
    bounds = TimeBounds.of(settings.event_time_max_future_s, settings.event_time_floor)

    def get(name: str, key: str) -> Any:
        value = tables[name].get(key.encode())
        return None if value is None else orjson.loads(value)

    def put(name: str, key: str, value: Any) -> None:
        if value is None:
            tables[name].pop(key.encode(), None)
        else:
            tables[name][key.encode()] = orjson.dumps(value)

    async def emit(outputs: list[Output]) -> None:
        for o in outputs:
            if o.topic not in outs:
                continue  # the screen step's pushes: not Kafka outputs (streams/screen_push.py)
            await outs[o.topic].send(key=o.key.encode(),
                                     value=o.value.__pydantic_serializer__.to_json(o.value))

    async def fire(step: Processor, key: str, due: int, ctx: EventContext) -> None:
        reads = {r: get(r, key) for r in step.reads}
        result = step.on_timer(get(step.name, key), key, due, ctx, reads)  # type: ignore[attr-defined]
        if result.changed:
            put(step.name, key, result.state)
        wake = result.wake_at_ms
        schedule(ctx.partition, step.name, key, None if wake is None else max(wake, due + 1))
        await emit(result.outputs)

    def schedule(p: int, step: str, key: str, due: int | None) -> None:
        timers = pending.setdefault(p, {})
        if due is None:
            timers.pop((step, key), None)
        else:
            timers[(step, key)] = due
        put(TIMERS_TABLE, f"{step}\x1f{key}", due)

    @app.agent(inputs, name="reference-pipeline", concurrency=1)
    async def reference(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            topic = logical[msg.topic]
            p = msg.partition
            now = datetime.now(UTC)
            decoded = decode_record(topic, msg.key, msg.value or b"", settings.max_event_bytes)
            if not isinstance(decoded, Rejected):
                event_ms = int(decoded.event_time.timestamp() * 1000)
                decoded = bounds.check(event_ms, int(now.timestamp() * 1000)) or decoded
            if isinstance(decoded, Rejected):
                dl = dead_letter(decoded, topic=topic, partition=p, offset=msg.offset,
                                 timestamp_ms=int(msg.timestamp * 1000), key=msg.key,
                                 value=msg.value or b"", worker=worker_id, now=now,
                                 max_copy_bytes=settings.max_event_bytes)
                await emit([Output(DEAD_LETTERS, topic, dl)])
                metrics.dead_letters.labels(topic, decoded.reason).inc()
                metrics.committed_records.inc()
                done["processed"] += 1
                continue
            if topic in clock_topics:
                tops = seen.setdefault(p, {})
                tops[topic] = max(tops.get(topic, 0), event_ms)
                clocks[p] = max(clocks.get(p, 0), min(tops.values()))
            ctx = EventContext(topic, p, msg.offset, int(msg.timestamp * 1000), now, event_ms,
                               clocks.get(p, 0), lateness)
            for step in by_topic.get(topic, ()):  # deadlines the watermark passed first
                key = step.key_of(decoded)
                if step in timed and key is not None:
                    due = pending.get(p, {}).get((step.name, key))
                    if due is not None and due <= clocks.get(p, 0) - lateness:
                        schedule(p, step.name, key, None)
                        await fire(step, key, due, ctx)
            for step in by_topic.get(topic, ()):
                key = step.key_of(decoded)
                if key is None:
                    continue
                reads = {r: get(r, key) for r in step.reads}
                result = step.apply(get(step.name, key), decoded, ctx, reads)
                if result.changed:
                    put(step.name, key, result.state)
                if step in timed:
                    schedule(p, step.name, key, result.wake_at_ms)
                await emit(result.outputs)
            if timed:
                await _fire_due(p)
            metrics.input_events.labels(topic, decoded.kind).inc()
            metrics.committed_records.inc()
            done["processed"] += 1

    async def _fire_due(p: int) -> None:
        clock = clocks.get(p, 0) - lateness
        by_name = {s.name: s for s in timed}
        timers = pending.get(p, {})
        while True:  # a firing may re-arm a timer that is already due
            due_now = sorted((due, name, key) for (name, key), due in timers.items() if due <= clock)
            if not due_now:
                return
            for due, name, key in due_now:
                if timers.get((name, key)) == due:
                    schedule(p, name, key, None)
                    ctx = EventContext("", p, -1, due, datetime.now(UTC), due,
                                       clocks.get(p, 0), lateness)
                    await fire(by_name[name], key, due, ctx)

    return app


def run_reference_worker(settings: Settings) -> None:
    """Run the reference worker until interrupted."""
    app = create_reference_app(settings)
    from streams.logs import handler, mode_logging_config

    # our handler instead of mode's (see streams.app.create_app)
    app.conf.logging_config = mode_logging_config(settings)
    app.conf.loghandlers = [handler(settings, "reference-worker")]
    faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()
