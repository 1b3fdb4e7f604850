"""Operations end to end, every part real and nothing produced by hand: the simulator
injects faults on Kafka, a worker's audit fires, ``foresight sink alertmanager`` delivers
the alerts to a real Alertmanager, whose route sends them to ``foresight sink
sms-webhook``, which texts the technicians through Kannel; the fake SMSC (the operator
side) prints what it got. Meanwhile a real Prometheus scrapes the worker and both sinks
(jobs named as in docker/prometheus.yml), and every Grafana panel's query answers.

Checked: every SMS names a rule the worker fired and carries no full phone number; the
alert sink delivered every alert record the worker committed, and Alertmanager holds one
alert per rule that fired; Prometheus sees all three targets up and the same counts the
components report (alerts sent, SMS sent); the Foresight alerting rules load and none
fires; every dashboard query returns data.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.outputs import Alert
from streams.app import default_pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import (
    FORESIGHT,
    ROOT,
    free_port,
    read_topic,
    start_worker,
    total,
    wait_until,
)
from tests.integration.test_prometheus import Prometheus
from tests.integration.test_sms_webhook import AM_BIN, Kannel, _am, _metrics, _need
from tests.ops_helpers import dashboard_queries, stop_processes

pytestmark = pytest.mark.integration

SPEED = 600          # simulated seconds per wall second: grace periods of minutes pass fast
DURATION_S = 25
NOC = ("+8613900004444", "+8613900005555")
AM_CONF = """\
route:
  receiver: sms-noc
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: sms-noc
    webhook_configs:
      - url: "http://127.0.0.1:{hook}/alertmanager"
        send_resolved: true
"""
#: a Chinese mobile number in full, with or without the country code
FULL_NUMBER = re.compile(r"(?<!\d)(?:\+?86)?1[3-9]\d{9}(?!\d)")


def test_simulated_faults_reach_alertmanager_and_sms_and_prometheus_sees_it(
        isolated: Settings, kannel: Kannel, tmp_path: Path) -> None:
    _need(AM_BIN)
    started = time.monotonic()
    settings = isolated
    steps = default_pipeline(settings)
    ensure_topics(settings, tuple(s.name for s in steps) + system_tables(steps))
    procs: list[subprocess.Popen] = []
    logs = {n: tmp_path / f"{n}.log" for n in ("alertmanager", "webhook", "sink", "simulator")}
    env = {**os.environ, "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
           "FORESIGHT_APP_ID": settings.app_id, "FORESIGHT_HOME": str(settings.home),
           "FORESIGHT_PARTITIONS": str(settings.partitions),
           "KAFKA_BOOTSTRAP_SERVERS": settings.brokers, "FORESIGHT_LOG_LEVEL": "info",
           "FORESIGHT_SMS_PASSWORD": kannel.password}

    def spawn(name: str, argv: list[str]) -> subprocess.Popen:
        with open(logs[name], "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                 start_new_session=True)
        procs.append(p)
        return p

    def diagnostics() -> str:
        return "\n".join(f"--- {n} ---\n{p.read_text(errors='replace')[-2500:]}"
                         for n, p in logs.items() if p.exists()) + \
            f"\n--- fakesmsc ---\n{kannel.tail('fakesmsc.out')}"

    worker = start_worker(settings, worker_id="e2e")
    prom: Prometheus | None = None
    try:
        hook_port, am_port, sink_port = free_port(), free_port(), free_port()
        am_url = f"http://127.0.0.1:{am_port}"
        (tmp_path / "recipients.yml").write_text(f'sms-noc: ["{NOC[0]}", "{NOC[1]}"]\n')
        spawn("webhook", [FORESIGHT, "sink", "sms-webhook", "--listen", f"127.0.0.1:{hook_port}",
                          "--kannel-url", kannel.sendsms_url, "--username", "foresight",
                          "--sender", "10086", "--recipients-file",
                          str(tmp_path / "recipients.yml")])
        (tmp_path / "am.yml").write_text(AM_CONF.format(hook=hook_port))
        spawn("alertmanager", [AM_BIN, f"--config.file={tmp_path / 'am.yml'}",
                               f"--storage.path={tmp_path / 'am-data'}",
                               f"--web.listen-address=127.0.0.1:{am_port}",
                               "--cluster.listen-address="])
        spawn("sink", [FORESIGHT, "sink", "alertmanager", "--url", am_url,
                       "--metrics-port", str(sink_port), "--backoff-max", "1"])
        prom = Prometheus({"foresight": [worker.port], "foresight-sink": [sink_port, hook_port]},
                          tmp_path / "prometheus")

        def ready() -> bool:
            for p in procs:
                if p.poll() is not None:
                    raise AssertionError(f"{p.args[:3]} exited with {p.returncode}\n{diagnostics()}")
            try:
                _am(am_url, "/api/v2/status")
            except OSError:
                return False
            return prom.ready()  # type: ignore[union-attr]

        wait_until(ready, 90, f"the stack is up and scraped\n{diagnostics()}", worker)

        # the simulator, ending about now in event time (its clock runs SPEED x faster)
        start = datetime.now(UTC) - timedelta(seconds=SPEED * DURATION_S)
        sim = spawn("simulator", [
            FORESIGHT, "simulate", "--seed", "11", "--subscribers", "400",
            "--start", start.isoformat(timespec="seconds"), "--speed", str(SPEED),
            "--rate", "3000", "--duration", str(DURATION_S), "--faults-per-rule", "2",
            "--lookalike-rate", "0", "--invalid-rate", "0.01", "--quiet",
            "--truth", str(tmp_path / "truth.jsonl"), "--broker", settings.brokers,
            "--topic-prefix", settings.topic_prefix, "--partitions", str(settings.partitions)])
        assert sim.wait(DURATION_S + 120) == 0, diagnostics()
        produced_s = time.monotonic() - started

        def alerts() -> list[Alert]:
            return [Alert.model_validate_json(m.value())
                    for m in read_topic(settings, settings.topic("alerts"), timeout=10)]

        # the worker caught up and its audit fired
        wait_until(lambda: total(worker.metrics(), "foresight_consumer_lag_records") == 0 and
                   total(worker.metrics(), "foresight_audit_alerts_total",
                         transition="fired") >= 1, 120, f"the worker fired\n{diagnostics()}",
                   worker)
        # the sink delivered every alert record the worker committed (stable count first)
        wait_until(lambda: total(_metrics(sink_port), "foresight_sink_alerts_sent_total",
                                 kind="new") >= len(alerts()) > 0, 60,
                   f"every alert delivered\n{diagnostics()}", worker)
        fired = alerts()
        fired_rules = {a.rule_id for a in fired if a.status == "firing"}
        assert fired_rules, fired
        in_am = {a["labels"]["alertname"] for a in _am(am_url, "/api/v2/alerts")}
        assert fired_rules <= in_am, (fired_rules, in_am)

        # Alertmanager -> webhook -> Kannel -> the fake SMSC: one SMS per group and number,
        # each about a rule the worker fired, no full number in any
        def texted() -> set[str]:
            return {m.group(1) for s in kannel.received() if s.to == NOC[0]
                    for m in [re.match(r"Foresight FIRING \d+ (\S+)", s.text)] if m}

        wait_until(lambda: texted() == fired_rules, 60,
                   f"an SMS for every rule that fired ({sorted(fired_rules)})\n{diagnostics()}",
                   worker)
        got = kannel.received()
        for sms in got:
            assert sms.sender == "10086" and sms.to in NOC, sms
            assert not FULL_NUMBER.search(sms.text), sms.text
        assert {s.to for s in got} == set(NOC)
        print(f"\nsimulated {DURATION_S}s x{SPEED}: {len(fired)} alert records, rules "
              f"{sorted(fired_rules)}; {len(got)} SMS; produce phase ended at {produced_s:.0f}s")

        # Prometheus sees the three targets and the same counts the components report
        def scraped() -> bool:
            sent = prom.query('sum(foresight_sink_alerts_sent_total{kind="new"})')  # type: ignore[union-attr]
            sms = prom.query("sum(foresight_sms_sent_total)")  # type: ignore[union-attr]
            return list(sent.values()) == [float(len(fired))] and \
                list(sms.values()) == [float(len(kannel.received()))]

        wait_until(scraped, 30, "prometheus scraped the sinks' final counts", worker)
        up = prom.query("up")
        assert len(up) == 3 and set(up.values()) == {1.0}, up
        failed = prom.query("sum(foresight_sink_alerts_failed_total)")
        assert set(failed.values()) <= {0.0}, failed
        fired_prom = prom.by('sum by (rule) (foresight_audit_alerts_total{transition="fired"})',
                             "rule")
        assert {r for r, n in fired_prom.items() if n > 0} == fired_rules
        assert sum(prom.by("sum by (reason) (foresight_dead_letters_total)",
                           "reason").values()) > 0  # --invalid-rate 0.01
        time.sleep(3)  # rates over a window that saw the traffic
        firing = [a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]
                  if a["state"] == "firing"]
        assert firing == [], firing
        empty = [f"panel {q.panel_id} {q.panel_title!r} {q.ref_id}: {q.expr}"
                 for q in dashboard_queries()
                 if not prom.api("query", query=q.expr)["result"]
                 and "foresight_commit_retries_total" not in q.expr]  # by error: none here
        assert empty == [], "\n".join(empty)
        print(f"test took {time.monotonic() - started:.0f}s")
    finally:
        if prom is not None:
            prom.stop()
        stop_processes(procs)
        worker.stop()
