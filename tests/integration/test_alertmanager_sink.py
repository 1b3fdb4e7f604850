"""The Alertmanager sink against a REAL Alertmanager and the real broker.

Alerts produced in a Kafka transaction appear in Alertmanager with their labels,
annotations and generatorURL; a resolved record ends one; Alertmanager killed for ~20 s
loses nothing, and the sink's committed offsets advance only once it accepted again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.outputs import Alert
from streams.retry import retry_transient
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.harness import FORESIGHT, ROOT, free_port, read_topic, wait_until

pytestmark = pytest.mark.integration
#: how long Alertmanager is down (the docs' 60 s figure: FORESIGHT_TEST_AM_OUTAGE_S=60)
OUTAGE_S = float(os.environ.get("FORESIGHT_TEST_AM_OUTAGE_S", "20"))

AM_BIN = "/usr/bin/prometheus-alertmanager"
MSISDN = "8613812345678"
CONFIG = """\
route:
  receiver: "null"
  group_by: [alertname]
  group_wait: 1s
receivers:
  - name: "null"
"""


@dataclass
class Alertmanager:
    port: int
    storage: Path
    config: Path
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [AM_BIN, f"--config.file={self.config}", f"--storage.path={self.storage}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self.ready, 30, f"Alertmanager did not become ready; see {self.log}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def alerts(self) -> dict[str, dict[str, Any]]:
        """Active alerts by their ``episode`` label."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=2) as r:
            return {a["labels"].get("episode", ""): a for a in orjson.loads(r.read())}


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    if not os.access(AM_BIN, os.X_OK):
        pytest.fail(f"{AM_BIN} is missing: run `make ops-packages` (as root, or "
                    "sudo apt-get install prometheus-alertmanager)")
    (tmp_path / "am.yml").write_text(CONFIG)
    am = Alertmanager(free_port(), tmp_path / "am-data", tmp_path / "am.yml", tmp_path / "am.log")
    am.start()
    try:
        yield am
    finally:
        am.kill()


def make_alert(i: int, status: str = "firing", seq: int = 1) -> Alert:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    return Alert(
        fingerprint=f"{i:016x}", sequence=seq, status=status, rule_id="bss-active-hss-barred",
        severity="critical", subscriber_id=f"S{i:08d}", msisdn_masked="*********5678",
        systems=["bss", "hss"],
        labels={"category": "status", "systems": "bss,hss", "rule": "bss-active-hss-barred",
                "severity": "critical", "region": "east"},
        annotations={"summary": f"BSS active, HSS barred for {MSISDN}",  # a leaky template
                     "guidance": "Lift the bar in the HSS.", "resolution": "Within 30 minutes.",
                     **({"resolved_summary": "Cleared."} if status == "resolved" else {})},
        starts_at=start, ends_at=datetime.now(UTC) if status == "resolved" else None,
        detected_at=start)


def produce_in_transaction(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    p = Producer({**settings.kafka_client_config(), "transactional.id": f"{settings.app_id}-test"})
    p.init_transactions(30)
    p.begin_transaction()
    for key, value in records:
        p.produce(settings.topic("alerts"), value, key=key)
    p.commit_transaction(30)


def committed(settings: Settings, group: str) -> dict[int, int]:
    c = Consumer({**settings.kafka_client_config(), "group.id": group})
    try:
        topic = settings.topic("alerts")
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        got = retry_transient(lambda: c.committed([TopicPartition(topic, p) for p in parts],
                                                  timeout=10), what="committed offsets")
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def ends(settings: Settings) -> dict[int, int]:
    """Per partition, the offset after its last committed record: where a consumer that
    took everything commits (a transaction's commit marker sits after it, so the high
    watermark is one more)."""
    out = {p: 0 for p in range(settings.partitions)}
    for m in read_topic(settings, settings.topic("alerts")):
        out[m.partition()] = max(out[m.partition()], m.offset() + 1)
    return out


def sink_metrics(port: int) -> dict[str, float]:
    from streams.demo import scrape_metrics

    return scrape_metrics(port)


def test_alerts_reach_alertmanager_and_survive_its_outage(
        isolated: Settings, alertmanager: Alertmanager) -> None:
    settings = isolated
    ensure_topics(settings)
    group = f"{settings.app_id}-sink-alertmanager"
    metrics_port = free_port()
    log = settings.home / "sink.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
           "FORESIGHT_APP_ID": settings.app_id, "FORESIGHT_HOME": str(settings.home),
           "KAFKA_BOOTSTRAP_SERVERS": settings.brokers, "FORESIGHT_LOG_LEVEL": "info",
           "FORESIGHT_VIEW_URL": "http://view.example/subscribers/{subscriber_id}"}
    cmd = [FORESIGHT, "sink", "alertmanager", "--url", alertmanager.url, "--resend-interval", "2",
           "--backoff-max", "1", "--metrics-port", str(metrics_port)]

    def start_sink() -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                    start_new_session=True)

    sink = start_sink()

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:]

    try:
        wait_until(lambda: _up(metrics_port, sink, tail), 60, "sink /metrics")
        # the sink begins at the end of the topic (a new group): wait until it is assigned
        wait_until(lambda: all(o >= 0 for o in committed(settings, group).values()), 60,
                   f"sink joined its group\n{tail()}")

        # 1. firing alerts appear with labels, annotations, generatorURL
        t0 = time.monotonic()
        produce_in_transaction(settings, [(a.fingerprint.encode(), a.model_dump_json().encode())
                                          for a in (make_alert(1), make_alert(2))])
        got = wait_until(lambda: (lambda x: x if {f"{1:016x}", f"{2:016x}"} <= set(x) else None)(
            alertmanager.alerts()), 30, f"firing alerts in Alertmanager\n{tail()}")
        visible_s = time.monotonic() - t0
        a1 = got[f"{1:016x}"]
        assert a1["labels"] == {"alertname": "bss-active-hss-barred", "rule": "bss-active-hss-barred",
                                "severity": "critical", "category": "status",
                                "systems": "bss,hss", "region": "east", "episode": f"{1:016x}"}
        assert a1["annotations"]["guidance"] == "Lift the bar in the HSS."
        assert a1["annotations"]["resolution"] == "Within 30 minutes."
        assert a1["annotations"]["summary"] == "BSS active, HSS barred for *********5678"
        assert MSISDN not in orjson.dumps(got).decode()
        assert a1["generatorURL"] == "http://view.example/subscribers/S00000001"
        assert a1["status"]["state"] == "active"
        print(f"produce -> visible in Alertmanager: {visible_s:.2f}s")

        # 2. a resolved record ends it
        produce_in_transaction(settings, [(f"{1:016x}".encode(),
                                           make_alert(1, "resolved", 2).model_dump_json().encode())])
        wait_until(lambda: f"{1:016x}" not in alertmanager.alerts(), 30,
                   f"resolved alert gone from the active ones\n{tail()}")
        assert f"{2:016x}" in alertmanager.alerts()
        wait_until(lambda: committed(settings, group) == ends(settings), 20, "offsets committed")

        # 3. Alertmanager down (20 s; FORESIGHT_TEST_AM_OUTAGE_S=60 for the minute):
        # records keep coming, nothing is committed past them
        before = committed(settings, group)
        alertmanager.kill()
        outage = time.monotonic()
        produce_in_transaction(settings, [
            *((a.fingerprint.encode(), a.model_dump_json().encode())
              for a in (make_alert(i) for i in range(3, 8))),
            (f"{2:016x}".encode(), make_alert(2, "resolved", 2).model_dump_json().encode())])
        produce_in_transaction(settings, [(b"junk", b"{not json")])  # a dead letter, not a post
        produced_end = ends(settings)
        while time.monotonic() - outage < OUTAGE_S:
            assert committed(settings, group) == before, "committed while Alertmanager was down"
            time.sleep(1.0)
        m = sink_metrics(metrics_port)
        assert _val(m, "foresight_sink_queue_depth") >= 6
        assert _val(m, "foresight_sink_retries_total") >= 3
        assert _val(m, "foresight_sink_alerts_failed_total", 'reason="unavailable"') >= 6
        assert sink.poll() is None

        # 4. back: everything arrives, then the offsets advance to the end
        alertmanager.start()
        back = time.monotonic()
        want = {f"{i:016x}" for i in range(3, 8)}
        wait_until(lambda: want <= set(alertmanager.alerts()), 30,
                   f"alerts produced during the outage\n{tail()}")
        recovered_s = time.monotonic() - back
        print(f"outage {back - outage:.1f}s; all {len(want)} alerts visible {recovered_s:.2f}s "
              "after Alertmanager came back")
        assert set(alertmanager.alerts()) == want  # 1 and 2 resolved, nothing else
        wait_until(lambda: committed(settings, group) == produced_end, 20,
                   f"offsets committed after acceptance\n{tail()}")
        dead = [orjson.loads(m.value()) for m in read_topic(settings, settings.topic("dead-letters"))]
        assert [(d["source_topic"], d["reason"]) for d in dead] == [("alerts", "not_json")]
        m = sink_metrics(metrics_port)
        assert _val(m, "foresight_sink_queue_depth") == 0
        assert _val(m, "foresight_sink_alerts_sent_total", 'kind="new"') == 9
        assert _val(m, "foresight_sink_last_success_timestamp_seconds") > time.time() - 30

        # 5. firing alerts are re-sent: Alertmanager restarted empty gets them back
        alertmanager.kill()
        shutil.rmtree(alertmanager.storage, ignore_errors=True)
        alertmanager.start()
        wait_until(lambda: want <= set(alertmanager.alerts()), 15,
                   f"firing alerts re-sent to a fresh Alertmanager\n{tail()}")

        # 6. SIGTERM: exit 0, promptly
        t = time.monotonic()
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(20) == 0, tail()
        assert time.monotonic() - t < 10
        assert committed(settings, group) == produced_end

        # 7. a restarted sink rebuilds what fires from the topic and re-sends it (only that)
        alertmanager.kill()
        shutil.rmtree(alertmanager.storage, ignore_errors=True)
        alertmanager.start()
        sink = start_sink()
        wait_until(lambda: want <= set(alertmanager.alerts()), 30,
                   f"firing alerts rebuilt and re-sent after a restart\n{tail()}")
        time.sleep(1.0)
        assert set(alertmanager.alerts()) == want
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(20) == 0, tail()
        assert MSISDN not in log.read_text(errors="replace")
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait(10)


def _up(port: int, sink: subprocess.Popen, tail: Any) -> bool:
    if sink.poll() is not None:
        raise AssertionError(f"sink exited with {sink.returncode}:\n{tail()}")
    try:
        sink_metrics(port)
        return True
    except OSError:
        return False


def _val(m: dict[str, float], name: str, label: str = "") -> float:
    return sum(v for k, v in m.items() if k.startswith(name) and label in k)
