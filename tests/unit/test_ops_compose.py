"""docker/compose.yaml, docker/Dockerfile and .dockerignore, checked without a Docker engine.

``docker compose config`` validates the file against the Compose specification when the
docker CLI with its compose plugin is here; a pure-Python structural check of the same
rules always runs (the CI machine has no docker CLI). Each test prints which ran.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from streams.cli import build_parser
from tests.ops_helpers import (
    COMPOSE_FILE,
    DOCKER,
    ROOT,
    docker_compose_available,
    docker_compose_config,
    load_compose,
    valid_cluster_id,
)

KAFKA = ("kafka1", "kafka2", "kafka3")
WORKERS = ("worker1", "worker2")
FORESIGHT = ("topics", *WORKERS, "sink-alertmanager", "simulator")
PUBLISHED = {"prometheus": 9090, "alertmanager": 9093, "grafana": 3000, "screen": 6070}
HEALTHCHECKED = (*KAFKA, *WORKERS, "prometheus", "alertmanager", "grafana")
#: mounted paths another part of issue 18 adds (Prometheus alerting rules); checked once present
PENDING_PATHS = {"docker/prometheus"}
#: subcommands another part of issue 18 adds, with the module that registers them
PENDING_COMMANDS = {"sink": ROOT / "sinks" / "alertmanager.py"}


# --- normalising: raw YAML and `docker compose config --format json` differ in shape ------
def _depends(svc: dict[str, Any]) -> dict[str, str]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return {name: "service_started" for name in dep}
    return {name: (cond or {}).get("condition", "service_started") for name, cond in dep.items()}


def _ports(svc: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"])))
        else:
            parts = str(port).split(":")
            out.append((parts[0] if len(parts) == 3 else "", int(parts[-2])))
    return out


def _mounts(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) with bind sources relative to the repo root."""
    out = []
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):
            kind, source, target = vol["type"], vol["source"], vol["target"]
        else:
            source, target = str(vol).split(":")[:2]
            kind = "bind" if source.startswith((".", "/")) else "volume"
        if kind == "bind":
            path = Path(source) if Path(source).is_absolute() else (DOCKER / source)
            source = str(PurePosixPath(path.resolve().relative_to(ROOT)))
        out.append((kind, source, target))
    return out


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def compose_problems(config: dict[str, Any], profiles: tuple[str, ...]) -> list[str]:
    """Everything wrong with a (raw or normalised) compose config, as readable lines."""
    problems: list[str] = []
    services = config.get("services", {})
    expected = {*KAFKA, "topics", *WORKERS, "sink-alertmanager", *PUBLISHED}
    if "simulator" in profiles:
        expected.add("simulator")
    if missing := expected - set(services):
        problems.append(f"missing services: {sorted(missing)}")
    if "simulator" not in profiles and "simulator" in services:
        problems.append("simulator runs without --profile simulator")

    # Kafka: one valid cluster id, distinct node ids, every node a voter, health-checked
    ids, cluster_ids = set(), set()
    for name in KAFKA:
        svc = services.get(name, {})
        env = _env(svc)
        if svc.get("image") != "apache/kafka:4.2.0":
            problems.append(f"{name}: image {svc.get('image')!r}, want apache/kafka:4.2.0")
        cluster_ids.add(env.get("CLUSTER_ID", ""))
        ids.add(env.get("KAFKA_NODE_ID"))
        voter = f"{env.get('KAFKA_NODE_ID')}@{name}:9093"
        if voter not in env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").split(","):
            problems.append(f"{name}: {voter} is not in KAFKA_CONTROLLER_QUORUM_VOTERS")
        if env.get("KAFKA_ADVERTISED_LISTENERS") != f"PLAINTEXT://{name}:9092":
            problems.append(f"{name}: advertises {env.get('KAFKA_ADVERTISED_LISTENERS')!r}")
        if not any(t == "/var/lib/kafka/data" for _, _, t in _mounts(svc)):
            problems.append(f"{name}: no volume on /var/lib/kafka/data (KAFKA_LOG_DIRS)")
    if len(cluster_ids) != 1 or not all(valid_cluster_id(c) for c in cluster_ids):
        problems.append(f"CLUSTER_ID must be one 22-character base64url id: {sorted(cluster_ids)}")
    if len(ids) != len(KAFKA):
        problems.append(f"KAFKA_NODE_ID values are not distinct: {sorted(map(str, ids))}")

    for name in HEALTHCHECKED:
        check = services.get(name, {}).get("healthcheck") or {}
        if check.get("disable") or not check.get("test"):
            problems.append(f"{name}: no healthcheck")
    for name in WORKERS:
        test = " ".join(map(str, services.get(name, {}).get("healthcheck", {}).get("test", [])))
        if "/health" not in test:
            problems.append(f"{name}: healthcheck does not GET /health ({test!r})")

    # start order
    for name, svc in services.items():
        for dep, cond in _depends(svc).items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
            elif cond == "service_healthy" and not services[dep].get("healthcheck"):
                problems.append(f"{name}: waits for {dep} to be healthy, which has no healthcheck")
    topics_deps = _depends(services.get("topics", {}))
    if topics_deps != dict.fromkeys(KAFKA, "service_healthy"):
        problems.append(f"topics: must wait for every broker's health: {topics_deps}")
    for name in (*WORKERS, "sink-alertmanager", "simulator"):
        if name in services and _depends(services[name]).get("topics") != "service_completed_successfully":
            problems.append(f"{name}: must wait for topics to complete successfully")
    if services.get("topics", {}).get("restart", "no") != "no":
        problems.append("topics: a one-shot service must not restart")

    # Foresight services: the image built from docker/Dockerfile, commands and settings
    worker_ids = set()
    for name in FORESIGHT:
        svc = services.get(name)
        if svc is None:
            continue
        build = svc.get("build") or {}
        context = Path(build.get("context", "")) if isinstance(build, dict) else Path(build)
        context = context if context.is_absolute() else (DOCKER / context)
        if context.resolve() != ROOT or "docker/Dockerfile" not in str(build.get("dockerfile", "")):
            problems.append(f"{name}: build must be the repo root with docker/Dockerfile: {build}")
        env = _env(svc)
        if env.get("KAFKA_BOOTSTRAP_SERVERS") != "kafka1:9092,kafka2:9092,kafka3:9092":
            problems.append(f"{name}: KAFKA_BOOTSTRAP_SERVERS={env.get('KAFKA_BOOTSTRAP_SERVERS')!r}")
        problems.extend(f"{name}: {p}" for p in _command_problems(_command(svc)))
    for name in WORKERS:
        svc = services.get(name, {})
        worker_ids.add(_env(svc).get("FORESIGHT_WORKER_ID"))
        if _command(svc) != ["worker"]:
            problems.append(f"{name}: command {_command(svc)}")
        if not any(k == "volume" and t == "/data" for k, _, t in _mounts(svc)):
            problems.append(f"{name}: no volume on /data (its RocksDB state)")
    if len(worker_ids) != len(WORKERS) or None in worker_ids:
        problems.append(f"workers need distinct FORESIGHT_WORKER_ID values: {worker_ids}")
    if _command(services.get("topics", {}))[:2] != ["topics", "create"]:
        problems.append("topics: command must be 'topics create'")
    sink = services.get("sink-alertmanager", {})
    if _command(sink) != ["sink", "alertmanager"]:
        problems.append(f"sink-alertmanager: command {_command(sink)}")
    if _env(sink).get("FORESIGHT_ALERTMANAGER_URL") != "http://alertmanager:9093":
        problems.append("sink-alertmanager: FORESIGHT_ALERTMANAGER_URL must be http://alertmanager:9093")
    if "simulator" in services and _command(services["simulator"])[:1] != ["simulate"]:
        problems.append("simulator: command must be 'simulate ...'")

    # exposure: loopback only, and only the three UIs
    for name, svc in services.items():
        for host, port in _ports(svc):
            if host != "127.0.0.1":
                problems.append(f"{name}: port {port} published on {host or 'every interface'}")
            if PUBLISHED.get(name) != port:
                problems.append(f"{name}: publishes {port}; only {PUBLISHED} are published")

    # configuration mounts
    want = {
        "prometheus": {("docker/prometheus.yml", "/etc/prometheus/prometheus.yml"),
                       ("docker/prometheus", "/etc/prometheus/prometheus")},
        "alertmanager": {("docker/alertmanager/alertmanager.yml", "/etc/alertmanager/alertmanager.yml")},
        "grafana": {("docker/grafana/provisioning", "/etc/grafana/provisioning"),
                    ("docker/grafana/dashboards", "/var/lib/grafana/dashboards")},
    }
    for name, mounts in want.items():
        have = {(s, t) for k, s, t in _mounts(services.get(name, {})) if k == "bind"}
        if missing := mounts - have:
            problems.append(f"{name}: missing mounts {sorted(missing)}")
    declared = set(config.get("volumes") or {})
    for name, svc in services.items():
        for kind, source, _target in _mounts(svc):
            if kind == "bind" and not (ROOT / source).exists() and source not in PENDING_PATHS:
                problems.append(f"{name}: mounts {source}, which does not exist")
            if kind == "volume" and source not in declared and \
                    not any(source.endswith(f"_{v}") for v in declared):
                problems.append(f"{name}: named volume {source} is not declared")
    return problems


def _command_problems(argv: list[str]) -> list[str]:
    """The command must parse with the ``foresight`` CLI of this checkout."""
    if not argv:
        return ["no command"]
    pending = PENDING_COMMANDS.get(argv[0])
    if pending is not None and not pending.exists():
        return []  # registered by work not merged yet; checked once its module exists
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return [f"'foresight {' '.join(argv)}' does not parse with streams/cli.py"]
    return []


@pytest.mark.parametrize("profiles", [(), ("simulator",)], ids=["default", "simulator"])
def test_compose_config(profiles: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    problems = compose_problems(load_compose(profiles), profiles)
    assert not problems, "docker/compose.yaml (pure-Python check):\n" + "\n".join(problems)
    ran = ["pure-Python structural check"]
    available, why = docker_compose_available()
    if available:
        proc = docker_compose_config(profiles)
        assert proc.returncode == 0, f"docker compose config failed:\n{proc.stderr}"
        normalised = json.loads(proc.stdout)
        problems = compose_problems(normalised, profiles)
        assert not problems, "docker compose config output:\n" + "\n".join(problems)
        ran.insert(0, f"docker compose config (compose {why})")
    else:
        ran.append(f"docker compose not run: {why}")
    with capsys.disabled():
        print(f"\n[compose {'+'.join(profiles) or 'default'}] validated by: {'; '.join(ran)}")


def test_compose_check_catches_mistakes() -> None:
    """The structural check is not vacuous: break the file in typical ways."""
    import copy

    good = load_compose(("simulator",))
    assert compose_problems(good, ("simulator",)) == []
    cases = {
        "CLUSTER_ID": lambda c: c["services"]["kafka2"]["environment"].update(
            CLUSTER_ID="foresight-compose-cluster-1"),
        "no healthcheck": lambda c: c["services"]["kafka1"].pop("healthcheck"),
        "complete successfully": lambda c: c["services"]["worker1"].update(depends_on=["topics"]),
        "every interface": lambda c: c["services"]["grafana"].update(ports=["3000:3000"]),
        "only": lambda c: c["services"]["worker1"].update(ports=["127.0.0.1:6066:6066"]),
        "does not parse": lambda c: c["services"]["topics"].update(command=["topics", "ensure-all"]),
        "missing services": lambda c: c["services"].pop("sink-alertmanager"),
        "missing mounts": lambda c: c["services"]["prometheus"].update(volumes=[]),
    }
    for needle, breaks in cases.items():
        broken = copy.deepcopy(good)
        breaks(broken)
        found = compose_problems(broken, ("simulator",))
        assert any(needle in p for p in found), (needle, found)


# --- Dockerfile and .dockerignore ------------------------------------------------------------
def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    out = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = str(PurePosixPath(line.lstrip("!").strip("/")))
        rx = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                rx += ".*"
                i += 2
            elif pattern[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                rx += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                rx += pattern[i:end + 1]
                i = end + 1
            else:
                rx += re.escape(pattern[i])
                i += 1
        out.append((negate, re.compile(rx + r"\Z")))
    return out


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negate, rx in _dockerignore_patterns():
        if any(rx.match(c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    for path in (".venv/bin/python", ".git/HEAD", ".foresight/kafka/libs/kafka_2.13-4.2.0.jar",
                 ".foresight/data/meta.properties", "docs/bench-ingest.json", "tests/conftest.py",
                 "streams/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v/x", ".ruff_cache/x",
                 ".hypothesis/examples/x", "foresight.egg-info/PKG-INFO", "truth.jsonl",
                 "streams/.foresight/x", "build/lib/x.py", "dist/foresight.whl"):
        assert dockerignored(path), f"{path} would be sent to the Docker build context"
    tracked = [p for p in ROOT.joinpath("streams").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in ("pyproject.toml", "README.md", "streams/cli.py", "streams/kafka-pom.xml",
                 "agents/rules/audit.yaml", "schemas/__init__.py", "sinks/__init__.py",
                 *(str(p.relative_to(ROOT)) for p in tracked)):
        assert not dockerignored(path), f"{path} is needed by the image but .dockerignore drops it"


def test_dockerfile() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in lines
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert froms and all(ln.split()[1] == "${PYTHON_IMAGE}" for ln in froms), froms
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as non-root"
    assert lines[-2:] == ['ENTRYPOINT ["foresight"]', 'CMD ["worker"]']
    for ln in lines:
        if ln.startswith("COPY ") and "--from" not in ln:
            *sources, _dest = ln.split()[1:]
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: no such path in the repo"
                assert not dockerignored(src), f"COPY {src}: excluded by .dockerignore"
    assert "foresight" in text and "useradd" in text
    assert COMPOSE_FILE.exists()
