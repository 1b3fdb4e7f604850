"""The simulator's stream: deterministic, valid, ordered, broken on purpose, replayable."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.registry import INPUT_TOPICS, decode
from streams.decoding import Rejected, TimeBounds, decode_record, key_of_payload
from streams.simulator.clock import parse_start
from streams.simulator.config import SimConfig
from streams.simulator.records import MemorySink
from streams.simulator.runner import RunResult, run_replay, run_simulation
from streams.simulator.truth import (
    Inconsistency,
    InvalidInput,
    RunHeader,
    Summary,
    load_truth,
)

START = parse_start("2025-06-01T08:00:00+08:00")
MAX_BYTES = 64 * 1024


@dataclass
class Run:
    result: RunResult
    records: list[tuple[str, str | None, bytes, int]]
    truth_path: Path
    record_path: Path
    truth: list[Any]

    @property
    def bootstrap(self) -> int:
        return self.result.summary["bootstrap_records"]


def simulate(directory: Path, seed: int = 11, events: int = 12_000, **overrides: Any) -> Run:
    directory.mkdir(parents=True, exist_ok=True)
    cfg = SimConfig(**{"seed": seed, "subscribers": 600, "start_ms": START,
                       "horizon_s": 3 * 3600, "late_rate": 0.01, "duplicate_rate": 0.005,
                       "invalid_rate": 0.01, **overrides})
    sink = MemorySink()
    truth_path, record_path = directory / "truth.jsonl", directory / "records.jsonl"
    result = run_simulation(cfg, sink, speed=0, rate=0, events=events, truth_path=truth_path,
                            record_path=record_path, progress=False)
    return Run(result, sink.records, truth_path, record_path, load_truth(truth_path))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return simulate(tmp_path_factory.mktemp("sim") / "a")


def _invalid_positions(run: Run) -> set[int]:
    return {run.bootstrap + r.seq for r in run.truth if isinstance(r, InvalidInput)}


def test_same_seed_same_bytes_other_seed_other_stream(run: Run, tmp_path: Path) -> None:
    again = simulate(tmp_path / "b")
    assert again.records == run.records
    assert again.truth_path.read_bytes() == run.truth_path.read_bytes()
    assert again.record_path.read_bytes() == run.record_path.read_bytes()
    other = simulate(tmp_path / "c", seed=12, events=2000)
    assert other.records[:2000] != run.records[:2000]


def test_truth_file_starts_with_run_and_ends_with_summary(run: Run) -> None:
    header, summary = run.truth[0], run.truth[-1]
    assert isinstance(header, RunHeader) and header.seed == 11 and header.subscribers == 600
    assert header.start == datetime.fromisoformat("2025-06-01T08:00:00+08:00")
    assert isinstance(summary, Summary)
    assert summary.records == len(run.records)
    assert summary.topics == dict(Counter(r[0] for r in run.records))
    assert set(summary.topics) == set(INPUT_TOPICS)
    types = Counter(r.type for r in run.truth)
    assert summary.truth == dict(types)
    for kind in ("inconsistency", "complaint", "decoy", "churn", "degrading_cell",
                 "attenuating_line", "terminal_mismatch", "protected_contact", "invalid_input"):
        assert types[kind] > 0, kind


def test_every_valid_record_matches_its_contract_and_key(run: Run) -> None:
    bad = _invalid_positions(run)
    checked = Counter()
    for i, (topic, key, value, _ts) in enumerate(run.records):
        if i in bad:
            continue
        event = decode(topic, value)           # raises if the contract is broken
        assert key == key_of_payload(topic, event), (topic, key, value[:120])
        assert event.event_time.utcoffset() is not None
        checked[topic] += 1
    assert set(checked) == set(INPUT_TOPICS)


def test_every_invalid_record_is_rejected_for_the_recorded_reason(run: Run) -> None:
    lines = [r for r in run.truth if isinstance(r, InvalidInput)]
    assert {r.reason for r in lines} == {"not_json", "invalid", "oversize", "empty",
                                         "key_mismatch", "missing_key",
                                         "event_time_out_of_bounds"}
    assert {r.detail["breakage"] for r in lines} >= {
        "missing_field", "unknown_enum", "naive_timestamp", "key_mismatch", "null_key",
        "far_future"}
    bounds = TimeBounds.of(3600, datetime(2000, 1, 1, tzinfo=UTC))
    wall_ms = int(datetime.now(UTC).timestamp() * 1000)
    for line in lines:
        topic, key, value, _ = run.records[run.bootstrap + line.seq]
        assert (topic, key) == (line.topic, line.key)
        assert hashlib.sha256(value).hexdigest() == line.value_sha256
        rejected = decode_record(topic, key.encode() if key else None, value, MAX_BYTES)
        if not isinstance(rejected, Rejected):  # valid content: only its time is out of bounds
            rejected = bounds.check(int(rejected.event_time.timestamp() * 1000), wall_ms)
        assert isinstance(rejected, Rejected), line
        assert rejected.reason.value == line.reason, (line, rejected.error)


def test_events_are_in_event_time_order_except_recorded_late_and_duplicates(run: Run) -> None:
    summary = run.truth[-1]
    late = set(summary.out_of_order["event_ids"])
    dups = set(summary.duplicates["event_ids"])
    assert summary.out_of_order["count"] == len(late) > 0
    assert summary.duplicates["count"] == len(dups) > 0
    bad = _invalid_positions(run)
    seen: set[str] = set()
    newest = None
    exceptions = 0
    for i, (_topic, _key, value, ts) in enumerate(run.records):
        if i in bad:
            continue
        payload = orjson.loads(value)
        eid = payload["event_id"]
        when = datetime.fromisoformat(payload["event_time"])
        assert round(when.timestamp() * 1000) == ts
        repeat = eid in seen
        seen.add(eid)
        if repeat:
            assert eid in dups
            exceptions += 1
            continue
        if newest is not None and when < newest:
            assert eid in late, payload
            exceptions += 1
            continue
        newest = when
    assert exceptions > 0


def test_record_file_replays_byte_for_byte(run: Run) -> None:
    lines = run.record_path.read_bytes().splitlines()
    assert len(lines) == len(run.records)
    assert any(b'"value_b64"' in line for line in lines)   # non-UTF-8 garbage survives
    sink = MemorySink()
    counts = run_replay(run.record_path, sink, progress=False)
    assert [(t, k, v) for t, k, v, _ in sink.records] == [(t, k, v) for t, k, v, _ in run.records]
    assert counts == Counter(r[0] for r in run.records)


def test_each_rule_has_enough_injected_faults_outliving_grace(run: Run) -> None:
    by_rule: dict[str, list[Inconsistency]] = {}
    for r in run.truth:
        if isinstance(r, Inconsistency):
            by_rule.setdefault(r.rule, []).append(r)
    assert len(by_rule) == 12
    for rule, items in by_rule.items():
        injected = [r for r in items if r.injected and not r.lookalike]
        assert len(injected) >= 20, rule
        fixed = [r for r in injected if r.end is not None]
        assert fixed, f"{rule}: no injected fault was fixed"
        for r in injected:
            assert r.end is None or r.start < r.end
            assert r.end is None or r.duration_s() > r.grace_s + 2, r   # + the lateness
            assert r.detail["fault_id"] and r.must_fire is True


def test_benign_inconsistencies_are_shorter_than_grace(run: Run) -> None:
    transient = [r for r in run.truth if isinstance(r, Inconsistency) and not r.injected]
    assert len(transient) > 50
    kinds = {r.rule for r in transient}
    assert {"product-not-provisioned", "cancelled-still-provisioned",
            "bss-suspended-hss-active", "bss-active-hss-barred"} <= kinds
    end = run.truth[-1].end
    for r in transient:
        assert r.grace_s > 0, f"grace-0 rule {r.rule} must never happen by accident"
        if r.end is None:
            assert (end - r.start).total_seconds() < r.grace_s, r
        else:
            assert 0 < r.duration_s() < r.grace_s, r
