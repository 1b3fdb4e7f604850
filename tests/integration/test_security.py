"""A worker on a broker that only speaks SASL and enforces ACLs.

The private broker (its own ports and home, stopped and deleted afterwards) has a single
``SASL_PLAINTEXT`` client listener and no plaintext one, and authorizes every request.
An administrator creates the topics and grants each role exactly what
:mod:`streams.acls` lists. Records processed end to end prove that the packer, the
transactional committer and Faust's own aiokafka consumer and producer all authenticated
with SCRAM-SHA-256 and needed nothing beyond the worker's ACLs; a restarted worker
restoring its state proves the restore consumer did too. The same worker shows that its
counters are open and its tables need the API token.
"""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from schemas.outputs import DeadLetter
from streams.acls import Acl, acl_bindings, role_acls
from streams.app import default_pipeline
from streams.kafka_local import LocalKafka
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import produce, read_topic, start_worker, total, wait_until, workload

pytestmark = pytest.mark.integration

STEPS = default_pipeline()
TABLES = tuple(s.name for s in STEPS) + system_tables(STEPS)
#: user -> (role, SASL mechanism it logs in with); the first user administers the broker
USERS = {"admin": ("admin", "SCRAM-SHA-512"), "foresight": ("worker", "SCRAM-SHA-256"),
         "ingest": ("producer", "PLAIN"), "ops": ("dead-letters", "SCRAM-SHA-512")}
INVALID = (b"not json", b"", b'{"kind": "opened"}')  # what harness.workload breaks


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, dict[str, str]]]:
    """A private SASL-only broker with ACLs; yields it and every user's password.
    The shared broker is never touched."""
    shared = LocalKafka.from_settings(Settings())  # its jars, fetched by `make install`
    shared.fetch(quiet=True)
    root = tmp_path_factory.mktemp("sasl-kafka")
    port, controller = _free_ports(2)
    passwords = {user: secrets.token_hex(12) for user in USERS}
    kafka = LocalKafka(root=root / "kafka", port=port, controller_port=controller, heap="256m",
                       partitions=2, libs_dir=shared.libs, sasl_users=tuple(passwords.items()))
    try:
        kafka.start(quiet=True)
        yield kafka, passwords
    finally:
        kafka.stop()
        shutil.rmtree(root, ignore_errors=True)


def _as(user: str, kafka: LocalKafka, passwords: dict[str, str], home: Path) -> Settings:
    return Settings(bootstrap_servers=kafka.bootstrap, security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism=USERS[user][1], sasl_username=user,
                    sasl_password=passwords[user], partitions=2, topic_prefix="sec.",
                    app_id="fs-sec", home=home)


def _grant(admin: Settings, user: str, acls: list[Any]) -> None:
    """Create the ACLs and wait until the broker's authorizer applies them (they travel
    through the metadata log: created is not yet enforced)."""
    client = AdminClient(admin.kafka_client_config())
    bindings = acl_bindings(f"User:{user}", acls)
    for fut in client.create_acls(bindings).values():
        fut.result(timeout=30)
    mine = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{user}",
                            None, AclOperation.ANY, AclPermissionType.ANY)
    wait_until(lambda: len(client.describe_acls(mine).result(timeout=10)) >= len(bindings),
               30, f"the ACLs of {user} applied")


def _get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _refused(settings: Settings, topic: str, **override: str) -> tuple[set[int], int]:
    """Error codes a reader of ``topic`` gets within 8 s, and how many records it read."""
    errors: list[KafkaError] = []
    c = Consumer({**settings.kafka_client_config(), **override, "error_cb": errors.append,
                  "group.id": f"intruder-{time.time_ns()}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    read = 0
    codes: set[int] = set()
    try:
        c.subscribe([topic])  # (librdkafka reports a refused topic to subscribers only)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not codes:
            for m in c.consume(100, 0.2):
                if m.error() is None:
                    read += 1
                else:
                    codes.add(m.error().code())
            codes |= {e.code() for e in errors}
    finally:
        c.close()
    return codes, read


def test_worker_with_least_privilege_over_sasl(
        sasl_kafka: tuple[LocalKafka, dict[str, str]], tmp_path: Path) -> None:
    kafka, passwords = sasl_kafka
    admin, worker_user, ingest, ops = (_as(u, kafka, passwords, tmp_path) for u in USERS)
    ensure_topics(admin, TABLES)  # topics are the administrator's job
    _grant(admin, "foresight", role_acls("worker", worker_user, tables=TABLES))
    # (a group of its own, so that reading dead letters is refused by the topic's ACL)
    _grant(admin, "ingest", [*role_acls("producer", ingest),
                             Acl("group", "intruder-", ("Read",), "prefixed")])
    _grant(admin, "ops", role_acls("dead-letters", ops, group="reader-*"))  # harness.read_topic

    sent = produce(ingest, workload(400, subscribers=50, invalid_every=20))
    invalid = [s for s in sent if s.value in INVALID]
    assert invalid

    token = secrets.token_urlsafe(24)
    env = {"FORESIGHT_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "FORESIGHT_SASL_MECHANISM": worker_user.sasl_mechanism,
           "FORESIGHT_SASL_USERNAME": "foresight", "FORESIGHT_SASL_PASSWORD": passwords["foresight"],
           "FORESIGHT_API_TOKEN": token}
    worker = start_worker(worker_user, worker_id="sasl-1", env=env)
    try:
        # packer (consumer + producer), Faust's consumer of the packed topic and the
        # committer's transactions all had to authenticate, with the worker's ACLs only
        wait_until(lambda: total(worker.metrics(), "foresight_committed_records_total") >= len(sent),
                   60, "all records committed over SASL/SCRAM", worker)
        m = worker.metrics()
        assert total(m, "foresight_input_events_total") == len(sent) - len(invalid)
        assert total(m, "foresight_dead_letters_total") == len(invalid)

        # web: counters open, state behind the token
        assert _get(worker.port, "/metrics")[0] == 200
        status, body = _get(worker.port, "/progress")
        assert status == 200 and orjson.loads(body)["committed"] >= len(sent)
        assert _get(worker.port, "/table/")[0] == 401
        assert _get(worker.port, "/table/", "not-the-token")[0] == 401
        assert _get(worker.port, "/router/")[0] == 401
        status, body = _get(worker.port, "/table/", token)
        assert status == 200 and b"unified-view" in body
        assert _get(worker.port, "/router/", token)[0] == 200
    finally:
        worker.stop()

    # a restarted worker restores its state from the changelogs over SASL (the store logs
    # what it read; foresight_restore_records_total is declared but not counted yet)
    seen = worker.log.stat().st_size
    worker = start_worker(worker_user, worker_id="sasl-1", env=env)
    restored = re.compile(rb"restored [1-9]\d* changelog records of unified-view")
    try:
        wait_until(lambda: restored.search(worker.log.read_bytes()[seen:]), 30,
                   "state restored from the changelogs", worker)
    finally:
        worker.stop()
    log = worker.log.read_bytes()
    assert token.encode() not in log and passwords["foresight"].encode() not in log
    assert b"not authorized" not in log  # the worker's ACLs are enough for every client

    # dead letters keep the raw bytes, for the operators allowed to read them
    dls = [DeadLetter.model_validate_json(r.value())
           for r in read_topic(ops, ops.topic("dead-letters"))]
    assert sorted(base64.b64decode(d.value_b64) for d in dls) == sorted(s.value for s in invalid)

    # a producer may not read them, a wrong password reads nothing, plaintext gets no answer
    codes, read = _refused(ingest, ingest.topic("dead-letters"))
    assert read == 0 and KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, codes
    codes, read = _refused(ops, ops.topic("dead-letters"), **{"sasl.password": "wrong"})
    assert read == 0 and KafkaError._AUTHENTICATION in codes, codes
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=3)
