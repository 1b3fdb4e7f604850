"""A worker on a broker that only speaks SASL: every client must authenticate.

The private broker (its own ports and home, stopped and deleted afterwards) has a single
``SASL_PLAINTEXT`` client listener and no plaintext one. Records processed end to end
prove that the packer, the transactional committer and Faust's own aiokafka consumer and
producer all authenticated with SCRAM-SHA-256, and a restarted worker restoring its state
proves the restore consumer did; the same worker shows that its counters are open and its
tables need the API token.
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

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.outputs import DeadLetter
from streams.app import default_pipeline
from streams.kafka_local import LocalKafka
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import produce, read_topic, start_worker, total, wait_until, workload

pytestmark = pytest.mark.integration

STEPS = default_pipeline()
TABLES = tuple(s.name for s in STEPS) + system_tables(STEPS)
USER = "foresight"


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, str]]:
    """A private SASL-only broker (users ``admin`` and ``foresight``); yields it and the
    ``foresight`` password. The shared broker is never touched."""
    shared = LocalKafka.from_settings(Settings())  # its jars, fetched by `make install`
    shared.fetch(quiet=True)
    root = tmp_path_factory.mktemp("sasl-kafka")
    port, controller = _free_ports(2)
    password = secrets.token_hex(12)
    kafka = LocalKafka(root=root / "kafka", port=port, controller_port=controller, heap="256m",
                       partitions=2, libs_dir=shared.libs,
                       sasl_users=(("admin", secrets.token_hex(12)), (USER, password)))
    try:
        kafka.start(quiet=True)
        yield kafka, password
    finally:
        kafka.stop()
        shutil.rmtree(root, ignore_errors=True)


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


def _auth_errors(settings: Settings, password: str, topic: str) -> tuple[list[KafkaError], int]:
    """Errors a consumer with ``password`` gets, and how many records it read, in 8 s."""
    errors: list[KafkaError] = []
    c = Consumer({**settings.kafka_client_config(), "sasl.password": password,
                  "group.id": f"intruder-{time.time_ns()}", "error_cb": errors.append,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    read = 0
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not any(
                e.code() == KafkaError._AUTHENTICATION for e in errors):
            read += sum(1 for m in c.consume(100, 0.2) if m.error() is None)
    finally:
        c.close()
    return errors, read


def test_worker_authenticates_every_client_with_scram(sasl_kafka: tuple[LocalKafka, str],
                                                      tmp_path: Path) -> None:
    kafka, password = sasl_kafka
    token = secrets.token_urlsafe(24)
    settings = Settings(
        bootstrap_servers=kafka.bootstrap, security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256", sasl_username=USER, sasl_password=password,
        partitions=2, topic_prefix="sec.", app_id="fs-sec", home=tmp_path)
    ensure_topics(settings, TABLES)
    sent = produce(settings, workload(400, subscribers=50, invalid_every=20))
    invalid = [s for s in sent if s.value in (b"not json", b"", b'{"kind": "opened"}')]
    assert invalid

    env = {"FORESIGHT_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "FORESIGHT_SASL_MECHANISM": "SCRAM-SHA-256", "FORESIGHT_SASL_USERNAME": USER,
           "FORESIGHT_SASL_PASSWORD": password, "FORESIGHT_API_TOKEN": token}
    worker = start_worker(settings, worker_id="sasl-1", env=env)
    try:
        # packer (consumer + producer), Faust's consumer of the packed topic, the
        # committer's transactions and the restore consumer all had to authenticate
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
        assert token.encode() not in worker.log.read_bytes()
        assert password.encode() not in worker.log.read_bytes()
    finally:
        worker.stop()

    # a restarted worker restores its state from the changelogs over SASL (the store logs
    # what it read; foresight_restore_records_total is declared but not counted yet)
    seen = worker.log.stat().st_size
    worker = start_worker(settings, worker_id="sasl-1", env=env)
    restored = re.compile(rb"restored [1-9]\d* changelog records of unified-view")
    try:
        wait_until(lambda: restored.search(worker.log.read_bytes()[seen:]), 30,
                   "state restored from the changelogs", worker)
    finally:
        worker.stop()

    # dead letters keep the raw bytes, readable by an authenticated client
    dls = [DeadLetter.model_validate_json(r.value())
           for r in read_topic(settings, settings.topic("dead-letters"))]
    assert sorted(base64.b64decode(d.value_b64) for d in dls) == sorted(s.value for s in invalid)

    # a wrong password reads nothing; a plaintext client is not even answered
    errors, read = _auth_errors(settings, "wrong-" + password, settings.topic("dead-letters"))
    assert read == 0
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=3)
