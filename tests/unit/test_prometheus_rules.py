"""The alerting rules on Foresight itself (docker/prometheus/) are valid, their promtool unit
tests pass, and docker/prometheus.yml loads them. Needs only the promtool binary (Debian's
``prometheus`` package: ``make ops-packages``); a missing binary fails, it never skips."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.ops_helpers import require_binary

DOCKER = Path(__file__).resolve().parents[2] / "docker"
RULES = DOCKER / "prometheus" / "rules.yml"


def _promtool() -> str:
    return require_binary("promtool", "prometheus")


@pytest.mark.parametrize("args", [
    ("check", "rules", "prometheus/rules.yml"),
    ("test", "rules", "prometheus/rules_test.yml"),
    ("check", "config", "prometheus.yml"),
], ids=["check-rules", "test-rules", "check-config"])
def test_promtool(args: tuple[str, ...]) -> None:
    run = subprocess.run([_promtool(), *args], cwd=DOCKER, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, f"promtool {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}"


def test_every_rule_has_for_severity_and_annotations() -> None:
    import yaml

    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 6
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), rule["alert"]
    tested = (DOCKER / "prometheus" / "rules_test.yml").read_text()
    for rule in rules:
        assert f"alertname: {rule['alert']}" in tested, f"{rule['alert']} has no promtool test"
