"""Drives a simulation or a replay into a sink, with pacing, progress and the truth file.

Sinks are duck-typed (``send``, ``poll``, ``close``, ``delivered``): the Kafka producer in
production, :class:`~streams.simulator.records.MemorySink` in tests. Nothing here knows
about Kafka, so the whole command path runs in unit tests with a fake clock.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from streams.simulator.config import SimConfig, expected_events_per_hour
from streams.simulator.errors import SimulatorInputError
from streams.simulator.pacing import Pacer, Progress
from streams.simulator.records import Record, RecordWriter, read_records, scan_records
from streams.simulator.simulation import Simulation
from streams.simulator.truthlog import TruthLog


@dataclass
class RunResult:
    """What a run produced (also printed); ``summary`` is the truth file's last line."""

    summary: dict[str, Any]
    sent: Counter[str]
    delivered: Counter[str]
    bootstrap_seconds: float
    run_seconds: float
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run_rate(self) -> float:
        """Run-phase records per wall second."""
        run = self.summary["run_records"]
        return run / self.run_seconds if self.run_seconds > 0 else 0.0


def resolve_speed(speed: str | float, rate: float, subscribers: int) -> float:
    """``--speed``: a number, or ``auto`` = the speed at which the population's natural
    event rate matches ``--rate``."""
    if isinstance(speed, str) and speed.strip().lower() == "auto":
        if rate <= 0:
            raise SimulatorInputError("--speed auto needs a positive --rate to aim at")
        return round(rate / (expected_events_per_hour(subscribers) / 3600), 3)
    try:
        value = float(speed)
    except ValueError as exc:
        raise SimulatorInputError(f"--speed {speed!r}: give a number (0 = no clock) or 'auto'") \
            from exc
    if value < 0:
        raise SimulatorInputError("--speed must not be negative (0 means: as fast as --rate)")
    return value


def future_allowance_s(speed: float, duration_s: float | None) -> int | None:
    """How far ahead of the wall clock the simulated clock can run (seconds, with an hour of
    margin), for a worker's ``FORESIGHT_EVENT_TIME_MAX_FUTURE_S``; None when open-ended.

    The simulated clock starts at the wall clock and runs ``speed`` times faster, so by
    the end of a run its events are dated up to ``duration x (speed - 1)`` ahead. Workers
    dead-letter events more than an hour ahead by default (a clock-poisoning guard); the
    demo and the evaluations raise the bound by this much for their own worker.

    >>> future_allowance_s(120.0, 150.0)
    21450
    """
    if duration_s is None or speed <= 0:
        return None
    return int(max(0.0, speed - 1) * duration_s) + 3600


def estimate_horizon(subscribers: int, *, speed: float, rate: float, duration_s: float | None,
                     events: int | None, faults_per_rule: int,
                     lookalike_rate: float = 0.0) -> float:
    """Simulated seconds the run will cover, so injections can be spread over it.

    With ``--events`` the fixed cost of the injections themselves (roughly 70 records per
    planned fault and story, 10 per look-alike) is taken off first, then 20% margin, so
    the planned faults fall inside the run even when the population is small.
    """
    per_s = expected_events_per_hour(subscribers) / 3600
    if events is not None:
        fixed = ((70 + 10 * lookalike_rate) * (12 * faults_per_rule)
                 + 6 * 0.03 * subscribers)
        return max(600.0, 0.8 * (events - fixed) / per_s)
    if duration_s is not None:
        if speed > 0:
            return max(600.0, duration_s * speed)
        if rate > 0:
            return max(600.0, duration_s * rate / per_s)
    return 86_400.0


def run_simulation(
    cfg: SimConfig, sink: Any, *, speed: float, rate: float,
    duration_s: float | None = None, events: int | None = None,
    truth_path: Path | None = None, record_path: Path | None = None,
    args: dict[str, Any] | None = None, progress: bool = True, out: TextIO = sys.stderr,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    truth: TruthLog | None = None,
) -> RunResult:
    """Bootstrap (as fast as the sink takes it), then the paced run; always closes the
    truth file with a summary, also on Ctrl-C."""
    truth = truth or TruthLog(truth_path)
    sim = Simulation(cfg, truth)
    truth.write(sim.header(args or cfg.as_args(), speed, rate))
    recorder = RecordWriter(record_path) if record_path else None
    sent: Counter[str] = Counter()
    interrupted = False
    boot_s = run_s = 0.0
    prog = Progress("bootstrap", out=out, enabled=progress, clock=clock)
    batches: Iterator[list[Record]] = iter(())
    t0 = clock()
    try:
        for batch in sim.bootstrap():
            _send(batch, sink, recorder, None, prog.counts)
            if prog.maybe():
                sink.poll()
        boot_s = clock() - t0
        if prog.counts:
            prog.line(final=True)
        sent.update(prog.counts)

        prog = Progress("simulate", out=out, enabled=progress, clock=clock)
        deadline = None if duration_s is None else clock() + duration_s
        pacer = Pacer(cfg.start_ms, speed, rate, clock=clock, sleep=sleep)

        def tick() -> None:
            """Once a second: progress, delivery callbacks, the --duration deadline."""
            if prog.maybe():
                sink.poll()
                prog.sim_ms = pacer.sim_now() if speed > 0 else sim.eng.now
                if deadline is not None and clock() >= deadline:
                    sim.stop()
                    pacer.abort = True

        pacer.on_wait = tick
        pacer.begin()
        t0 = clock()
        batches = sim.run(max_records=events)
        for batch in batches:
            _send(batch, sink, recorder, pacer, prog.counts)
            tick()
    except KeyboardInterrupt:
        interrupted = True
        sim.stop()
        for batch in batches:   # drain what was generated (late events), unpaced
            _send(batch, sink, recorder, None, prog.counts)
    finally:
        if prog.label == "simulate":
            run_s = clock() - t0
            sent.update(prog.counts)
            prog.sim_ms = sim.eng.now
            if progress:
                prog.line(final=True)
        else:   # interrupted during the bootstrap
            boot_s = clock() - t0
            sent.update(prog.counts)
        try:
            if recorder is not None:
                recorder.close()
            sink.close()
        finally:   # the truth file is complete even when the broker lost records
            summary = sim.finish(dict(sent), **({"interrupted": True} if interrupted else {}))
    return RunResult(summary, sent, Counter(sink.delivered), boot_s, run_s, interrupted)


def _send(batch: list[Any], sink: Any, recorder: RecordWriter | None, pacer: Pacer | None,
          counts: Counter[str]) -> None:
    send = sink.send
    if pacer is None and recorder is None:
        for topic, key, value, ts in batch:
            counts[topic] += 1
            send(topic, key, value, ts)
        return
    gate = pacer.gate if pacer is not None else None
    write = recorder.write if recorder is not None else None
    for topic, key, value, ts in batch:
        if gate is not None:
            gate(ts)
        counts[topic] += 1
        send(topic, key, value, ts)
        if write is not None:
            write(topic, key, value, ts)


def run_replay(path: Path, sink: Any, *, rate: float = 0.0, progress: bool = True,
               out: TextIO = sys.stderr, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep,
               expected: Counter[str] | None = None) -> Counter[str]:
    """Produce a record file's records again, byte for byte, in file order.

    The file is validated completely first, so a bad line stops the replay before
    anything was sent.
    """
    expected = expected if expected is not None else scan_records(path)
    prog = Progress("replay", out=out, enabled=progress, clock=clock,
                    total=sum(expected.values()))
    pacer = Pacer(0, 0.0, rate, clock=clock, sleep=sleep, on_wait=prog.maybe)
    pacer.begin()
    try:
        for topic, key, value, ts in read_records(path):
            pacer.gate(0)
            sink.send(topic, key, value, ts)
            prog.counts[topic] += 1
            if prog.counts[topic] & 1023 == 0 and prog.maybe():
                sink.poll()
    finally:
        sink.close()
    if progress:
        prog.line(final=True)
    return prog.counts
