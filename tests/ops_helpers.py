"""Helpers for the operations files under ``docker/`` (compose, Grafana, Alertmanager).

Shared by the unit tests (``tests/unit/test_ops_*.py``) and by integration tests that run
the dashboard's queries against a live Prometheus: :func:`dashboard_queries` returns every
panel query with Grafana's variables replaced by values Prometheus accepts.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "foresight.json"
ALERTMANAGER_CONFIG = DOCKER / "alertmanager" / "alertmanager.yml"
DATASOURCE_UID = "foresight-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
OPS_HINT = ("run 'make ops-packages' (as root; it installs the Debian packages prometheus and "
            "prometheus-alertmanager, which provide promtool and amtool)")

#: Grafana's built-in and dashboard variables, replaced by values Prometheus accepts
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${worker:regex}": ".*",
    "${worker}": ".*",
    "$worker": ".*",
}


class Query(NamedTuple):
    """One panel query: ``expr`` with Grafana's variables substituted."""

    panel_id: int
    panel_title: str
    ref_id: str
    expr: str


def stop_processes(procs: list[subprocess.Popen], timeout: float = 15.0) -> None:
    """SIGTERM every process still running (last started first), then wait for each;
    one that outlives ``timeout`` is killed."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def require_binary(name: str, package: str) -> str:
    """:func:`find_binary`, or fail the test saying how to install it (never skip)."""
    found = find_binary(name)
    if found is None:
        import pytest

        pytest.fail(f"{name} is missing: run `make ops-packages` (as root) to install "
                    f"Debian's {package} package")
    return found


def find_binary(name: str) -> str | None:
    """Path of ``name`` on PATH or in /usr/bin (where the Debian packages put it)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/bin") / name
    return str(candidate) if candidate.is_file() else None


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def iter_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def substitute(expr: str) -> str:
    """Replace Grafana's variables (longest names first) by values Prometheus accepts.

    >>> substitute('rate(x{instance=~"$worker"}[$__rate_interval])')
    'rate(x{instance=~".*"}[1m])'
    """
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def dashboard_queries(path: Path = DASHBOARD, *, raw: bool = False) -> list[Query]:
    """Every query of the dashboard at ``path``, variables substituted unless ``raw``."""
    queries = []
    for panel in iter_panels(load_dashboard(path)):
        for target in panel.get("targets", []):
            expr = target["expr"]
            queries.append(Query(panel["id"], panel.get("title", ""), target["refId"],
                                 expr if raw else substitute(expr)))
    return queries


def promtool_check_exprs(exprs: list[str], promtool: str) -> subprocess.CompletedProcess[str]:
    """Parse PromQL without a Prometheus: each expression becomes a recording rule of a
    temporary rules file that ``promtool check rules`` loads (and so parses)."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    with tempfile.TemporaryDirectory(prefix="foresight-promql-") as tmp:
        path = Path(tmp) / "dashboard-queries.rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]},
                                       allow_unicode=True), encoding="utf-8")
        return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)


# --- compose -------------------------------------------------------------------------------
def valid_cluster_id(value: str) -> bool:
    """A KRaft cluster id: 16 bytes, base64 URL-safe without padding (22 characters).

    >>> valid_cluster_id("V1UU5Z1-Sk2Q4Z3VWpb7MQ"), valid_cluster_id("foresight-compose-cluster-1")
    (True, False)
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", value):
        return False
    return len(base64.urlsafe_b64decode(value + "==")) == 16


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """``${VAR:-default}`` -> default, ``${VAR}`` -> '' (the environment is ignored, so the
    check does not depend on who runs it)."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def load_compose(profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    """The compose file as ``docker compose config`` would see it, in pure Python: YAML
    (merge keys resolved by the loader), ``${VAR:-default}`` interpolated with defaults,
    services of inactive profiles removed."""
    data = _interpolate(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")))
    data["services"] = {name: svc for name, svc in data["services"].items()
                        if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}
    return data


def docker_compose_available() -> tuple[bool, str]:
    """(True, version) when ``docker compose`` works here, else (False, why not)."""
    docker = shutil.which("docker")
    if docker is None:
        return False, "no docker CLI on PATH"
    proc = subprocess.run([docker, "compose", "version", "--short"], capture_output=True,
                          text=True, timeout=30, check=False)
    if proc.returncode != 0:
        return False, f"docker CLI without the compose plugin ({proc.stderr.strip()[:120]})"
    return True, proc.stdout.strip()


def docker_compose_config(profiles: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    args = ["docker", "compose", "-f", str(COMPOSE_FILE)]
    for profile in profiles:
        args += ["--profile", profile]
    return subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT)
