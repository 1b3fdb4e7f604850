"""A throw-away Prometheus for ``foresight demo`` (when installed): scrapes the demo's
worker and sink, loads Foresight's own alerting rules and sends to the demo's Alertmanager.

The Debian package ``prometheus`` provides the binary; without it the demo says how to get
it and runs without. Everything listens on 127.0.0.1 and lives in the demo's run folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from sinks.alertmanager_local import start_and_wait

PROM_BIN = "/usr/bin/prometheus"
#: Foresight's alerting rules on itself, when the demo runs from a checkout
RULES = Path(__file__).resolve().parent.parent / "docker" / "prometheus" / "rules.yml"
HOW_TO_GET_IT = ("demo: Prometheus not found at /usr/bin/prometheus; `make ops-packages` (as "
                 "root) or `sudo apt-get install prometheus` adds it, and the demo then shows "
                 "its metrics there. Going on without it.")


def demo_config(worker_port: int, sink_port: int | None, alertmanager: str | None,
                rules: Path | None) -> dict:
    """The scrape configuration (job names as the rules and the dashboard expect).

    >>> c = demo_config(6066, 6070, "http://127.0.0.1:9093", None)
    >>> [j["job_name"] for j in c["scrape_configs"]], c["alerting"]["alertmanagers"][0]
    (['foresight', 'foresight-sink'], {'static_configs': [{'targets': ['127.0.0.1:9093']}]})
    """
    jobs = [{"job_name": "foresight",
             "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}]
    if sink_port:
        jobs.append({"job_name": "foresight-sink",
                     "static_configs": [{"targets": [f"127.0.0.1:{sink_port}"]}]})
    config: dict = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
                    "scrape_configs": jobs}
    if rules is not None:
        config["rule_files"] = [str(rules)]
    if alertmanager:
        hostport = alertmanager.split("://", 1)[-1].rstrip("/")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [hostport]}]}]}
    return config


def start_prometheus(run_dir: Path, port: int, worker_port: int, sink_port: int | None,
                     alertmanager: str | None) -> tuple[list[subprocess.Popen], str | None]:
    """Start Prometheus on 127.0.0.1:``port``; ([], None) when it is missing or fails."""
    if not os.access(PROM_BIN, os.X_OK):
        print(HOW_TO_GET_IT, file=sys.stderr)
        return [], None
    config = run_dir / "prometheus.yml"
    rules = RULES if RULES.exists() else None
    config.write_text(yaml.safe_dump(demo_config(worker_port, sink_port, alertmanager, rules)))
    url = f"http://127.0.0.1:{port}"
    prom = start_and_wait("Prometheus", [PROM_BIN, f"--config.file={config}",
                                         f"--storage.tsdb.path={run_dir / 'prometheus'}",
                                         f"--web.listen-address=127.0.0.1:{port}"],
                          url, run_dir / "prometheus.log", timeout_s=30)
    if prom is None:
        return [], None
    return [prom], url
