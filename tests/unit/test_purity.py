"""Domain code stays free of Kafka, Faust and Prometheus (STYLE: thin agents, pure logic)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"faust", "aiokafka", "confluent_kafka", "prometheus_client", "mode", "quixstreams"}
PURE = ["agents", "schemas", "streams/envelope.py", "streams/decoding.py", "streams/unit.py",
        "streams/timers.py", "streams/simulator"]
#: the one module of the simulator that talks to Kafka
ADAPTERS = {"streams/simulator/producer.py"}


def _files() -> list[Path]:
    out: list[Path] = []
    for entry in PURE:
        path = ROOT / entry
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [f for f in out if str(f.relative_to(ROOT)) not in ADAPTERS]


def test_domain_modules_import_no_infrastructure() -> None:
    offenders = []
    for path in _files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_the_check_covers_files() -> None:
    assert len(_files()) >= 8
