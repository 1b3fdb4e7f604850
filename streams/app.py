"""The Faust app, built from settings (never at import time).

``create_app(settings)`` declares the packed input topic, one changelogged Faust table per
pipeline step plus the progress table, the subscriber pipeline agent, the commit timer and
the ``/metrics`` page, and wires them to a :class:`BatchUnit` and a transactional
committer. The packer runs in a thread of the same process unless disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import Consumer
from faust.stores import STORES
from prometheus_client import REGISTRY, CollectorRegistry

from agents.audit.catalog import load_catalog
from agents.audit.step import Audit
from agents.call_features import CallFeatures
from agents.contact.policy import load_policy
from agents.contact.step import ContactPolicy
from agents.core import Processor
from agents.screen.step import ScreenPop
from agents.unified_view import UnifiedView
from schemas.registry import INPUT_TOPICS, OUTPUT_TOPICS
from sinks.prometheus import register_metrics_page
from streams import faust_transport
from streams.committer import CommitAbandoned, TransactionalCommitter
from streams.decoding import TimeBounds
from streams.errors import ConfigError
from streams.logs import client_logging, mode_logging_config, worker_name
from streams.logs import handler as log_handler
from streams.metrics import Metrics
from streams.packer import Packer, PackerProcess, PackerThread
from streams.runner import UnitRunner
from streams.screen_push import LivePush, Pusher, subscriber_view
from streams.security import faust_credentials
from streams.settings import Settings
from streams.store import restore_consumer_config
from streams.supervision import ForesightWorker, arm_exit_deadline, supervise
from streams.topics import PACKED, changelog_topic, ensure_topics
from streams.unit import BatchUnit, system_tables
from streams.web_auth import web_application_options

log = logging.getLogger(__name__)


#: ``foresee`` (opt-in, docs/foresee.md) reads the audit and is read by the contact policy
#: and the screen pop, so it runs between them
STEPS = ("unified-view", "call-features", "audit", "foresee", "contact-policy", "screen-pop")


def default_pipeline(settings: Settings | None = None) -> list[Processor]:
    """The steps every subscriber event goes through, in order (``FORESIGHT_STEPS``).

    The audit reads the unified view, so it comes after it; a custom rule catalog is
    loaded from ``FORESIGHT_AUDIT_RULES`` (checked at start: a bad file stops the worker
    with the file and line of each problem).
    """
    # without settings: the settings' default (screen-pop is opted into, see docs/screen.md)
    names = [n.strip() for n in (settings or Settings.model_construct()).steps.split(",")
             if n.strip()]
    unknown = sorted(set(names) - set(STEPS))
    if unknown:
        raise ConfigError(f"unknown steps {unknown} in FORESIGHT_STEPS; known: {', '.join(STEPS)}")
    steps: list[Processor] = []
    for name in STEPS:  # canonical order, whatever order they were listed in
        if name not in names:
            continue
        if name == "unified-view":
            steps.append(UnifiedView())
        elif name == "call-features":
            steps.append(CallFeatures())
        elif name == "foresee":
            from agents.foresee.catalog import load_catalog as load_foresee
            from agents.foresee.step import Foresee  # river loads only when configured
            path = settings.foresee_catalog if settings else None
            steps.append(Foresee(load_foresee(path) if path else None,
                                 reads=tuple(r for r in ("unified-view", "audit")
                                             if r in names)))
        elif name == "contact-policy":
            steps.append(contact_policy_step(settings, names))
        elif name == "screen-pop":
            audits = [s for s in steps if isinstance(s, Audit)]
            steps.append(ScreenPop(names, audits[0].catalog if audits else None,
                                   policy_path=settings.contact_policy if settings else None))
        else:
            if "unified-view" not in names:
                raise ConfigError("the audit step reads the unified view: add unified-view "
                                  "to FORESIGHT_STEPS")
            rules = settings.audit_rules if settings else None
            audit = Audit(load_catalog(rules) if rules else None)
            if settings is not None:
                audit.emitter.hint_ttl = timedelta(seconds=settings.audit_hint_ttl_s)
                audit.emitter.resolved_hint_ttl = timedelta(
                    seconds=settings.audit_resolved_hint_ttl_s)
            steps.append(audit)
    return steps


def contact_policy_step(settings: Settings | None, names: Sequence[str]) -> ContactPolicy:
    """The contact policy (``FORESIGHT_CONTACT_POLICY``, default the packaged one), with a
    shadow policy when ``FORESIGHT_CONTACT_SHADOW_POLICY`` names one; it reads only the
    steps that are configured (absent ones: their rules do not apply)."""
    live = settings.contact_policy if settings else None
    shadow = settings.contact_shadow_policy if settings else None
    reads = tuple(n for n in ("unified-view", "audit", "foresee") if n in names)
    return ContactPolicy(load_policy(live) if live else None,
                         load_policy(shadow) if shadow else None, reads)


class ForesightApp(faust.App):
    """A Faust app that also owns the packer thread and the transactional committer."""

    settings: Settings
    metrics: Metrics
    runner: UnitRunner
    committer: TransactionalCommitter
    packer: PackerThread | PackerProcess | None = None
    worker_id: str

    def foresight_restore_consumer(self) -> Consumer:
        """A group-less ``read_committed`` consumer for restoring changelog partitions."""
        return Consumer(restore_consumer_config(self.settings.kafka_client_config(),
                                                f"{self.settings.app_id}-restore"))

    async def on_start(self) -> None:
        await super().on_start()
        # Fence a crashed predecessor (and abort its open transaction) before any state is
        # restored: restore waits for open transactions on the changelog to end.
        self.committer.start()
        if self.packer is not None:
            self.packer.start()

    async def on_stop(self) -> None:
        """Stop within ``shutdown_timeout_s``: the packer hands its input over and the unit
        commits what it processed (both at once, each bounded), then Faust leaves the group.

        Faust's own wait for unacknowledged events is off (``stream_wait_empty=False``):
        envelopes are acknowledged only by commits, so it would wait forever once the
        commit loop stopped. Envelopes fed after the final commit are not acknowledged and
        the next owner reads them again. A deadline thread ends the process if anything
        still hangs past the timeout (nothing uncommitted is lost: it is redone).
        """
        budget = self.settings.shutdown_timeout_s
        arm_exit_deadline(budget)
        steps = [self.runner.final_commit(budget * 0.4)]
        if self.packer is not None:
            steps.append(asyncio.to_thread(self.packer.stop, budget * 0.5))
        await asyncio.gather(*steps)
        await super().on_stop()


def create_app(
    settings: Settings,
    *,
    pipeline: Sequence[Processor] | None = None,
    registry: CollectorRegistry | None = None,
    create_topics: bool = True,
) -> ForesightApp:
    """Build the worker app. ``registry`` defaults to the process-wide Prometheus registry."""
    faust_transport.register()
    STORES.aliases.setdefault("foresight", "streams.store:TableStore")
    steps = list(pipeline if pipeline is not None else default_pipeline(settings))
    screen_token = settings.screen_token or settings.api_token
    pusher = Pusher(settings.screen_url,
                    screen_token.get_secret_value() if screen_token else None,
                    registry if registry is not None else REGISTRY)
    # the screen step's pops leave at once, not with the next transaction (docs/screen.md)
    steps = [LivePush(s, pusher.send) if isinstance(s, ScreenPop) else s for s in steps]
    table_names = (*(s.name for s in steps), *system_tables(steps))
    if create_topics:
        ensure_topics(settings, table_names)

    worker_id = worker_name(settings)
    datadir = (settings.home / "state" / settings.app_id / worker_id).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    backend = "rocksdb" if settings.store.startswith("rocksdb") else "memory"
    app = ForesightApp(
        settings.app_id,
        broker=f"foresight://{settings.brokers}",
        broker_credentials=faust_credentials(settings),  # Faust's aiokafka clients, too
        store="memory://",
        datadir=str(datadir),
        tabledir=str(datadir / "tables"),
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_application_options=web_application_options(settings),  # token for /table/...
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,
        # Faust's leader election topic: Foresight elects nothing (and declares no topics
        # through Faust, so it would be missing: an ERROR at every start)
        topic_disable_leader=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        stream_buffer_maxsize=256,
        broker_max_poll_records=200,
        consumer_max_fetch_size=8 * 1024 * 1024,
        producer_linger=0.002,
        processing_guarantee="at_least_once",
        stream_wait_empty=False,
        stream_processing_timeout=settings.stream_processing_timeout_s,
        broker_commit_livelock_soft_timeout=settings.stream_processing_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        # Faust's worker (mode) replaces the root logger's handlers at start: hand it ours,
        # so the worker logs like every other Foresight process (format, masking, and no
        # colour codes: mode's own formatter colours stderr when *stdout* is a terminal)
        logging_config=mode_logging_config(settings),
        loghandlers=[log_handler(settings, "worker", worker=worker_id)],
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
    )
    app.settings = settings
    app.worker_id = worker_id
    rules = [r.id for s in steps if isinstance(s, Audit) for r in s.catalog.rules]
    metrics = Metrics(registry if registry is not None else REGISTRY, table_names, rules)
    app.metrics = metrics

    tables = {}
    for name in table_names:
        tables[name] = app.Table(
            name,
            partitions=settings.partitions,
            key_type=bytes, value_type=bytes,
            store=f"foresight://{backend}",
            # acks=False, as Faust's own tables declare their changelogs: no stream reads
            # (and acknowledges) them, so Faust's stall monitor must not expect it to; with
            # the default (True) it logged "Stream has not started processing" for every
            # changelog partition every 2.5 s once up for stream_processing_timeout
            changelog_topic=app.topic(changelog_topic(settings, name),
                                      partitions=settings.partitions,
                                      key_serializer="raw", value_serializer="raw",
                                      acks=False),
        )
    unit = BatchUnit(steps, {n: t.data for n, t in tables.items()}, worker_id=worker_id,
                     max_event_bytes=settings.max_event_bytes,
                     cache_keys=settings.state_cache_keys, lateness_ms=settings.timer_lateness_ms,
                     idle_ms=settings.timer_idle_ms, live_ms=settings.timer_live_ms,
                     time_bounds=TimeBounds.of(settings.event_time_max_future_s,
                                               settings.event_time_floor))
    app.committer = TransactionalCommitter(
        client_logging(settings.kafka_client_config()),
        transactional_id=f"{settings.app_id}-{worker_id}",
        table_topics={n: changelog_topic(settings, n) for n in table_names},
        output_topics={t: settings.topic(t) for t in OUTPUT_TOPICS},
        on_retry=lambda error: metrics.commit_retries.labels(error).inc(),
    )
    runner = app.runner = UnitRunner(unit, app.committer, metrics)
    packed = app.topic(settings.topic(PACKED), partitions=settings.partitions,
                       key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")

    @app.agent(packed, name="subscriber-pipeline", concurrency=1)
    async def subscriber_pipeline(stream: Any) -> None:
        """Decode, validate, apply the pipeline; effects commit in the next transaction."""
        manual = stream.noack()
        async for event in manual.events():
            runner.feed(manual, event)
            if runner.should_commit_now():
                await _commit(app)

    interval = settings.commit_interval_ms / 1000.0
    idle_tick = 0.1  # idle partitions' clocks still follow the wall clock (unit.tick)

    @app.task
    async def commit_loop() -> None:
        """Commit as soon as work is pending, at most every ``commit_interval_ms`` after the
        previous commit ended: back to back under load, a few ms after an envelope when
        traffic is light, and no busy loop when idle."""
        while not app.should_stop:
            await asyncio.sleep(interval)
            if not runner.work.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(runner.work.wait(), idle_tick)
            await _commit(app)

    @app.on_partitions_revoked.connect
    async def _on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await _commit(app)
        unit.forget_partitions({tp.partition for tp in revoked if tp.topic == packed.get_topic_name()})

    @app.on_partitions_assigned.connect
    async def _on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        mine = {tp.partition for tp in assigned if tp.topic == packed.get_topic_name()}
        unit.forget_partitions(mine)
        # tables are restored by now (Faust restores before this signal)
        for rule in rules:
            metrics.audit_open.labels(rule).set(0)
        runner.recount_open_episodes(mine)

    restored: dict[str, tuple[int, float]] = {}  # per table: what the counters already have

    def before_scrape() -> None:
        """Gauges that are cheaper to read when Prometheus asks than to keep current."""
        if isinstance(app.packer, PackerProcess):
            app.packer.sync()
        if app.packer is not None:
            metrics.set_consumer_lag(app.packer.partition_lag())
        for name, table in tables.items():
            store = table.data
            metrics.state_keys.labels(name).set(store.key_count())
            n, secs = restored.get(name, (0, 0.0))
            if store.restored_records > n or store.restore_seconds > secs:
                metrics.restore_records.labels(name).inc(store.restored_records - n)
                metrics.restore_seconds.labels(name).inc(store.restore_seconds - secs)
                restored[name] = (store.restored_records, store.restore_seconds)
        blocked = app.committer.blocked_since
        metrics.commit_blocked.set(0.0 if blocked is None else time.monotonic() - blocked)

    register_metrics_page(app, metrics.registry, before=before_scrape)

    @app.page("/progress")
    async def progress(web: Any, request: Any) -> Any:
        """A few counters as JSON, cheap enough to poll many times a second (bench, demo,
        health checks); ``/metrics`` has everything, for Prometheus."""
        return web.json({
            "worker": worker_id,
            "packed": app.packer.packed() if app.packer is not None else None,
            "processed": runner.events,
            "committed": runner.committed_records,
            "commits": runner.commits,
            "pending": unit.pending(),
            "partitions": unit.partitions(),
            **sup.health(),
        })

    @app.page("/subscribers/{subscriber_id}")
    async def one_key_view(web: Any, request: Any, subscriber_id: str) -> Any:
        """一键综合查询: the subscriber's whole picture, from the worker that owns it
        (token required; forwarded to the owner, retried through a rebalance)."""
        return await subscriber_view(app, unit, steps, request, subscriber_id)

    if settings.packer == "thread":
        def count(topic: str, n: int) -> None:
            metrics.packer_records.labels(topic).inc(n)
            metrics.packer_envelopes.inc()

        thread = PackerThread(lambda: make_packer(
            settings, count, worker_id, on_lag=thread.set_lag,
            on_partition_lag=thread.set_partition_lag))
        app.packer = thread
    elif settings.packer == "process":
        app.packer = PackerProcess(
            settings, worker_id, INPUT_TOPICS,
            lambda topic, n: metrics.packer_records.labels(topic).inc(n),
            metrics.packer_envelopes.inc)
    sup = supervise(app, packed.get_topic_name())
    foresee = [s for s in steps if getattr(s, "name", "") == "foresee"]
    if foresee:  # keep the models scored with current from the ``models`` topic
        from streams.models_topic import start_model_loader
        app.model_loader = start_model_loader(settings, foresee[0].store)
    return app


async def _commit(app: ForesightApp) -> None:
    try:
        await app.runner.commit()
    except CommitAbandoned:
        return  # stopping: what was not committed is processed again by the next owner
    except Exception as exc:
        log.critical("commit failed, stopping the worker (state restores from the "
                     "changelog on restart): %s", exc)
        await app.crash(exc)
        raise


def make_packer(settings: Settings, on_envelope: Any = None,
                worker_id: str | None = None, *, on_lag: Any = None,
                on_partition_lag: Any = None) -> Packer:
    """The packing front stage for every input topic."""
    real = {settings.topic(t): t for t in INPUT_TOPICS}
    consumer = {"session.timeout.ms": str(int(settings.session_timeout_s * 1000))}
    if settings.static_membership and worker_id:
        consumer["group.instance.id"] = f"{worker_id}-packer"
    return Packer(
        client_logging(settings.kafka_client_config()),
        consumer_config=consumer,
        group_id=f"{settings.app_id}-packer",
        inputs=list(real),
        logical=real,
        packed_topic=settings.topic(PACKED),
        max_events=settings.batch_max_events,
        max_bytes=settings.batch_max_bytes,
        linger_ms=settings.batch_linger_ms,
        max_record_bytes=settings.max_event_bytes,
        on_envelope=on_envelope,
        on_lag=on_lag,
        on_partition_lag=on_partition_lag,
    )


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a process that allocates per event.

    The per-event path allocates many short-lived dicts; with CPython's default threshold
    (700) the cyclic collector runs every few events and its older generations walk every
    live object. Objects alive after start-up are frozen out of collection, and the young
    generation is collected every 50,000 allocations (measured: ~15% less CPU per event).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_worker(settings: Settings) -> None:
    """Run the worker until interrupted (``foresight worker``)."""
    Path(settings.home).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    tune_gc()
    worker = ForesightWorker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
