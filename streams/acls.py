"""Least-privilege Kafka ACLs for each role around Foresight, as data.

Who may read and write which topic is written once, here: ``foresight acls ROLE
PRINCIPAL`` prints the ``kafka-acls.sh`` commands for the configured topic prefix and app
id, docs/security.md explains them, and the SASL integration test grants exactly these
to the worker it runs (so the list is proven sufficient, not guessed). READ and WRITE
imply DESCRIBE in Kafka, so DESCRIBE is never listed separately.

Roles: ``worker`` (every Foresight worker of one app id), ``producer`` (an operator's
source system writing inputs), ``sink`` (a consumer of the outputs: alerting, agent
screens, ticketing, marketing) and ``dead-letters`` (the operators who inspect rejected
records). Topic creation and ACL management stay with an administrator principal.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from schemas.registry import DEAD_LETTERS, INPUT_TOPICS, MODELS, OUTPUT_TOPICS
from streams.errors import ConfigError
from streams.settings import Settings
from streams.topics import PACKED, changelog_topic

Resource = Literal["topic", "group", "transactional-id"]
Pattern = Literal["literal", "prefixed"]

ROLES = ("worker", "producer", "sink", "dead-letters")
DELIVERED = tuple(t for t in OUTPUT_TOPICS if t != DEAD_LETTERS)


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule: ``operations`` on a resource name (exact, or every name starting
    with it) for the role's principal."""

    resource: Resource
    name: str
    operations: tuple[str, ...]
    pattern: Pattern = "literal"


def worker_acls(settings: Settings, tables: Sequence[str]) -> list[Acl]:
    """What a worker needs: read inputs, pack, keep its tables' changelogs, write outputs.

    Changelogs are granted by exact name, one per table of the pipeline (``tables``), so
    a worker never reads another app's state; a new pipeline step needs its rule added.

    The packer, Faust and the restore consumer use three consumer groups named after the
    app id; the committer's transactional ids start with ``<app_id>-``. Faust subscribes
    to its leader topic ``<app_id>-__assignor-__leader`` (no topic prefix), which is never
    created (topic declaration is off): Describe lets it learn that quietly instead of
    logging an authorization error.
    """
    t, app = settings.topic, settings.app_id
    return [
        *(Acl("topic", t(name), ("Read",)) for name in INPUT_TOPICS),
        Acl("topic", t(PACKED), ("Read", "Write")),
        *(Acl("topic", changelog_topic(settings, table), ("Read", "Write")) for table in tables),
        *(Acl("topic", t(name), ("Write",)) for name in OUTPUT_TOPICS),
        Acl("topic", t(MODELS), ("Read",)),   # the foresee step loads model versions
        Acl("topic", f"{app}-__assignor-__leader", ("Describe",)),
        *(Acl("group", g, ("Read",)) for g in (app, f"{app}-packer", f"{app}-restore")),
        Acl("transactional-id", f"{app}-", ("Write", "Describe"), "prefixed"),
    ]


def role_acls(role: str, settings: Settings, *, tables: Sequence[str] = (),
              topics: Sequence[str] = (), group: str = "") -> list[Acl]:
    """The rules of ``role``; ``topics`` narrows a producer or sink to some of its topics
    (contract names), ``group`` names a sink's or dead-letter reader's consumer group
    (``name*``: every group whose id starts with ``name``); ``tables`` are a worker's.

    >>> [a.name for a in role_acls("producer", Settings(topic_prefix="p."),
    ...                            topics=["complaints"])]
    ['p.complaints']
    """
    if role == "worker":
        return worker_acls(settings, tables)
    allowed = {"producer": INPUT_TOPICS, "sink": DELIVERED, "dead-letters": (DEAD_LETTERS,)}
    if role not in allowed:
        raise ConfigError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    wrong = sorted(set(topics) - set(allowed[role]))
    if wrong:
        raise ConfigError(f"a {role} may not use {', '.join(wrong)}: its topics are "
                          f"{', '.join(allowed[role])}")
    names = list(topics) or list(allowed[role])
    if role == "producer":
        return [Acl("topic", settings.topic(n), ("Write",)) for n in names]
    acls = [Acl("topic", settings.topic(n), ("Read",)) for n in names]
    if group.endswith("*"):
        acls.append(Acl("group", group[:-1], ("Read",), "prefixed"))
    elif group:
        acls.append(Acl("group", group, ("Read",)))
    return acls


def kafka_acls_commands(principal: str, acls: Iterable[Acl], *,
                        bootstrap: str = "<broker:9093>",
                        command_config: str = "admin.properties") -> list[str]:
    """``kafka-acls.sh`` command lines granting ``acls`` to ``principal``.

    >>> kafka_acls_commands("User:fs", [Acl("group", "foresight", ("Read",))])[0].split()[-6:]
    ['--allow-principal', 'User:fs', '--operation', 'Read', '--group', 'foresight']
    """
    lines = []
    for acl in acls:
        ops = " ".join(f"--operation {op}" for op in acl.operations)
        pattern = " --resource-pattern-type prefixed" if acl.pattern == "prefixed" else ""
        lines.append(f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config "
                     f"{command_config} --add --allow-principal {principal} {ops} "
                     f"--{acl.resource} {acl.name}{pattern}")
    return lines


def acl_bindings(principal: str, acls: Iterable[Acl]) -> list[Any]:
    """The same rules as confluent-kafka ``AclBinding`` objects (``AdminClient.create_acls``)."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional-id": ResourceType.TRANSACTIONAL_ID}
    return [AclBinding(kinds[a.resource], a.name, ResourcePatternType[a.pattern.upper()],
                       principal, "*", AclOperation[op.upper()], AclPermissionType.ALLOW)
            for a in acls for op in a.operations]


def cmd_acls(args: argparse.Namespace) -> int:
    from streams.app import default_pipeline
    from streams.cli import settings_from
    from streams.unit import system_tables

    settings = settings_from(args)
    tables: tuple[str, ...] = ()
    if args.role == "worker":  # the configured pipeline's tables (FORESIGHT_STEPS)
        steps = default_pipeline(settings)
        tables = (*(s.name for s in steps), *system_tables(steps))
    acls = role_acls(args.role, settings, tables=tables, topics=args.topic or (),
                     group=args.group or "")
    for line in kafka_acls_commands(args.principal, acls, bootstrap=settings.brokers):
        print(line)
    return 0


def register(sub: Any, common: Any) -> None:
    """``foresight acls``: print the kafka-acls.sh commands of a role."""
    p = sub.add_parser(
        "acls", help="print least-privilege kafka-acls.sh commands for a role",
        description="Print the kafka-acls.sh commands that give PRINCIPAL what ROLE needs and "
        "nothing more, for the configured topic prefix and app id (see docs/security.md). "
        "Run them as an administrator.")
    p.add_argument("role", choices=ROLES)
    p.add_argument("principal", help="e.g. User:foresight")
    p.add_argument("--topic", action="append",
                   help="only this topic (contract name; repeat) for a producer or sink")
    p.add_argument("--group", help="the consumer group of a sink or dead-letter reader "
                   "(NAME* for every group starting with NAME)")
    common(p)
    p.set_defaults(func=cmd_acls)
