"""A real Prometheus scrapes a real worker: the PromQL an operator's dashboards and alerts
use returns the series they expect (events by topic, dead letters by reason, audit alerts
by rule, consumer lag by partition, state keys by table, latency), and the rules of
docker/prometheus/rules.yml load. Needs /usr/bin/prometheus (``make ops-packages``): a
missing binary fails the test, it never skips."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.examples import INPUT_EXAMPLES
from schemas.outputs import Alert
from schemas.registry import INPUT_TOPICS
from streams.app import default_pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import (
    free_port,
    produce,
    read_topic,
    start_worker,
    table_contents,
    total,
    wait_until,
    workload,
)
from tests.ops_helpers import dashboard_queries, require_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docker" / "prometheus" / "rules.yml"
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SID = "S00000777"  # not one of workload()'s subscribers
RULE = "product-not-provisioned"  # grace 10 minutes
REASONS = {b"not json": "not_json", b"": "empty", b'{"kind": "opened"}': "invalid"}


def _state(kind: str, sid: str, minutes: float, **fields: Any) -> tuple[str, bytes, bytes]:
    ev = dict(next(e for e in INPUT_EXAMPLES["subscriber-state"] if e["kind"] == kind))
    ev.update(subscriber_id=sid, event_id=f"{kind}-{sid}-{minutes}",
              event_time=(T0 + timedelta(minutes=minutes)).isoformat(), **fields)
    return "subscriber-state", sid.encode(), orjson.dumps(ev)


def _inconsistency() -> list[tuple[str, bytes, bytes]]:
    """A product ordered at minute 2 that the VAS platform never provisions, then reports
    of other subscribers at minute 13 moving every partition's clock past its grace (12)."""
    return [
        _state("opened", SID, 0, plan_networks=["4g"]),
        _state("activated", SID, 0.5),
        _state("activated", SID, 0.5, system="hss"),
        _state("network_registered", SID, 1, system="hss"),
        _state("product_ordered", SID, 2, product_id="VAS-MUSIC", platform="vas"),
        *[_state("balance_reported", f"S9{i:07d}", 13, system="billing") for i in range(40)],
    ]


class Prometheus:
    """A Prometheus server of the test's own, scraping its targets every second.

    ``targets`` is one port (job ``foresight``, a worker) or job name -> ports, named as
    in docker/prometheus.yml (``foresight`` the workers, ``foresight-sink`` the sinks)."""

    def __init__(self, targets: int | dict[str, list[int]], root: Path) -> None:
        self.port = free_port()
        self.jobs = {"foresight": [targets]} if isinstance(targets, int) else dict(targets)
        root.mkdir(parents=True, exist_ok=True)
        config = root / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": job, "static_configs": [
                {"targets": [f"127.0.0.1:{p}" for p in ports]}]}
                for job, ports in self.jobs.items()],
        }))
        self.log = root / "prometheus.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [require_binary("prometheus", "prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query's result: labels (sorted, without __name__) -> value."""
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        return {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")):
                float(s["value"][1]) for s in data["result"]}

    def by(self, promql: str, label: str) -> dict[str, float]:
        return {dict(k)[label]: v for k, v in self.query(promql).items()}

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text(errors='replace')[-3000:]}")
        try:
            up = self.query("up")
        except OSError:
            return False
        want = sum(len(ports) for ports in self.jobs.values())
        return len(up) == want and set(up.values()) == {1.0}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def test_prometheus_scrapes_the_worker_and_promql_answers(isolated: Settings,
                                                          tmp_path: Path) -> None:
    steps = default_pipeline(isolated)
    tables = tuple(s.name for s in steps) + system_tables(steps)
    rules = [r.id for s in steps if hasattr(s, "catalog") for r in s.catalog.rules]
    ensure_topics(isolated, tables)
    worker = start_worker(isolated, worker_id="scraped")
    prom = Prometheus(worker.port, tmp_path)
    try:
        wait_until(prom.ready, 60, "prometheus scraped the worker once", worker)
        assert prom.by('up{job="foresight"}', "job") == {"foresight": 1.0}
        # zero-initialised from the first scrape: a dashboard sees every rule before any hit
        fired0 = prom.by('foresight_audit_alerts_total{transition="fired"}', "rule")
        assert sorted(fired0) == sorted(rules) and set(fired0.values()) == {0.0}

        sent = produce(isolated, workload(1500)) + produce(isolated, _inconsistency())
        invalid = Counter(REASONS[s.value] for s in sent if s.value in REASONS)
        by_topic = Counter(s.topic for s in sent if s.value not in REASONS)
        wait_until(lambda: total(worker.metrics(), "foresight_committed_records_total")
                   >= len(sent), 90, "everything committed", worker)
        wait_until(lambda: total(worker.metrics(), "foresight_audit_alerts_total", rule=RULE,
                                 transition="fired") >= 1, 60, "the audit fired", worker)

        def scraped_everything() -> bool:
            got = prom.query("sum(foresight_committed_records_total)")
            lag = prom.query("sum(foresight_consumer_lag_records)")
            return (list(got.values()) == [float(len(sent))] and list(lag.values()) == [0.0])

        wait_until(scraped_everything, 60, "prometheus scraped the final counts, lag 0", worker)
        time.sleep(3)  # a few more scrapes: rates over a window that saw the traffic

        # event rate by topic (the dashboards' first panel)
        rates = prom.by("sum by (topic) (rate(foresight_input_events_total[1m]))", "topic")
        for topic in INPUT_TOPICS:
            assert (rates[topic] > 0) == (topic in by_topic), (topic, rates)
        assert prom.by("sum by (topic) (foresight_input_events_total)", "topic") == \
            {t: float(by_topic.get(t, 0)) for t in INPUT_TOPICS}
        # dead letters by reason
        dead = prom.by("sum by (reason) (foresight_dead_letters_total)", "reason")
        assert {r: n for r, n in dead.items() if n} == {r: float(n) for r, n in invalid.items()}
        dead_rate = prom.by("sum by (reason) (rate(foresight_dead_letters_total[1m]))", "reason")
        assert {r for r, v in dead_rate.items() if v > 0} == set(invalid), dead_rate
        # audit alerts by rule, and time to detect in event time: decided when the clock
        # reached minute 13 (the first report past the grace's end at 12 plus 2 s lateness),
        # for an inconsistency that started at minute 2
        fired = prom.by('sum by (rule) (foresight_audit_alerts_total{transition="fired"})', "rule")
        assert fired[RULE] >= 1 and sorted(fired) == sorted(rules)
        assert prom.by(f'foresight_audit_open_episodes{{rule="{RULE}"}}', "rule")[RULE] >= 1
        alerts = [Alert.model_validate_json(m.value())
                  for m in read_topic(isolated, isolated.topic("alerts"))]
        firsts = [a for a in alerts if a.rule_id == RULE and a.sequence == 1]
        ttds = [(a.decided_at - a.starts_at).total_seconds() for a in firsts]  # type: ignore[operator]
        mine = [t for a, t in zip(firsts, ttds, strict=True) if a.subscriber_id == SID]
        assert mine == [660.0]
        assert min(ttds) >= 602.0  # never sooner than the grace (10 min) plus the lateness
        ttd = prom.query(f'foresight_audit_time_to_detect_seconds_sum{{rule="{RULE}"}}')
        n = prom.query(f'foresight_audit_time_to_detect_seconds_count{{rule="{RULE}"}}')
        assert list(n.values()) == [float(len(firsts))]
        assert list(ttd.values()) == [pytest.approx(sum(ttds))]
        # consumer lag by partition: every input partition the packer owns, caught up
        lag = prom.query("foresight_consumer_lag_records")
        parts = {(dict(k)["topic"], dict(k)["partition"]) for k in lag}
        assert parts == {(t, str(p)) for t in INPUT_TOPICS for p in range(isolated.partitions)}
        assert set(lag.values()) == {0.0}
        # state keys by table: what the worker holds equals what its changelogs hold
        keys = prom.by("sum by (table) (foresight_state_keys)", "table")
        assert sorted(keys) == sorted(tables)
        for table in ("unified-view", "call-features", "audit", "progress"):
            assert keys[table] == len(table_contents(isolated, table)) > 0, table
        # per-record latency: one observation per input record, p99 of a live worker
        count = prom.query("sum(foresight_processing_latency_seconds_count)")
        assert list(count.values()) == [float(len(sent))]
        p99 = prom.query("histogram_quantile(0.99, sum by (le) "
                         "(rate(foresight_processing_latency_seconds_bucket[1m])))")
        assert 0 < next(iter(p99.values())) < 10, p99
        # the alerting rules on Foresight load and none fires for a healthy worker
        groups = {g["name"] for g in prom.api("rules")["groups"]}
        assert {"foresight-worker", "foresight-alert-delivery"} <= groups
        firing = [a for a in prom.api("alerts")["alerts"] if a["state"] == "firing"]
        assert firing == [], firing
        # every Grafana panel's query runs without error against this Prometheus, and
        # those about the worker have data (not the sink's, which this test does not run,
        # nor commit retries, labelled by error: a healthy worker has none)
        empty = []
        no_data_expected = ("foresight_sink_", "foresight_commit_retries_total")
        for q in dashboard_queries():
            data = prom.api("query", query=q.expr)  # asserts status "success"
            if not data["result"] and not any(m in q.expr for m in no_data_expected):
                empty.append(f"panel {q.panel_id} {q.panel_title!r} {q.ref_id}: {q.expr}")
        assert empty == [], "\n".join(empty)
    finally:
        prom.stop()
        worker.stop()
