"""``foresight simulate`` and ``foresight replay``: argument parsing and wiring only.

``streams.cli`` discovers this module and calls :func:`register`. Kafka is imported only
inside the command functions, after the arguments were checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.simulator.clock import parse_start
from streams.simulator.config import SimConfig, expected_events_per_hour
from streams.simulator.errors import SimulatorInputError

SIMULATE_EPILOG = """\
examples:
  foresight simulate --subscribers 2000 --duration 60 --truth truth.jsonl
  foresight simulate --seed 7 --speed auto --rate 2000 --duration 300 --record run.jsonl
  foresight simulate --speed 0 --rate 0 --events 1000000 --no-kafka   # generation speed
  foresight replay run.jsonl --rate 5000 --topic-prefix demo.

The simulated clock starts at --start and runs --speed times faster than the wall clock;
how many events that makes per second depends on the population (about %(per_sub).1f per
subscriber per simulated hour); --rate caps it. --speed auto picks the speed that makes
the natural rate match --rate; --speed 0 runs the clock as fast as --rate allows.
"""


def register(sub: Any, common: Any) -> None:
    """Add the ``simulate`` and ``replay`` subcommands to the ``foresight`` parser."""
    per_sub = expected_events_per_hour(1000) / 1000
    p = sub.add_parser(
        "simulate", help="feed every input topic from a seeded synthetic operator",
        description="Run a seeded synthetic telecom operator: bootstrap every subscriber's "
        "state, then emit correlated subscriber-state, call, complaint, network-KPI and "
        "contact events with injected faults, and write the ground truth.",
        epilog=SIMULATE_EPILOG % {"per_sub": per_sub},
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("the operator")
    g.add_argument("--seed", type=int, default=1, help="random seed; same seed, same "
                   "events and truth (default 1)")
    g.add_argument("--subscribers", type=int, default=10_000,
                   help="population size; cells = subscribers/40 (default 10000)")
    g.add_argument("--start", help="simulated start time, ISO 8601 with zone "
                   "(default: now, UTC, rounded to the second)")
    g = p.add_argument_group("pacing and length")
    g.add_argument("--speed", default="60", help="simulated seconds per wall second; 0 = "
                   "as fast as --rate allows; auto = match --rate (default 60)")
    g.add_argument("--rate", type=float, default=5000.0,
                   help="cap in events per wall second, token bucket; 0 = none (default 5000)")
    g.add_argument("--duration", type=float, help="wall seconds of the run phase "
                   "(default: until --events or Ctrl-C)")
    g.add_argument("--events", type=int, help="stop after this many run-phase records "
                   "(bootstrap not counted; a few held-back late events may follow)")
    g.add_argument("--horizon", type=float, help="simulated hours over which each batch of "
                   "injections is spread (default: estimated from --duration x --speed or "
                   "--events; 24 for open-ended runs)")
    g.add_argument("--no-bootstrap", action="store_true",
                   help="do not send the current state of every subscriber first")
    g = p.add_argument_group("outputs")
    g.add_argument("--truth", type=Path, help="write the ground-truth JSONL here")
    g.add_argument("--record", type=Path, help="also write every produced record as JSONL, "
                   "for 'foresight replay'")
    g.add_argument("--no-kafka", action="store_true",
                   help="generate without producing (with --truth/--record, or to measure)")
    g.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    g = p.add_argument_group("noise and injections")
    g.add_argument("--invalid-rate", type=float, default=0.001,
                   help="share of extra deliberately broken records (default 0.001)")
    g.add_argument("--late-rate", type=float, default=0.002,
                   help="share of events sent late, out of event-time order (default 0.002)")
    g.add_argument("--late-max", type=float, default=180.0,
                   help="maximum lateness in simulated seconds (default 180)")
    g.add_argument("--duplicate-rate", type=float, default=0.001,
                   help="share of events sent twice with the same event_id (default 0.001)")
    g.add_argument("--faults-per-rule", type=int, default=20,
                   help="injected audit faults per rule per horizon (default 20)")
    g.add_argument("--fault-scale", type=float, default=1.0,
                   help="multiply --faults-per-rule (default 1.0)")
    g.add_argument("--complaint-share", type=float, default=0.02,
                   help="share of subscribers complaining per horizon (default 0.02)")
    g.add_argument("--churn-share", type=float, default=0.003,
                   help="share of subscribers porting out per horizon (default 0.003)")
    g.add_argument("--precursor-days", type=float, default=0.0,
                   help="days before a complaint or port-out over which its precursors "
                   "are spread (default 0: the last 6 hours)")
    g.add_argument("--lookalike-rate", type=float, default=1.0,
                   help="benign look-alikes per injected fault, per rule: conditions that "
                   "clear within the grace period (or the lateness), same-instant "
                   "reversals, clearing reports sent out of order (default 1.0)")
    g.add_argument("--lateness", type=float, default=2.0,
                   help="allowed lateness in seconds the look-alikes are made for; must "
                   "match the worker's FORESIGHT_TIMER_LATENESS_MS (default 2)")
    common(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "replay", help="produce a recorded JSONL file again, byte for byte",
        description="Produce the records of a file written by 'foresight simulate --record' "
        "again: same topics (with the current prefix), same keys, same value bytes, in "
        "file order. The file is checked completely before anything is sent.")
    p.add_argument("file", type=Path, help="record file (JSONL) to replay")
    p.add_argument("--rate", type=float, default=0.0,
                   help="records per wall second; 0 = as fast as possible (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    common(p)
    p.set_defaults(func=cmd_replay)


def config_from(args: argparse.Namespace, speed: float) -> SimConfig:
    """The simulation config of parsed ``simulate`` arguments (validated)."""
    from streams.simulator.runner import estimate_horizon

    if args.duration is not None and args.duration <= 0:
        raise SimulatorInputError("--duration must be positive (wall seconds)")
    if args.events is not None and args.events <= 0:
        raise SimulatorInputError("--events must be positive")
    if args.rate < 0:
        raise SimulatorInputError("--rate must not be negative (0 means no cap)")
    if args.horizon is not None:
        horizon = args.horizon * 3600
    else:
        horizon = estimate_horizon(args.subscribers, speed=speed, rate=args.rate,
                                   duration_s=args.duration, events=args.events,
                                   faults_per_rule=round(args.faults_per_rule
                                                         * args.fault_scale),
                                   lookalike_rate=args.lookalike_rate)
    return SimConfig(
        seed=args.seed, subscribers=args.subscribers, start_ms=parse_start(args.start),
        horizon_s=horizon, bootstrap=not args.no_bootstrap, invalid_rate=args.invalid_rate,
        late_rate=args.late_rate, late_max_s=args.late_max,
        duplicate_rate=args.duplicate_rate, faults_per_rule=args.faults_per_rule,
        fault_scale=args.fault_scale, complaint_share=args.complaint_share,
        churn_share=args.churn_share,
        precursor_days=args.precursor_days, lookalike_rate=args.lookalike_rate,
        lateness_s=args.lateness)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run ``foresight simulate``: validate flags, start the broker if needed, run."""
    from streams.cli import ensure_broker, settings_from
    from streams.simulator.records import MemorySink
    from streams.simulator.runner import future_allowance_s, resolve_speed, run_simulation

    speed = resolve_speed(args.speed, args.rate, args.subscribers)
    cfg = config_from(args, speed)
    settings = settings_from(args)
    cfg = SimConfig(**{**cfg.as_args(), "max_event_bytes": settings.max_event_bytes})
    if args.no_kafka:
        sink: Any = MemorySink(keep=False)
    else:
        from streams.simulator.producer import KafkaSink
        from streams.topics import ensure_topics

        ensure_broker(settings, quiet=args.quiet)
        ensure_topics(settings)
        sink = KafkaSink(settings)
    # what shapes the stream and its pacing; output paths stay out so reruns are identical
    recorded = {k: v for k, v in vars(args).items()
                if k not in ("func", "truth", "record", "quiet", "no_kafka", "home")}
    if not args.quiet:
        natural = expected_events_per_hour(args.subscribers) / 3600 * speed
        clock = (f"speed {speed:g} (~{natural:,.0f} events/s)" if speed > 0 else
                 "free-running clock")
        cap = f"rate cap {args.rate:,.0f}/s" if args.rate > 0 else "no rate cap"
        print(f"[simulate] seed {cfg.seed}, {cfg.subscribers:,} subscribers, {clock}, {cap}, "
              f"injections spread over {cfg.horizon_s / 3600:.1f} simulated h", file=sys.stderr)
        ahead = future_allowance_s(speed, args.duration)
        if args.start is None and (ahead is None or ahead > 2 * 3600):
            span = "without bound" if ahead is None else f"up to {(ahead - 3600) / 3600:.1f} h"
            print(f"[simulate] note: the simulated clock will run {span} ahead of the wall "
                  "clock; workers dead-letter events more than FORESIGHT_EVENT_TIME_MAX_FUTURE_S "
                  "(default 3600) ahead, so start them with that raised"
                  + (f" to {ahead}" if ahead else "") + ", or pass --start in the past",
                  file=sys.stderr)
        if speed > 0 and args.rate > 0 and natural < 0.5 * args.rate:
            print(f"[simulate] note: at --speed {speed:g} this population makes ~{natural:,.0f} "
                  f"events/s, below --rate {args.rate:,.0f}; --speed auto reaches the rate",
                  file=sys.stderr)
    result = run_simulation(
        cfg, sink, speed=speed, rate=args.rate, duration_s=args.duration, events=args.events,
        truth_path=args.truth, record_path=args.record, args=recorded,
        progress=not args.quiet)
    s = result.summary
    # 'produced N records' is the line 'foresight demo' reads to know what to wait for
    verb = "generated" if args.no_kafka else "produced"
    print(f"{verb} {sum(result.delivered.values()):,} records ({s['bootstrap_records']:,} "
          f"bootstrap in {result.bootstrap_seconds:.1f}s, {s['run_records']:,} run in "
          f"{result.run_seconds:.1f}s = {result.run_rate:,.0f}/s); simulated until {s['end']}",
          file=sys.stderr)
    if args.truth:
        print(f"truth: {sum(s['truth'].values()):,} lines in {args.truth}", file=sys.stderr)
    skipped = sum(s["faults"]["skipped"].values())
    if skipped:
        print(f"note: {skipped} planned faults found no free subscriber; use more "
              "--subscribers or fewer --faults-per-rule", file=sys.stderr)
    skipped = sum(s["lookalikes"]["skipped"].values())
    if skipped:
        print(f"note: {skipped} planned look-alikes found no free subscriber; use more "
              "--subscribers or a lower --lookalike-rate", file=sys.stderr)
    return 130 if result.interrupted else 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Run ``foresight replay``: check the file, then produce it again in order."""
    from streams.cli import ensure_broker, settings_from
    from streams.simulator.producer import KafkaSink
    from streams.simulator.records import scan_records
    from streams.simulator.runner import run_replay
    from streams.topics import ensure_topics

    if args.rate < 0:
        raise SimulatorInputError("--rate must not be negative (0 means as fast as possible)")
    expected = scan_records(args.file)   # fail on a bad file before touching the broker
    settings = settings_from(args)
    ensure_broker(settings, quiet=args.quiet)
    ensure_topics(settings)
    sink = KafkaSink(settings)
    counts = run_replay(args.file, sink, rate=args.rate, progress=not args.quiet,
                        expected=expected)
    print(f"replayed {sum(counts.values()):,} records; delivered "
          f"{sum(sink.delivered.values()):,}", file=sys.stderr)
    return 0
