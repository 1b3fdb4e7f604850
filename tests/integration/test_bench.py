"""``foresight bench`` end to end on the real broker, kept short (a few thousand events)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import Settings

pytestmark = pytest.mark.integration

EVENTS = 5000


def _bench(kafka_settings: Settings, tmp_path: Path,
           *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "out.json"
    env_args = ["--broker", kafka_settings.brokers, "--home", str(tmp_path / "home")]
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "bench", *args, *env_args, "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    assert out.exists(), f"no JSON written; stderr: {proc.stderr[-3000:]}"
    return proc, json.loads(out.read_text())


def test_ingest_lines_see_exactly_n_and_the_worker_commits_n(kafka_settings: Settings,
                                                              tmp_path: Path) -> None:
    proc, doc = _bench(kafka_settings, tmp_path, "ingest", "--events", str(EVENTS),
                       "--subscribers", "1000", "--partitions", "2",
                       "--lines", "aiokafka-raw,foresight", "--latency-seconds", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_line = {r["line"]: r for r in doc["results"]}
    assert set(by_line) == {"aiokafka-raw", "foresight"}
    raw, fs = by_line["aiokafka-raw"], by_line["foresight"]
    assert raw["ok"] and raw["events"] == EVENTS and raw["rate"] > 0
    assert raw["extra"]["c_extension"] is True
    assert fs["ok"] and fs["events"] == EVENTS
    assert fs["extra"]["input_events"] == EVENTS
    assert fs["extra"]["dead_letters"] == 0 and fs["extra"]["duplicates"] == 0
    assert fs["extra"]["commits"] >= 1
    updates = fs["extra"]["state_updates"]
    # every event updates the view or the call features; the audit only when a rule moves
    assert updates["unified-view"] + updates["call-features"] == EVENTS
    assert 0 <= updates.get("audit", 0) < EVENTS
    assert fs["extra"]["vm_hwm_bytes"][0] > 10 * 2**20
    lat = doc["latency"]
    assert "error" not in lat, lat
    assert lat["count"] == lat["expected"] > 0
    assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    # the report names both lines and the machine; the run's topics are gone
    assert "aiokafka-raw" in proc.stdout and "machine:" in proc.stdout
    _assert_cleaned(kafka_settings, doc["run"])


def test_restore_small(kafka_settings: Settings, tmp_path: Path) -> None:
    proc, doc = _bench(kafka_settings, tmp_path, "restore", "--subscribers", "3000",
                       "--partitions", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert doc["written"]["records"] == 3000
    by_store = {r["backend"]: r for r in doc["results"]}
    for store in ("memory", "rocksdb"):
        r = by_store[store]
        assert r["records"] == r["keys"] == 3000, r
        assert r["state_bytes"] > 3000 * 200
    assert by_store["rocksdb"]["disk_bytes"] > 0
    _assert_cleaned(kafka_settings, doc["run"])


def _assert_cleaned(settings: Settings, tag: str) -> None:
    from confluent_kafka.admin import AdminClient

    adm = AdminClient(settings.kafka_client_config())
    assert [t for t in adm.list_topics(timeout=15).topics if tag in t] == []
