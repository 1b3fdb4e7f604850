"""``foresight bench``: argparse wiring, found by ``streams.cli`` (see ``_plugins``).

Heavy imports (Kafka clients, Faust, Quix) happen only when a benchmark runs, so
``foresight --help`` stays fast.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

INGEST_HELP = """\
Produce a deterministic dataset once to fresh topics, then read it with every line, each
in its own process, from the beginning with a fresh group:
  aiokafka-raw       AIOKafkaConsumer getmany + orjson (the client's ceiling)
  faust-passthrough  a bare faust-streaming agent, decode only
  faust-table        the same plus one changelogged table write per event
  quix-state         Quix Streams with per-key RocksDB state + changelog
  foresight-ingest   the real 'foresight worker' (packer, transactions) with ingestion
                     only: unified view + call features
  foresight          the same with the whole pipeline: + the cross-system audit
  foresight-x2       two full workers in one group (with --workers 2)
then measure end-to-end latency at half the foresight rate through dead letters.
Rates are ratios against aiokafka-raw and quix-state of the same run: compare those
across machines, not the absolute figures.
"""


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``bench ingest``, ``steps``, ``latency``, ``restore``, ``faults`` and ``soak``."""
    p = sub.add_parser("bench", help="benchmarks with baselines (ingest, steps, latency, "
                       "restore, faults, soak)",
                       description="Repeatable benchmarks that always run their baselines "
                       "beside the measurement, on the same broker and records.")
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    i = acts.add_parser("ingest", help="throughput of Foresight vs aiokafka, Faust, Quix; latency",
                        description=INGEST_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(i)  # --partitions (default 4) comes from here
    i.add_argument("--events", type=int, default=200_000, help="input events (default 200000)")
    i.add_argument("--subscribers", type=int, default=100_000, help="distinct keys (default 100000)")
    i.add_argument("--repeat", type=int, default=1, help="runs per line; median and min-max")
    i.add_argument("--lines", default="all", help="'all' or a comma list of line names")
    i.add_argument("--workers", type=int, default=1, choices=(1, 2),
                   help="2 adds the foresight-x2 line (two workers, one group)")
    i.add_argument("--json", type=Path, dest="json_out", metavar="OUT.json",
                   help="write every raw result here")
    i.add_argument("--latency-seconds", type=float, default=20.0,
                   help="length of the half-load latency phase; 0 skips it (default 20)")
    i.add_argument("--latency-load", type=float, default=0.5,
                   help="latency phase rate as a fraction of the measured foresight rate (0.5)")
    i.add_argument("--keep", action="store_true", help="keep the run's topics for inspection")
    i.add_argument("--line-timeout", type=float, help="seconds per line (default 120 + events/500)")
    i.add_argument("--seed", type=int, help="dataset seed (default fixed: same bytes every run)")
    i.add_argument("--profile", type=Path, metavar="OUT.txt",
                   help="one extra worker run under py-spy; write where its time goes")
    i.add_argument("--profile-line", default="foresight",
                   choices=("foresight", "foresight-ingest", "foresight-foresee"),
                   help="the worker line --profile runs (default foresight: the whole pipeline)")
    i.add_argument("--poll-ms", type=int, default=20, help="/metrics polling period (default 20)")
    i.set_defaults(func=cmd_ingest)

    st = acts.add_parser(
        "steps", help="per-event cost of each pipeline configuration, without Kafka",
        description="Run the same records through the processing unit with ingestion only "
        "and with the whole pipeline (+ audit), in one process, on the ingest benchmark's "
        "dataset and on the simulator's stream; report the audit's cost as a ratio.")
    st.add_argument("--events", type=int, default=100_000, help="records per set (100000)")
    st.add_argument("--subscribers", type=int, default=100_000,
                    help="keys of the bench dataset (the simulation gets a tenth)")
    st.add_argument("--rounds", type=int, default=3, help="alternating rounds; best kept (3)")
    st.add_argument("--partitions", type=int, default=4)
    st.set_defaults(func=cmd_steps)

    lt = acts.add_parser(
        "latency", help="end-to-end latency at fixed input rates (a sweep)",
        description="For each rate: a fresh worker (full pipeline, default settings) on "
        "fresh topics, a warm-up, then constant production with 1% invalid events; each "
        "becomes a dead letter carrying its input's CreateTime, read by a read_committed "
        "consumer. Reports p50/p99/max per rate and whether p50 rises during the run (a "
        "backlog: the rate is not sustainable). Worker settings come from the environment "
        "(FORESIGHT_BATCH_LINGER_MS, FORESIGHT_COMMIT_INTERVAL_MS, ...).")
    common(lt)
    lt.add_argument("--rates", default="2000,5000,8000,13500",
                    help="comma list of events/s (default 2000,5000,8000,13500)")
    lt.add_argument("--seconds", type=float, default=20.0, help="production per run (20)")
    lt.add_argument("--repeat", type=int, default=1, help="runs per rate, round-robin (1)")
    lt.add_argument("--subscribers", type=int, default=100_000, help="distinct keys (100000)")
    lt.set_defaults(func=cmd_latency)

    r = acts.add_parser("restore", help="state restore time and memory for N subscribers",
                        description="Write N realistic unified-view states to a compacted "
                        "changelog in Kafka transactions, as the worker does, then time "
                        "restore_partition into each store backend (each in a fresh process).")
    common(r)
    r.add_argument("--subscribers", type=int, default=1_000_000, help="states (default 1000000)")
    r.add_argument("--store", default="memory,rocksdb",
                   help="backends to time: memory, rocksdb, and none (the consumer alone)")
    r.add_argument("--json", type=Path, dest="json_out", metavar="OUT.json")
    r.add_argument("--keep", action="store_true", help="keep the changelog topic")
    r.add_argument("--timeout", type=float, default=1800.0, help="seconds per restore")
    r.set_defaults(func=cmd_restore)
    _register_faults(acts, common)
    _register_screen(acts, common)
    _register_contact(acts, common)


def _register_contact(acts: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    c = acts.add_parser(
        "contact", help="contact-policy decision latency at fixed request rates",
        description="For each rate: a fresh worker on fresh topics, contact requests at the "
        "rate beside a constant ingest load; each request is timed from produce to its "
        "decision read by a read_committed consumer of contact-decisions. Worker settings "
        "from the environment or --env (FORESIGHT_BATCH_LINGER_MS, ...).")
    common(c)
    c.add_argument("--rates", default="1000,5000", help="requests/s, comma list (1000,5000)")
    c.add_argument("--ingest-rate", type=float, default=1000.0,
                   help="ingest events/s produced beside the requests (1000)")
    c.add_argument("--seconds", type=float, default=20.0, help="production per rate (20)")
    c.add_argument("--subscribers", type=int, default=100_000, help="distinct keys (100000)")
    c.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="worker environment variable for this run (repeatable)")
    c.add_argument("--json", type=Path, dest="json_out", metavar="OUT.json")
    c.set_defaults(func=cmd_contact)


def _register_screen(acts: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    from streams.bench.screen import __doc__ as screen_doc
    sc = acts.add_parser("screen", help="screen-pop latency and one-key view latency under load",
                         description=(screen_doc or "").split("\n\n", 1)[-1],
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    common(sc)
    sc.add_argument("--background", type=float, default=2000.0,
                    help="background events/s from the bench dataset (2000)")
    sc.add_argument("--calls", type=float, default=20.0, help="answered hotline calls/s (20)")
    sc.add_argument("--agents", type=int, default=20, help="agents listening (20)")
    sc.add_argument("--seconds", type=float, default=30.0, help="length of the run (30)")
    sc.add_argument("--subscribers", type=int, default=100_000, help="distinct keys (100000)")
    sc.add_argument("--view-rate", type=float, default=20.0,
                    help="GET /subscribers/{id} per second during the run (20)")
    sc.add_argument("--browser", action="store_true",
                    help="also one headless Chromium page (first agent): produce -> DOM")
    sc.add_argument("--json", type=Path, dest="json_out", metavar="OUT.json")
    sc.set_defaults(func=cmd_screen)


def cmd_screen(args: argparse.Namespace) -> int:
    import json

    from streams.bench.screen import format_screen, run_screen_bench

    settings = _settings(args)
    _interrupt_on_term()
    r = run_screen_bench(settings, background=args.background, calls=args.calls,
                         agents=args.agents, seconds=args.seconds,
                         subscribers=args.subscribers, view_rate=args.view_rate,
                         browser=args.browser, say=_say)
    print(format_screen(r))
    if args.json_out:
        args.json_out.write_text(json.dumps(r, indent=2))
    return 0


def _register_faults(acts: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    f = acts.add_parser(
        "faults", help="recovery after broker outages, SIGTERM exit and takeover times",
        description="Outages: a private broker (own ports, the embedded broker's jars) is "
        "killed while a worker works through a backlog, kept down for each length, and "
        "restarted; measured from the moment it answers until the worker commits again, and "
        "until the backlog is done. Shutdowns: two workers under a steady load, SIGTERM to "
        "one; measured: time to exit, time until the other processes every partition.")
    common(f)
    f.add_argument("--outages", default="5,15,60,300",
                   help="seconds the broker stays down, comma list (default 5,15,60,300)")
    f.add_argument("--events", type=int, default=150_000, help="backlog per outage run")
    f.add_argument("--shutdowns", type=int, default=3, help="SIGTERM runs (default 3)")
    f.add_argument("--rate", type=float, default=5000.0,
                   help="steady load during the shutdown runs, events/s (default 5000)")
    f.add_argument("--json", type=Path, dest="json_out", metavar="OUT.json")
    f.set_defaults(func=cmd_faults)

    s = acts.add_parser(
        "soak", help="memory and lag of one worker under a steady load for N minutes",
        description="One worker (full pipeline) and a paced producer of the bench dataset "
        "for --minutes; samples memory (worker + packer RSS) and lag (input, packed, "
        "uncommitted) every --sample seconds; reports their slope over the second half and "
        "the ERROR lines of the worker's log. Use half the rate 'bench ingest' measured.")
    common(s)
    s.add_argument("--minutes", type=float, default=30.0, help="length (default 30)")
    s.add_argument("--rate", type=float, required=True, help="events/s to produce")
    s.add_argument("--sample", type=float, default=10.0, help="seconds between samples (10)")
    s.add_argument("--subscribers", type=int, default=10_000,
                   help="distinct keys (default 10000: states reach their bounded size within "
                   "the first minutes, so growth left over is the runtime's)")
    s.add_argument("--json", type=Path, dest="json_out", metavar="OUT.json")
    s.set_defaults(func=cmd_soak)


def cmd_faults(args: argparse.Namespace) -> int:
    import json

    from streams.bench.faults import run_outages, run_shutdowns, summarize

    settings = _settings(args)
    _interrupt_on_term()
    say = _say
    outages = [float(x) for x in args.outages.split(",") if x.strip()]
    out = run_outages(settings, outages=outages, events=args.events,
                      partitions=settings.partitions, say=say) if outages else []
    downs = run_shutdowns(settings, repeat=args.shutdowns, rate=args.rate,
                          partitions=settings.partitions, say=say) if args.shutdowns else []
    for line in summarize(out, downs):
        print(line)
    if args.json_out:
        args.json_out.write_text(json.dumps({"outages": out, "shutdowns": downs}, indent=2))
    return 1 if any("error" in r for r in (*out, *downs)) else 0


def cmd_soak(args: argparse.Namespace) -> int:
    import json

    from streams.bench.faults import format_soak, run_soak

    settings = _settings(args)
    _interrupt_on_term()
    result = run_soak(settings, minutes=args.minutes, rate=args.rate,
                      partitions=settings.partitions, sample_s=args.sample,
                      subscribers=args.subscribers, say=_say)
    print(format_soak(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))
    return 0


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Any:
    from streams.cli import ensure_broker, settings_from

    settings = settings_from(args)
    ensure_broker(settings, quiet=True)
    return settings


def _interrupt_on_term() -> None:
    """SIGTERM cleans up like Ctrl-C: children killed, run topics deleted."""
    def raise_interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


def cmd_steps(args: argparse.Namespace) -> int:
    from streams.bench.steps import format_steps, run_steps

    print(f"[bench] steps: {args.events:,} records per set, {args.rounds} rounds ...",
          file=sys.stderr)
    print(format_steps(run_steps(args.events, args.subscribers, args.rounds, args.partitions)))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from streams.bench.dataset import DEFAULT_SEED
    from streams.bench.ingest import IngestOptions, resolve_lines, run_ingest
    from streams.errors import ConfigError

    try:
        lines = resolve_lines(args.lines, args.workers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.events < 1 or args.subscribers < 1 or args.repeat < 1:
        raise ConfigError("--events, --subscribers and --repeat must be at least 1")
    if not 0 < args.latency_load <= 2:
        raise ConfigError("--latency-load is a fraction of the measured rate, e.g. 0.5")
    settings = _settings(args)
    _interrupt_on_term()
    opts = IngestOptions(
        events=args.events, partitions=settings.partitions, subscribers=args.subscribers,
        repeat=args.repeat, lines=lines, latency_seconds=args.latency_seconds,
        latency_fraction=args.latency_load,
        line_timeout=args.line_timeout, seed=args.seed if args.seed is not None else DEFAULT_SEED,
        keep=args.keep, json_out=args.json_out, profile=args.profile,
        profile_line=args.profile_line, poll_ms=args.poll_ms)
    return run_ingest(settings, opts)


def cmd_latency(args: argparse.Namespace) -> int:
    from streams.bench.latency import format_sweep, run_sweep
    from streams.errors import ConfigError

    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError(f"--rates takes a comma list of numbers, e.g. 2000,5000: {exc}") from exc
    if not rates or min(rates) <= 0 or args.seconds <= 0 or args.repeat < 1:
        raise ConfigError("--rates must be positive, --seconds > 0 and --repeat >= 1")
    settings = _settings(args)
    _interrupt_on_term()

    def say(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    results = run_sweep(settings, rates=rates, seconds=args.seconds, repeat=args.repeat,
                        partitions=settings.partitions, subscribers=args.subscribers, say=say)
    print(format_sweep(results, args.seconds))
    return 0 if all(not r.get("error") for r in results) else 1


def cmd_contact(args: argparse.Namespace) -> int:
    import json

    from streams.bench.contact import format_row, run_contact_sweep
    from streams.errors import ConfigError

    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
        env = dict(e.split("=", 1) for e in args.env)
    except ValueError as exc:
        raise ConfigError(f"--rates takes numbers, --env NAME=VALUE: {exc}") from exc
    settings = _settings(args)
    _interrupt_on_term()

    def say(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    results = run_contact_sweep(settings, rates=rates, ingest_rate=args.ingest_rate,
                                seconds=args.seconds, partitions=settings.partitions,
                                subscribers=args.subscribers, say=say, env=env or None)
    print(f"decision latency, request produced -> decision read (read_committed), "
          f"{args.seconds:.0f} s per rate (ms); worker env {env or 'default'}")
    print("| requests/s | ingest events/s | decisions | p50 | p99 | max | p50 first → last "
          "quarter |\n|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(format_row(r))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(not r.get("error") for r in results) else 1


def cmd_restore(args: argparse.Namespace) -> int:
    from streams.bench.restore import RestoreOptions, run_restore
    from streams.errors import ConfigError

    stores = tuple(s.strip() for s in args.store.split(",") if s.strip())
    if not stores or any(s not in ("memory", "rocksdb", "none") for s in stores):
        raise ConfigError("--store takes a comma list of memory, rocksdb, none")
    settings = _settings(args)
    _interrupt_on_term()
    return run_restore(settings, RestoreOptions(
        subscribers=args.subscribers, stores=stores, json_out=args.json_out, keep=args.keep,
        timeout=args.timeout))
