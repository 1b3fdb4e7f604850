"""Topic declarations and creation: names, partitions, retention, compaction.

All subscriber-keyed topics (inputs, the packed topic, every table's changelog) share one
partition count, so partition *p* of each holds the same subscribers and one worker owns a
subscriber's whole state. ``ensure_topics`` creates what is missing and refuses to run on
a cluster whose existing topics break that rule, saying how to fix it. ``delete_topics``
and ``delete_groups`` remove what a run created (demo, evaluation, benchmarks, tests), so a
shared cluster is left as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.registry import (
    AGENT_HINTS,
    ALERTS,
    CARE_LIST,
    CONTACT_DECISIONS,
    DEAD_LETTERS,
    DO_NOT_DISTURB,
    INPUT_TOPICS,
    MODEL_EXAMPLES,
    MODELS,
    WORK_ORDERS,
)
from streams.errors import ConfigError
from streams.settings import Settings

PACKED = "foresight-packed"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    """One topic as Foresight needs it.

    Every topic gets ``settings.partitions``; only ``copartitioned`` ones must keep exactly
    that count (dead letters are keyed by source topic and may be resized freely).
    """

    name: str
    copartitioned: bool = True
    config: dict[str, str] = field(default_factory=dict)


def changelog_topic(settings: Settings, table: str) -> str:
    """Name of a table's changelog topic (Faust's convention: ``<app>-<table>-changelog``)."""
    return settings.topic(f"{settings.app_id}-{table}-changelog")


def topic_specs(settings: Settings, tables: tuple[str, ...] = ()) -> list[TopicSpec]:
    """Every topic a worker with these ``tables`` uses."""
    specs = [TopicSpec(settings.topic(t), config={"retention.ms": str(7 * DAY_MS)})
             for t in INPUT_TOPICS if t != DO_NOT_DISTURB]
    # the do-not-disturb list is state an operator keeps: compacted, never expired
    specs.append(TopicSpec(settings.topic(DO_NOT_DISTURB), config={
        "cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}))
    specs.append(TopicSpec(settings.topic(PACKED), config={
        "retention.ms": str(DAY_MS), "max.message.bytes": str(4 * 1024 * 1024)}))
    for t in (ALERTS, AGENT_HINTS, CONTACT_DECISIONS, CARE_LIST):
        specs.append(TopicSpec(settings.topic(t), config={"retention.ms": str(30 * DAY_MS)}))
    specs.append(TopicSpec(settings.topic(WORK_ORDERS), config={"retention.ms": str(30 * DAY_MS)}))
    specs.append(TopicSpec(settings.topic(DEAD_LETTERS), copartitioned=False, config={
        "retention.ms": str(14 * DAY_MS), "max.message.bytes": str(4 * 1024 * 1024)}))
    # Foresee: examples keyed by model name (any partition count), model versions compacted
    specs.append(TopicSpec(settings.topic(MODEL_EXAMPLES), copartitioned=False, config={
        "retention.ms": str(7 * DAY_MS)}))
    specs.append(TopicSpec(settings.topic(MODELS), copartitioned=False, config={
        "cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
        "max.message.bytes": str(8 * 1024 * 1024)}))
    for table in tables:
        specs.append(TopicSpec(changelog_topic(settings, table), config={
            "cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
            "segment.ms": str(6 * 3_600_000)}))
    return specs


def ensure_topics(settings: Settings, tables: tuple[str, ...] = (),
                  timeout: float = 30.0) -> list[str]:
    """Create missing topics and check partition counts; return the names created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from streams.retry import retry_transient

    admin = AdminClient(settings.kafka_client_config())
    md = retry_transient(lambda: admin.list_topics(timeout=timeout), what="topic metadata")
    specs = topic_specs(settings, tables)
    wrong = []
    missing = []
    for spec in specs:
        want = settings.partitions
        existing = md.topics.get(spec.name)
        if existing is None or existing.error is not None:
            missing.append(NewTopic(spec.name, num_partitions=want,
                                    replication_factor=settings.replication_factor,
                                    config=spec.config))
        elif spec.copartitioned and len(existing.partitions) != want:
            wrong.append(f"{spec.name} has {len(existing.partitions)} partitions")
    if wrong:
        raise ConfigError(
            "subscriber-keyed topics must all have FORESIGHT_PARTITIONS="
            f"{settings.partitions} partitions, but " + ", ".join(wrong) + ". Set "
            "FORESIGHT_PARTITIONS to the existing count, or add partitions to every listed "
            "topic (kafka-topics --alter --partitions N) before producers use them."
        )
    created = []
    if missing:
        for name, fut in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                fut.result()
                created.append(name)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ConfigError(f"cannot create topic {name}: {exc}") from exc
        _wait_for_leaders(admin, created, timeout)
    return created


def _wait_for_leaders(admin: Any, names: list[str], timeout: float) -> None:
    """Return once every partition of ``names`` has a leader: a topic is usable only then,
    and a worker started a moment earlier reads ``NOT_LEADER_FOR_PARTITION`` instead."""
    deadline = time.monotonic() + timeout
    waiting = set(names)
    while waiting and time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout)
        for name in list(waiting):
            t = md.topics.get(name)
            if t is not None and t.error is None and t.partitions and \
                    all(p.leader >= 0 and p.error is None for p in t.partitions.values()):
                waiting.discard(name)
        if waiting:
            time.sleep(0.1)


Log = Callable[[str], None]


def delete_topics(settings: Settings, match: Callable[[str], bool], log: Log = print) -> int:
    """Delete the topics whose name ``match`` accepts (best effort); return how many."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_client_config())
    names = [t for t in admin.list_topics(timeout=15).topics if match(t)]
    if names:
        for name, fut in admin.delete_topics(names, operation_timeout=60).items():
            try:
                fut.result(timeout=90)
            except Exception as exc:
                log(f"could not delete topic {name}: {exc}")
    return len(names)


def delete_groups(settings: Settings, match: Callable[[str], bool], log: Log = print,
                  wait_s: float = 30.0) -> None:
    """Delete the consumer groups whose id ``match`` accepts (best effort, retried).

    A group whose last member just left can still read as non-empty for a few seconds
    (a static member, like the packer, stays until its session times out), so failed
    deletions are retried for ``wait_s``; groups with committed offsets would otherwise
    linger on the cluster for the offsets retention (7 days).
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_client_config())
    try:
        groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=15)
                  .result(timeout=30).valid if match(g.group_id)]
    except Exception as exc:
        log(f"could not list consumer groups: {exc}")
        return
    deadline = time.monotonic() + wait_s
    while groups:
        failed: dict[str, Exception] = {}
        for g, fut in admin.delete_consumer_groups(groups, request_timeout=15).items():
            try:
                fut.result(timeout=30)
            except Exception as exc:
                failed[g] = exc
        groups = list(failed)
        if not groups:
            break
        if time.monotonic() > deadline:
            for g, exc in failed.items():
                log(f"could not delete consumer group {g}: {exc}")
            break
        time.sleep(2.0)
