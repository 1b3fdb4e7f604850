"""The command line, pacing and failure paths of ``simulate`` / ``replay`` (no broker)."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from streams.cli import build_parser, main
from streams.simulator.clock import parse_start
from streams.simulator.config import SimConfig
from streams.simulator.errors import ReplayFileError, SimulatorInputError
from streams.simulator.pacing import Pacer
from streams.simulator.records import MemorySink, read_records
from streams.simulator.runner import resolve_speed, run_simulation
from streams.simulator.truth import load_truth

START = parse_start("2025-06-01T08:00:00+08:00")


class FakeClock:
    """Wall clock for pacing tests: sleeping advances it instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_help_names_every_flag_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())   # undo argparse's line wrapping
    for needle in ("--seed", "--subscribers", "default 10000", "--speed", "default 60",
                   "--rate", "--duration", "--events", "--record", "--truth",
                   "--invalid-rate", "default 0.001", "--faults-per-rule", "--no-bootstrap",
                   "--topic-prefix", "--broker"):
        assert needle in text, needle
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "same keys, same value bytes" in text and "--rate" in text


def test_simulate_without_kafka_writes_truth_and_records(tmp_path: Path) -> None:
    truth, records = tmp_path / "t.jsonl", tmp_path / "r.jsonl"
    code = main(["simulate", "--no-kafka", "--quiet", "--subscribers", "200", "--events",
                 "4000", "--speed", "0", "--rate", "0", "--start", "2025-06-01T08:00:00Z",
                 "--faults-per-rule", "2", "--truth", str(truth), "--record", str(records)])
    assert code == 0
    loaded = load_truth(truth)
    assert loaded[0].type == "run" and loaded[0].args["subscribers"] == 200
    assert loaded[-1].type == "summary"
    assert loaded[-1].records == sum(1 for _ in read_records(records))


@pytest.mark.parametrize(("argv", "message"), [
    (["--start", "2025-06-01T08:00:00"], "has no zone"),
    (["--start", "yesterday"], "not an ISO 8601 time"),
    (["--speed", "auto", "--rate", "0"], "--speed auto needs a positive --rate"),
    (["--speed", "fast"], "give a number"),
    (["--subscribers", "5"], "--subscribers must be at least 10"),
    (["--invalid-rate", "0.9"], "--invalid-rate"),
    (["--duration", "-1"], "--duration must be positive"),
])
def test_bad_simulate_flags_exit_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--no-kafka", "--quiet", "--events", "10", *argv]) == 2
    assert message in capsys.readouterr().err


def test_replay_names_the_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"topic": "complaints", "key": null, "value": "{}", "timestamp_ms": 1}\n'
                    '\n{"topic": "nowhere", "key": "S1", "value": "{}"}\n')
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "unknown topic 'nowhere'" in err
    assert main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read record file" in capsys.readouterr().err
    path.write_text('{"topic": "complaints", "key": null}\n')
    with pytest.raises(ReplayFileError, match="line 1: needs a string 'value'"):
        list(read_records(path))


def test_speed_auto_matches_the_rate() -> None:
    speed = resolve_speed("auto", 1000, 10_000)
    assert 100 < speed < 1000
    with pytest.raises(SimulatorInputError):
        resolve_speed("-1", 0, 10)


def test_pacer_follows_the_simulated_clock_and_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(START, 60.0, 0.0, clock=clock, sleep=clock.sleep)
    pacer.begin()
    for offset_s in (0, 30, 60, 120):
        pacer.gate(START + offset_s * 1000)
    assert clock.slept == pytest.approx(2.0, abs=0.01)   # 120 simulated s at speed 60

    clock = FakeClock()
    pacer = Pacer(START, 0.0, 100.0, clock=clock, sleep=clock.sleep)
    pacer.begin()
    for _ in range(1000):
        pacer.gate(START)
    assert clock.slept == pytest.approx(10.0, abs=0.1)   # 1000 records at 100/s


def test_duration_stops_the_run_and_progress_reports(tmp_path: Path) -> None:
    clock = FakeClock()
    out = io.StringIO()
    cfg = SimConfig(seed=3, subscribers=300, start_ms=START, horizon_s=3 * 3600)
    result = run_simulation(cfg, MemorySink(), speed=3600, rate=0, duration_s=3.0,
                            out=out, clock=clock, sleep=clock.sleep)
    end = datetime.fromisoformat(result.summary["end"])
    hours = (end.timestamp() * 1000 - START) / 3_600_000
    assert 2.9 < hours < 3.2
    lines = out.getvalue().splitlines()
    assert any(line.startswith("[bootstrap] done") for line in lines)
    assert sum(line.startswith("[simulate]") for line in lines) >= 3
    assert "call-events=" in lines[-1] and "sim 2025-06-01T1" in lines[-1]


class _InterruptingSink(MemorySink):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def send(self, topic: str, key: str | None, value: bytes, timestamp_ms: int) -> None:
        super().send(topic, key, value, timestamp_ms)
        if len(self.records) == self.after:
            raise KeyboardInterrupt


def test_ctrl_c_still_closes_the_truth_file(tmp_path: Path) -> None:
    cfg = SimConfig(seed=3, subscribers=100, start_ms=START, horizon_s=3600)
    path = tmp_path / "truth.jsonl"
    sink = _InterruptingSink(after=3000)
    result = run_simulation(cfg, sink, speed=0, rate=0, truth_path=path, progress=False)
    assert result.interrupted
    truth = load_truth(path)
    assert truth[-1].type == "summary" and truth[-1].model_extra["interrupted"] is True
    assert truth[-1].records == len(sink.records)


def test_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    """Set iteration order changes with PYTHONHASHSEED; the output must not."""
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        out.mkdir()
        subprocess.run(
            [sys.executable, "-m", "streams.cli", "simulate", "--no-kafka", "--quiet",
             "--subscribers", "300", "--events", "8000", "--speed", "0", "--rate", "0",
             "--start", "2025-06-01T08:00:00+08:00", "--faults-per-rule", "4",
             "--truth", str(out / "truth.jsonl"), "--record", str(out / "records.jsonl")],
            check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed})
        outputs.append(((out / "truth.jsonl").read_bytes(), (out / "records.jsonl").read_bytes()))
    assert outputs[0] == outputs[1]


def test_slow_clock_does_not_delay_the_end_of_a_run() -> None:
    clock = FakeClock()
    cfg = SimConfig(seed=3, subscribers=100, start_ms=START, horizon_s=3600)
    run_simulation(cfg, MemorySink(), speed=0.01, rate=0, duration_s=2.0, progress=False,
                   clock=clock, sleep=clock.sleep)
    assert clock.slept < 4.0


def test_only_the_producer_module_names_a_kafka_client() -> None:
    root = Path(__file__).resolve().parents[2] / "streams" / "simulator"
    offenders = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [(path.name, n) for n in names
                          if n.split(".")[0] in ("confluent_kafka", "aiokafka", "faust")]
    assert offenders == [("producer.py", "confluent_kafka")]


def test_generators_import_no_kafka_client() -> None:
    code = ("import sys, streams.simulator.simulation, streams.simulator.runner, "
            "streams.simulator.command, streams.simulator.truth; "
            "bad = [m for m in ('confluent_kafka', 'aiokafka', 'faust') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
