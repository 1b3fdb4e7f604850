"""The fault suite: what every Kafka deployment sees, on the real broker, under load.

Each test ends with :func:`assert_exactly_once`: every input applied or dead-lettered,
every table equal to a fault-free run of the same records, every alert, hint and dead
letter there exactly once by its id. (kill -9 mid-batch is in ``test_worker.py``, a
worker joining mid-stream in ``test_scale_out.py``, both with the same check.)
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from schemas.examples import INPUT_EXAMPLES
from schemas.outputs import Alert, DeadLetter
from streams.app import default_pipeline
from streams.kafka_local import LocalKafka
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.expected import assert_exactly_once
from tests.integration.harness import (
    all_applied,
    produce,
    read_topic,
    start_worker,
    total,
    wait_until,
    workload,
)

pytestmark = pytest.mark.integration

STEPS = default_pipeline()
TABLES = tuple(s.name for s in STEPS) + system_tables(STEPS)
SHUTDOWN_TIMEOUT_S = 10.0  # the documented default
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _state(kind: str, sid: str, at: datetime, **fields: Any) -> tuple[str, bytes, bytes]:
    ev = dict(next(e for e in INPUT_EXAMPLES["subscriber-state"] if e["kind"] == kind))
    ev.update(subscriber_id=sid, event_id=f"{kind}-{sid}-{at.timestamp():.0f}",
              event_time=at.isoformat(), **fields)
    return "subscriber-state", sid.encode(), orjson.dumps(ev)


def _dead_letters(settings: Settings) -> dict[tuple[int, int], DeadLetter]:
    """Dead letters of ``subscriber-state`` by source (partition, offset)."""
    dls = [DeadLetter.model_validate_json(m.value())
           for m in read_topic(settings, settings.topic("dead-letters"))]
    return {(d.source_partition, d.source_offset): d for d in dls
            if d.source_topic == "subscriber-state"}


# --- any record is survivable ------------------------------------------------------------
def test_any_record_is_a_dead_letter_or_processed_and_none_stops_the_worker(
        isolated: Settings) -> None:
    """Records of 0.7, 0.8, 0.99 and 1.0 MB (the broker's default limit) and 5 MB (the
    topic's limit raised to 10 MB), a 2 KB key, a null key, a wrong key, and events dated
    2999 and 1990 among valid traffic: each is a dead letter that fits in a Kafka message
    and names its reason, no clock moves to 2999, and everything after them is processed.
    """
    ensure_topics(isolated, TABLES)
    admin = AdminClient(isolated.kafka_client_config())
    raised = ConfigEntry("max.message.bytes", str(10 * 1024 * 1024),
                         incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", isolated.topic("subscriber-state"),
                              incremental_configs=[raised])
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result(30)
    _wait_for_topic_config(admin, resource.name, "max.message.bytes", str(10 * 1024 * 1024))
    sid, clock_sid = "S10000077", "S10000078"  # outside the workload's subscribers
    ok = orjson.loads(_state("activated", sid, T0)[2])
    poison_sizes = [700_000, 800_000, 990_000, 1_000_000, 5_000_000]
    poison = [("subscriber-state", sid.encode(),
               orjson.dumps({**ok, "event_id": f"big-{n}", "padding": "p" * n}))
              for n in poison_sizes]
    bad = [
        ("subscriber-state", b"K" * 2048, orjson.dumps({**ok, "event_id": "long-key"})),
        ("subscriber-state", None, orjson.dumps({**ok, "event_id": "null-key"})),
        ("subscriber-state", b"S00000099", orjson.dumps({**ok, "event_id": "wrong-key"})),
        # the clock poison: a report dated 2999 on the partition of clock_sid...
        _state("balance_reported", clock_sid, datetime(2999, 1, 1, tzinfo=UTC), system="billing"),
        _state("balance_reported", clock_sid, datetime(1990, 1, 1, tzinfo=UTC), system="billing"),
    ]
    # ... then a normal order provisioned a minute later: no alert may follow from it
    order = [_state("opened", clock_sid, T0, plan_networks=["4g"]),
             _state("activated", clock_sid, T0 + timedelta(seconds=30)),
             _state("product_ordered", clock_sid, T0 + timedelta(minutes=1),
                    product_id="VAS-MUSIC", platform="vas"),
             _state("product_provisioned", clock_sid, T0 + timedelta(minutes=2), system="vas",
                    product_id="VAS-MUSIC")]
    records = [*workload(2000, seed=3), *poison, *bad, *order, *workload(2000, seed=4)]
    sent = produce(isolated, records, config={"message.max.bytes": 20_000_000})
    worker = start_worker(isolated, worker_id="poisoned")
    try:
        wait_until(lambda: all_applied(isolated, sent), 120, "every record applied", worker)
        assert worker.proc.poll() is None, "the worker is alive"
        assert worker.progress()["status"] == "ok"
        assert worker.log_lines("CRITICAL") == []
    finally:
        worker.stop()
    assert_exactly_once(isolated, sent, STEPS)
    at = {s.value: (s.partition, s.offset) for s in sent if s.topic == "subscriber-state"}
    dls = _dead_letters(isolated)
    for (_t, _k, value), n in zip(poison, poison_sizes, strict=True):
        dl = dls[at[value]]
        assert (dl.reason, dl.value_truncated, dl.value_bytes) == ("oversize", True, len(value))
        assert dl.value_sha256 == hashlib.sha256(value).hexdigest(), n
        assert len(dl.model_dump_json()) < 10_000
    reasons = [dls[at[value]].reason for _t, _k, value in bad]
    assert reasons == ["key_mismatch", "missing_key", "key_mismatch",
                       "event_time_out_of_bounds", "event_time_out_of_bounds"]
    assert dls[at[bad[0][2]]].key_truncated
    alerts = [Alert.model_validate_json(m.value())
              for m in read_topic(isolated, isolated.topic("alerts"))]
    assert [a for a in alerts if a.subscriber_id == clock_sid] == [], \
        "a clock moved by a bad record fired an alert on a normal order"


# --- graceful shutdown -------------------------------------------------------------------
def test_sigterm_under_load_exits_in_time_and_the_other_worker_takes_over(
        isolated: Settings) -> None:
    ensure_topics(isolated, TABLES)
    records = workload(80_000, subscribers=4000, invalid_every=89, seed=21)
    sent = produce(isolated, records[:20_000])
    env = {"FORESIGHT_BATCH_MAX_EVENTS": "500"}
    leaving = start_worker(isolated, worker_id="leaving", env=env)
    staying = start_worker(isolated, worker_id="staying", env=env)
    feeding = threading.Event()

    def feed() -> None:  # load keeps arriving through the shutdown and the handover
        for i in range(20_000, len(records), 2_000):
            sent.extend(produce(isolated, records[i:i + 2_000]))
            time.sleep(0.2)
        feeding.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        wait_until(lambda: leaving.progress()["committed"] > 2_000, 90, "leaving worker busy",
                   leaving)
        took = leaving.terminate(timeout=SHUTDOWN_TIMEOUT_S * 3)
        assert leaving.proc.returncode == 0, leaving.tail()
        assert took <= SHUTDOWN_TIMEOUT_S + 2, f"SIGTERM to exit took {took:.1f}s"
        assert not any("wait_empty" in ln for ln in leaving.log_lines("WARNING"))
        feeder.join()
        wait_until(lambda: all_applied(isolated, sent), 180, "the other worker took over",
                   staying)
    finally:
        feeder.join()
        staying.stop()
        leaving.stop()
    assert len(sent) == len(records)
    assert_exactly_once(isolated, sent, STEPS)


def test_a_packer_that_dies_is_started_again(isolated: Settings) -> None:
    ensure_topics(isolated, TABLES)
    records = workload(40_000, subscribers=2000, seed=31)
    sent = produce(isolated, records[:10_000])
    worker = start_worker(isolated, worker_id="repacked")
    try:
        wait_until(lambda: worker.progress()["committed"] > 0, 90, "worker busy", worker)
        first = worker.packer_pid()
        os.kill(first, signal.SIGKILL)
        sent.extend(produce(isolated, records[10_000:]))
        wait_until(lambda: all_applied(isolated, sent), 120, "all applied after the restart",
                   worker)
        assert worker.packer_pid() != first
        assert worker.proc.poll() is None
        assert any("packer exited" in ln for ln in worker.log_lines("ERROR"))
    finally:
        worker.stop()
    assert_exactly_once(isolated, sent, STEPS)


# --- broker outages ----------------------------------------------------------------------
@pytest.fixture
def on_private(private_kafka: LocalKafka, isolated: Settings) -> Settings:
    """``isolated`` settings pointed at the module's private broker (which the tests kill)."""
    return isolated.model_copy(update={"bootstrap_servers": private_kafka.bootstrap})


def _health_code(worker: Any) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/health", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _kill_broker(kafka: LocalKafka) -> None:
    pid = kafka.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while kafka.port_open() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not kafka.port_open()
    kafka.pid_file.unlink(missing_ok=True)


@pytest.mark.parametrize("down_s", [15, 60])
def test_worker_resumes_by_itself_after_the_broker_was_down(
        private_kafka: LocalKafka, on_private: Settings, down_s: int) -> None:
    """kill -9 of the only broker while a backlog is being processed, ``down_s`` seconds
    down, restarted: the same worker process resumes by itself, says ``stalled`` while it
    cannot progress (past 30 s), logs each problem at most once a minute, and loses and
    duplicates nothing."""
    settings = on_private
    ensure_topics(settings, TABLES)
    records = workload(120_000, subscribers=6000, invalid_every=97, seed=down_s)
    sent = produce(settings, records[:100_000])
    worker = start_worker(settings, worker_id=f"outage-{down_s}")
    statuses: list[dict[str, Any]] = []
    try:
        wait_until(lambda: worker.progress()["processed"] > 25_000, 90, "a quarter processed",
                   worker)
        _kill_broker(private_kafka)
        went_down = time.monotonic()
        while time.monotonic() - went_down < down_s:
            status = worker.progress()
            if status["status"] == "stalled":
                status["health"] = _health_code(worker)
                status["metric"] = total(worker.metrics(), "foresight_worker_stalled")
            statuses.append(status)
            time.sleep(1.0)
        private_kafka.start(quiet=True)
        sent.extend(produce(settings, records[100_000:]))  # and load after it returned
        wait_until(lambda: all_applied(settings, sent), 180,
                   "everything applied after the broker returned", worker)
        assert worker.proc.poll() is None, "the same process resumed"
        wait_until(lambda: worker.progress()["status"] == "ok", 30, "healthy again", worker)
        assert _health_code(worker) == 200
    finally:
        worker.stop()
    stalled = [s for s in statuses if s["status"] == "stalled"]
    if down_s >= 45:
        assert stalled, "a worker that cannot progress for 30 s says so"
        assert stalled[-1]["component"] in ("broker", "commit") and stalled[-1]["reason"]
        assert stalled[-1]["health"] == 503 and stalled[-1]["metric"] == 1
    errors = worker.log_lines("ERROR")
    assert len(errors) <= 40 + down_s // 2, f"{len(errors)} ERROR lines:\n" + "\n".join(errors[:50])
    assert_exactly_once(settings, sent, STEPS)


def _wait_for_topic_config(admin: AdminClient, topic: str, name: str, value: str) -> None:
    """A config change is applied by the broker after the controller committed it: wait
    until the broker reports it (a 5 MB record produced at once was refused in one CI run)."""
    deadline = time.monotonic() + 30
    while True:
        res = ConfigResource("topic", topic)
        entry = admin.describe_configs([res])[res].result(30).get(name)
        if entry is not None and entry.value == value:
            time.sleep(1.0)  # the partition's log picks it up in the same metadata publish
            return
        assert time.monotonic() < deadline, f"{topic}: {name} still {entry and entry.value}"
        time.sleep(0.2)
