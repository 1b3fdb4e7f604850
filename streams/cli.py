"""``foresight``: the one command operators use. ``foresight <command> --help`` explains each.

Settings come from environment variables (``FORESIGHT_*``, ``KAFKA_BOOTSTRAP_SERVERS``) and
can be overridden by the common flags below; flags win.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streams.errors import ForesightError
from streams.logs import configure as configure_logging
from streams.settings import Settings

EPILOG = """\
examples:
  foresight kafka start                 fetch (once) and start the embedded Apache Kafka
  foresight worker                      run a worker against it (Ctrl-C stops)
  foresight simulate --speed auto --rate 2000 --duration 60 --truth truth.jsonl
  foresight bench ingest --events 200000 --partitions 4
  KAFKA_BOOTSTRAP_SERVERS=kafka1:9092 foresight worker --partitions 12
"""


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (override environment variables)")
    g.add_argument("--broker", metavar="HOST:PORT[,..]",
                   help="external Kafka cluster (KAFKA_BOOTSTRAP_SERVERS); default: embedded broker")
    g.add_argument("--partitions", type=int, help="partitions of subscriber-keyed topics "
                   "(FORESIGHT_PARTITIONS, default 4)")
    g.add_argument("--replication-factor", type=int, help="FORESIGHT_REPLICATION_FACTOR (default 1)")
    g.add_argument("--topic-prefix", help="prefix of every topic name (FORESIGHT_TOPIC_PREFIX)")
    g.add_argument("--home", type=Path, help="local data folder (FORESIGHT_HOME, default .foresight)")


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """Environment first, then flags that were given."""
    overrides: dict[str, Any] = {}
    for flag, field in (("broker", "bootstrap_servers"), ("partitions", "partitions"),
                        ("replication_factor", "replication_factor"),
                        ("topic_prefix", "topic_prefix"), ("home", "home")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    overrides.update({k: v for k, v in extra.items() if v is not None})
    base = Settings()
    return base.model_copy(update=overrides) if overrides else base


def ensure_broker(settings: Settings, *, quiet: bool = False) -> bool:
    """Start the embedded broker when no external one is configured; True if started here."""
    if not settings.local_broker:
        return False
    from streams.kafka_local import LocalKafka

    return LocalKafka.from_settings(settings).start(quiet=quiet)


# --- kafka ---------------------------------------------------------------------------------
def cmd_kafka(args: argparse.Namespace) -> int:
    from streams.kafka_local import LocalKafka

    settings = settings_from(args)
    kafka = LocalKafka.from_settings(settings)
    if args.action == "fetch":
        kafka.fetch()
        print(f"Kafka jars cached in {kafka.libs}")
    elif args.action == "start":
        started = kafka.start()
        print(f"Kafka {'started' if started else 'already running'} on {kafka.bootstrap}")
    elif args.action == "stop":
        print("Kafka stopped" if kafka.stop() else "no local Kafka was running")
    elif args.action == "status":
        pid = kafka.pid()
        up = kafka.port_open()
        print(f"local Kafka on {kafka.bootstrap}: {'up' if up else 'down'}"
              + (f" (pid {pid})" if pid else ""))
        return 0 if up else 1
    elif args.action == "wipe":
        kafka.wipe()
        print(f"deleted {kafka.data_dir}")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.app import default_pipeline
    from streams.topics import ensure_topics, topic_specs
    from streams.unit import system_tables

    settings = settings_from(args)
    steps = default_pipeline(settings)
    tables = (*(s.name for s in steps), *system_tables(steps))
    if args.action == "list":
        for spec in topic_specs(settings, tables):
            print(f"{spec.name:45s} partitions={settings.partitions:<4d} "
                  f"{json.dumps(spec.config)}")
        return 0
    ensure_broker(settings)
    created = ensure_topics(settings, tables)
    print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from schemas.registry import export_json_schemas

    written = export_json_schemas(args.directory)
    for path in written:
        print(path)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.app import run_worker
    from streams.reference import run_reference_worker

    settings = settings_from(
        args, store=args.store, web_port=args.web_port, worker_id=args.worker_id,
        log_level=args.log_level, packer="off" if args.no_packer else args.packer,
        commit_interval_ms=args.commit_interval_ms, batch_linger_ms=args.batch_linger_ms,
        batch_max_events=args.batch_max_events)
    configure_logging(settings, "worker")  # until Faust's worker takes over (run_worker)
    ensure_broker(settings)
    (run_reference_worker if args.reference else run_worker)(settings)
    return 0


def cmd_packer(args: argparse.Namespace) -> int:
    import signal
    import threading

    from streams.app import make_packer
    from streams.topics import ensure_topics

    settings = settings_from(args)
    configure_logging(settings, "packer")
    ensure_broker(settings)
    ensure_topics(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    packer = make_packer(settings)
    print(f"packing {', '.join(packer.inputs)} -> {packer.packed_topic} (Ctrl-C stops)",
          file=sys.stderr)
    packer.run(stop)
    print(f"packed {packer.records} records into {packer.envelopes} envelopes", file=sys.stderr)
    return 0


# --- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foresight",
        description="Foresight: fix a telecom customer's problem before the customer calls. "
        "Kafka + Faust workers run cross-system audits, propensity models and contact "
        "policies over subscriber events.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("kafka", help="the embedded Apache Kafka broker (fetch/start/stop/status/wipe)",
                       description="Manage the embedded single-node Apache Kafka 4.2 (KRaft). Jars "
                       "are fetched from Maven Central once into FORESIGHT_HOME/kafka/libs.")
    p.add_argument("action", choices=["fetch", "start", "stop", "status", "wipe"])
    _common(p)
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("topics", help="create or list Foresight's topics",
                       description="Create missing topics with the configured partition count and "
                       "check that existing subscriber-keyed topics are co-partitioned.")
    p.add_argument("action", choices=["create", "list"])
    _common(p)
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("schemas", help="export JSON Schema of every topic",
                       description="Write one JSON Schema file per topic (from the pydantic "
                       "models) plus index.json, for producers in other languages.")
    p.add_argument("action", choices=["export"])
    p.add_argument("directory", type=Path)
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("worker", help="run a Foresight worker (Faust app + packer)",
                       description="Run a worker: the packer front stage and the Faust agents. "
                       "Start more workers with the same FORESIGHT_APP_ID to scale out; Kafka "
                       "splits the partitions between them.")
    _common(p)
    p.add_argument("--store", help="memory:// or rocksdb:// (FORESIGHT_STORE)")
    p.add_argument("--web-port", type=int, help="metrics/web port (FORESIGHT_WEB_PORT, default 6066)")
    p.add_argument("--worker-id", help="stable id for this worker's transactions (FORESIGHT_WORKER_ID)")
    p.add_argument("--log-level", help="FORESIGHT_LOG_LEVEL (default warning)")
    p.add_argument("--packer", choices=["process", "thread", "off"],
                   help="run the packer as a child process (default), a thread, or not at all "
                   "(FORESIGHT_PACKER)")
    p.add_argument("--no-packer", action="store_true",
                   help="same as --packer off: run 'foresight packer' separately")
    p.add_argument("--reference", action="store_true",
                   help="run the slow per-event reference path instead (equivalence checks)")
    p.add_argument("--commit-interval-ms", type=int, help="FORESIGHT_COMMIT_INTERVAL_MS")
    p.add_argument("--batch-linger-ms", type=int, help="FORESIGHT_BATCH_LINGER_MS")
    p.add_argument("--batch-max-events", type=int, help="FORESIGHT_BATCH_MAX_EVENTS")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("packer", help="run the packing front stage on its own",
                       description="Pack single input events into per-partition envelopes for "
                       "the workers (normally runs inside 'foresight worker').")
    _common(p)
    p.set_defaults(func=cmd_packer)

    for register in _plugins():
        register(sub, _common)
    return parser


def _plugins() -> list[Callable[..., None]]:
    """Subcommands that live next to what they run."""
    regs: list[Callable[..., None]] = []
    for module in ("streams.simulator.command", "streams.rules_command", "streams.bench.command",
                   "streams.evaluate", "streams.demo", "streams.acls", "streams.sink_command",
                   "sinks.screen_command", "streams.policy_command", "streams.models_command"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        regs.append(mod.register)
    return regs


def _logging_settings() -> Settings:
    """The environment's settings, or the defaults when some variable is invalid: a command
    that needs that variable reports it itself, one that does not (``schemas export``)
    still runs."""
    try:
        return Settings()
    except ValidationError:
        return Settings.model_construct()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # every command logs in FORESIGHT_LOG_FORMAT, masked; commands with a --log-level
        # flag configure again with it
        configure_logging(_logging_settings(), args.command)
        return int(args.func(args) or 0)
    except ForesightError as exc:
        print(f"foresight: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"foresight: invalid setting: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
