"""``foresight evaluate audit`` end to end: a worker, the simulator and the scorer on Kafka.

A short run with many deliberately broken records (zone-less timestamps among them: the
scorer once read those as local time, 8 h ahead, and reported every later alert 100 s
late). The exit status must match the targets the JSON reports, and the delays must stay
within the target although broken records are in the stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import Settings

pytestmark = pytest.mark.integration
FORESIGHT = str(Path(sys.executable).parent / "foresight")


def test_evaluate_audit_scores_a_short_run_and_exits_as_its_targets_say(
        kafka_settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.brokers,
           "FORESIGHT_HOME": str(tmp_path / "home"), "FORESIGHT_PARTITIONS": "4"}
    proc = subprocess.run(
        [FORESIGHT, "evaluate", "audit", "--subscribers", "2000", "--faults-per-rule", "6",
         "--duration", "40", "--speed", "120", "--invalid-rate", "0.01", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert proc.returncode == (0 if report["met"] else 1), proc.stdout + proc.stderr
    for line in report["missed"]:
        assert f"missed: {line}" in proc.stdout
    every = report["rules"]["ALL"]
    assert every["faults"] >= 20 and every["lookalikes"] >= 10, every
    assert "dead-lettered state records kept off the clock" in proc.stdout
    kept_off = int(proc.stdout.split(" dead-lettered state records")[0].rsplit(" ", 1)[1])
    assert kept_off >= 1, "the run must contain broken subscriber-state records"
    assert every["delay_p99_ms"] is not None
    assert every["delay_p99_ms"] <= report["lateness_ms"] + 2_000, every
    assert every["recall"] >= 0.99 and every["fired_on_lookalikes"] <= 1, every
