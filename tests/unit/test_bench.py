"""The benchmark harness's pure parts: dataset, statistics, table, parsing (no broker)."""

from __future__ import annotations

import collections
import os
import statistics
import subprocess
import sys
import time

import orjson
import pytest

from schemas.registry import CALL_EVENTS, SUBSCRIBER_STATE, decode
from streams.bench import dataset
from streams.bench.ingest import IngestOptions, resolve_lines
from streams.bench.profile import parse_collapsed, summarize_collapsed
from streams.bench.report import (
    LineResult,
    Summary,
    format_latency,
    format_table,
    percentile,
    ratio,
    summarize,
)
from streams.bench.worker import by_label, parse_metrics, proc_cpu_seconds, total
from streams.decoding import Rejected, decode_record


# --- dataset ----------------------------------------------------------------------------------
def test_dataset_is_deterministic() -> None:
    a = list(dataset.events(3000, 500, seed=7))
    b = list(dataset.events(3000, 500, seed=7))
    assert a == b
    assert a != list(dataset.events(3000, 500, seed=8))


def test_every_event_validates_and_is_keyed_by_its_subscriber() -> None:
    records = list(dataset.events(6000, 1000))
    for topic, key, value in records:
        event = decode(topic, value)  # raises on any schema violation
        assert key == event.subscriber_id.encode()
        assert type(decode_record(topic, key, value, 64 * 1024)) is not Rejected


def test_dataset_shape_half_state_half_calls_realistic_sizes() -> None:
    records = list(dataset.events(10_000, 100_000))
    topics = collections.Counter(t for t, _, _ in records)
    assert topics == {SUBSCRIBER_STATE: 5000, CALL_EVENTS: 5000}
    sizes = [len(v) for _, _, v in records]
    assert 200 <= statistics.mean(sizes) <= 270
    kinds = collections.Counter(orjson.loads(v)["kind"] for t, _, v in records if t == SUBSCRIBER_STATE)
    assert {"charged", "topped_up", "product_ordered", "product_provisioned", "suspended",
            "resumed", "profile_changed"} <= set(kinds)
    calls = collections.Counter(orjson.loads(v)["kind"] for t, _, v in records if t == CALL_EVENTS)
    assert calls["network_call"] > 8 * calls["hotline_call"] > 0


def test_heavy_users_get_a_fifth_of_the_traffic() -> None:
    keys = [k for _, k, _ in dataset.events(20_000, 10_000)]
    heavy = sum(1 for k in keys if int(k[1:]) < 100)
    assert 0.18 < heavy / len(keys) < 0.25


@pytest.mark.parametrize("kind", [k for k, _ in dataset.STATE_KINDS] + ["opened"])
def test_every_state_kind_validates(kind: str) -> None:
    import random

    ev = dataset.state_event(random.Random(1), 5, 42, kind)
    assert decode(SUBSCRIBER_STATE, orjson.dumps(ev)).kind == kind


def test_invalid_event_becomes_a_not_json_dead_letter() -> None:
    rejected = decode_record(SUBSCRIBER_STATE, b"s000000001", dataset.invalid_event(3), 65536)
    assert type(rejected) is Rejected
    assert rejected.reason.value == "not_json"


# --- statistics and the table ------------------------------------------------------------------
def test_percentile_interpolates_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0  # unsorted input
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_ratio() -> None:
    assert ratio(30_000.0, 60_000.0) == 0.5
    assert ratio(None, 1.0) is None
    assert ratio(1.0, 0.0) is None


def _run(line: str, rate: float, ok: bool = True, rss: int | None = 100 * 2**20) -> LineResult:
    return LineResult(line=line, ok=ok, events=1000 if ok else 0, seconds=1000 / rate if ok else 0,
                      rate=rate if ok else 0.0, rss_bytes=rss, error=None if ok else f"{line}: boom")


def test_summarize_takes_median_and_range_of_good_runs_only() -> None:
    runs = [_run("a", 100.0), _run("a", 300.0), _run("a", 200.0), _run("a", 0, ok=False)]
    (s,) = summarize(runs)
    assert (s.runs, s.ok_runs, s.rate, s.rate_min, s.rate_max) == (4, 3, 200.0, 100.0, 300.0)
    assert s.errors == ["a: boom"]


def test_table_ratios_against_both_baselines() -> None:
    runs = [_run("aiokafka-raw", 400_000.0), _run("quix-state", 40_000.0),
            _run("foresight", 80_000.0), _run("faust-table", 2_000.0)]
    table = format_table(summarize(runs))
    rows = {r.split()[0]: r.split() for r in table.splitlines()[1:]}
    assert rows["foresight"][3:6] == ["80,000", "0.200x", "2.00x"]
    assert rows["faust-table"][3:6] == ["2,000", "0.005x", "0.050x"]
    assert rows["aiokafka-raw"][4] == "1.00x"
    assert rows["foresight"][6] == "100"


def test_table_reports_a_failed_line_with_its_reason_and_keeps_the_others() -> None:
    runs = [_run("aiokafka-raw", 400_000.0), _run("faust-table", 0, ok=False)]
    table = format_table(summarize(runs))
    assert "faust-table  FAILED: faust-table: boom" in table
    assert "400,000" in table


def test_table_without_baselines_shows_dashes_and_spread_with_repeats() -> None:
    runs = [_run("foresight", 10.0), _run("foresight", 30.0), _run("foresight", 20.0)]
    row = format_table(summarize(runs)).splitlines()[1]
    assert "20 (10-30)" in row
    assert row.split()[-3:] == ["-", "-", "100"]


def test_format_latency_variants() -> None:
    assert format_latency(None) == "latency: not measured"
    assert format_latency({"error": "x"}) == "latency: FAILED: x"
    assert "p99 80 ms" in format_latency({"count": 1, "expected": 1, "rate": 10.0, "p50_ms": 1.0,
                                          "p99_ms": 80.2, "max_ms": 90.0})


def test_summary_dataclass_round_trip() -> None:
    s = Summary("x", 1, 1, 10, 1.0, 10.0, 10.0, 10.0, None, [])
    assert s.__dict__["line"] == "x"


# --- options, metrics parsing, profiles --------------------------------------------------------
def test_resolve_lines() -> None:
    assert resolve_lines("all", 1) == ("aiokafka-raw", "faust-passthrough", "faust-table",
                                       "quix-state", "foresight-ingest", "foresight")
    assert resolve_lines("foresight-x2", 1) == ("foresight-x2",)
    with pytest.raises(ValueError, match="unknown lines"):
        resolve_lines("kafka-streams", 1)


def test_default_timeout_scales_with_events() -> None:
    assert IngestOptions(events=200_000).timeout == 520.0
    assert IngestOptions(events=10, line_timeout=5.0).timeout == 5.0


def test_parse_metrics_sums_labels() -> None:
    text = (
        "# HELP foresight_packer_records_total Input records packed into envelopes.\n"
        "# TYPE foresight_packer_records_total counter\n"
        'foresight_packer_records_total{topic="subscriber-state"} 100.0\n'
        'foresight_packer_records_total{topic="call-events"} 50.0\n'
        "foresight_committed_records_total 150.0\n"
        'foresight_commit_duration_seconds_bucket{le="0.005"} 3.0\n'
    )
    m = parse_metrics(text)
    assert total(m, "foresight_packer_records_total") == 150.0
    assert total(m, "foresight_committed_records_total") == 150.0
    assert by_label(m, "foresight_packer_records_total") == {"subscriber-state": 100.0,
                                                             "call-events": 50.0}


def test_profile_summary_by_thread_and_function() -> None:
    raw = ("thread (11): MainThread;<module> (foresight:8);feed (streams/runner.py:50);"
           "validate_json (pydantic/type_adapter.py:9) 30\n"
           "thread (12): foresight-packer;_bootstrap (threading.py:1);run (streams/packer.py:90) 10\n")
    assert parse_collapsed(raw)[1] == ("foresight-packer", ["_bootstrap (threading.py)",
                                                             "run (packer.py)"], 10)
    text = summarize_collapsed(raw)
    assert "40 samples" in text
    assert "75.0%       30  MainThread" in text
    assert "validate_json (type_adapter.py)" in text
    assert summarize_collapsed("").startswith("no samples")


def test_restore_null_backend_keeps_nothing_but_the_offset() -> None:
    from streams.bench.restore import NullBackend

    b = NullBackend()
    b.write([("k", b"v")], None)
    b.write((), 41)
    assert (len(b), b.offset) == (0, 41)


def test_restore_views_are_real_unified_views() -> None:
    from streams.bench.restore import build_views

    views = list(build_views(50))
    assert len(views) == 50 and len({k for k, _ in views}) == 50
    view = orjson.loads(views[0][1])
    assert view["subscriber_id"] == views[0][0].decode()
    assert {"bss", "hss"} & set(view["systems"])
    assert 300 < statistics.mean(len(v) for _, v in views) < 3000


def test_latency_sweep_table_shows_failures_and_backlogs() -> None:
    from streams.bench.latency import format_sweep

    ok = {"rate": 8000, "count": 1599, "expected": 1599, "p50_ms": 104.6, "p99_ms": 188.1,
          "max_ms": 235.4, "p50_first_quarter_ms": 101.2, "p50_last_quarter_ms": 112.4,
          "avg_envelope_events": 26.8, "commits": 313}
    lost = {**ok, "rate": 13500, "count": 2690, "expected": 2699,
            "error": "received 2690 dead letters, expected 2699"}
    table = format_sweep([ok, lost, {"rate": 20000, "error": "worker exited with code 1"}], 20)
    rows = table.splitlines()
    assert rows[0].startswith("end-to-end latency") and "20 s per run" in rows[0]
    assert rows[3] == "| 8,000 | 1599/1599 | 105 | 188 | 235 | 101 → 112 | 26.8 | 313 |"
    assert rows[4].endswith("received 2690 dead letters, expected 2699")
    assert rows[5].startswith("| 20,000 | FAILED: worker exited with code 1")


# --- CPU accounting -----------------------------------------------------------------------------
def test_cpu_seconds_include_the_process_children() -> None:
    """The worker's CPU counts its packer child: a busy child shows in its parent's figure."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        mine = proc_cpu_seconds(child.pid)
        before = proc_cpu_seconds(os.getpid())
        time.sleep(0.6)
        after = proc_cpu_seconds(os.getpid())
        assert after - before >= 0.2, (before, after)   # the spinning child, counted for us
        assert proc_cpu_seconds(child.pid) > mine
    finally:
        child.kill()
        child.wait()
    assert proc_cpu_seconds(2**22 + 12345) == 0.0      # a process that is gone: nothing


def test_run_cleanup_refuses_to_match_every_topic() -> None:
    """An empty prefix or app id would match every topic and group on the cluster."""
    from streams.demo import delete_run
    from streams.settings import Settings

    with pytest.raises(ValueError, match="own topic prefix"):
        delete_run(Settings(topic_prefix="", app_id="demo-1"))


def test_soak_slopes_are_taken_over_the_second_half() -> None:
    from streams.bench.faults import format_soak, soak_result

    # memory grows during warm-up, then stays flat; lag stays flat
    samples = [{"t": t * 60.0, "rss_mb": min(t, 5) * 100.0, "lag": 50, "produced": t * 1000,
                "committed": t * 1000 - 50, "status": "ok"} for t in range(1, 21)]
    r = soak_result(samples, 20, 1000, 0, [])
    assert r["rss_slope_mb_per_min"] == 0.0 and r["lag_slope_per_min"] == 0.0
    assert r["rss_mb_first"] == 100.0 and r["rss_mb_last"] == 500.0
    assert "ERROR lines in the worker log: 0" in format_soak(r)


def test_fault_summary_reports_p50_and_max() -> None:
    from streams.bench.faults import summarize

    out = [{"outage_s": 5, "recovered_s": 1.0}, {"outage_s": 60, "recovered_s": 3.0},
           {"outage_s": 300, "error": "x"}]
    downs = [{"exit_s": 1.2, "takeover_s": 2.5}, {"exit_s": 1.4, "takeover_s": 3.5}]
    text = "\n".join(summarize(out, downs))
    assert "p50 2.0s, max 3.0s over 2 outages (5s, 60s)" in text
    assert "SIGTERM to exit under load: p50 1.3s, max 1.4s" in text
    assert "takeover by the other worker: p50 3.0s, max 3.5s" in text
