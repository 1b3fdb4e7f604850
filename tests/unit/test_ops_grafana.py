"""The Grafana provisioning and the Alertmanager configuration under docker/, checked offline.

PromQL is parsed by ``promtool check rules`` (each panel query becomes a recording rule of a
temporary file) and the Alertmanager file by ``amtool check-config``: both come with the
Debian packages that ``make ops-packages`` installs. A missing tool fails the test with that
hint; nothing is skipped.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics
from tests.ops_helpers import (
    ALERTMANAGER_CONFIG,
    DASHBOARD,
    DATASOURCE,
    DATASOURCE_UID,
    DOCKER,
    OPS_HINT,
    dashboard_queries,
    find_binary,
    iter_panels,
    load_compose,
    load_dashboard,
    promtool_check_exprs,
)

#: metrics other parts of issue 18 add (the Alertmanager sink, per-partition consumer lag)
NEW_METRICS = {
    "foresight_sink_alerts_sent_total", "foresight_sink_alerts_failed_total",
    "foresight_sink_retries_total", "foresight_sink_queue_depth",
    "foresight_sink_last_success_timestamp_seconds", "foresight_consumer_lag_records",
}
PROMETHEUS_METRICS = {"up"}


def _require(name: str) -> str:
    path = find_binary(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {OPS_HINT}")
    return path


def test_dashboard_shape() -> None:
    dash = load_dashboard()
    assert dash["schemaVersion"] >= 39
    assert dash["uid"] and dash["title"]
    panels = iter_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in panels:
        where = f"panel {panel['id']} {panel.get('title')!r}"
        assert panel.get("datasource") == DATASOURCE, where
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, where
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"{where} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, f"{where} target {target['refId']}"
            assert target.get("expr", "").strip(), f"{where} target {target['refId']}"
    for var in dash.get("templating", {}).get("list", []):
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]
    titles = " ".join(p.get("title", "") for p in panels).lower()
    for topic in ("input events", "consumer lag", "latency", "dead letters", "audit firings",
                  "open audit episodes", "alert deliveries", "stalled", "targets up"):
        assert topic in titles, f"no panel about {topic}"


def test_dashboard_queries_substitute_grafana_variables() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    for q in queries:
        assert "$" not in q.expr, q
    assert any("$__rate_interval" in q.expr for q in dashboard_queries(raw=True))


def test_dashboard_metrics_exist() -> None:
    """Every metric a panel reads is one Foresight exports (or a new one of issue 18)."""
    registry = CollectorRegistry()
    Metrics(registry, tables=("t",), rules=("r",))
    known = set(PROMETHEUS_METRICS | NEW_METRICS)
    for family in registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        known |= {family.name + sfx for sfx in suffixes.get(family.type, ("",))}
    for q in dashboard_queries():
        for name in re.findall(r"\b(?:foresight_\w+|up)\b(?=\s*[{\[)]|\s*$)", q.expr):
            assert name in known, f"panel {q.panel_id} {q.panel_title!r}: unknown metric {name}"


def test_dashboard_promql_parses() -> None:
    promtool = _require("promtool")
    queries = dashboard_queries()
    proc = promtool_check_exprs([q.expr for q in queries], promtool)
    assert proc.returncode == 0, f"promtool check rules:\n{proc.stdout}\n{proc.stderr}"
    assert f"SUCCESS: {len(queries)} rules found" in proc.stdout, proc.stdout


def test_promtool_check_rejects_bad_promql() -> None:
    promtool = _require("promtool")
    proc = promtool_check_exprs(['sum by (topic (rate(foresight_input_events_total[1m]))'], promtool)
    assert proc.returncode != 0


def test_grafana_provisioning_matches_compose() -> None:
    ds = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/foresight.yml").read_text())
    (provider,) = providers["providers"]
    grafana = load_compose()["services"]["grafana"]
    targets = {v.split(":")[1] for v in grafana["volumes"]}
    assert provider["options"]["path"] in targets
    assert DASHBOARD.parent.name == "dashboards"


def test_alertmanager_config_checks() -> None:
    amtool = _require("amtool")
    proc = subprocess.run([amtool, "check-config", str(ALERTMANAGER_CONFIG)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(("labels", "receivers"), [
    (["alertname=BssActiveHssBarred", "rule=bss-active-hss-barred", "severity=critical"], "sms,default"),
    (["alertname=BssActiveHssBarred", "rule=bss-active-hss-barred", "severity=warning"], "default"),
    (["alertname=ForesightWorkerDown", "team=platform"], "default"),
])
def test_alertmanager_routes(labels: list[str], receivers: str) -> None:
    amtool = _require("amtool")
    proc = subprocess.run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                           *labels], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == receivers


def test_alertmanager_config_content() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    assert config["route"]["group_by"] == ["alertname", "rule", "team"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    (hook,) = receivers["sms"]["webhook_configs"]
    assert hook["url"] == "http://sms-webhook:9097/alertmanager"
    for route in config["route"].get("routes", []):
        assert "match" not in route and "match_re" not in route, "use matchers:"
