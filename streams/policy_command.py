"""``foresight policy check|test|list|dnd``: the contact policy's own tools.

``check`` loads policy files as the worker would and prints ``OK: N rules in FILE`` or each
problem as ``FILE:LINE[:COL]: message`` (exit code 2). ``test`` runs policy test files
(requests + expected decisions, no Kafka; exit 1 on a failure, 2 on a malformed file).
``list`` prints a policy's rules. ``dnd add|remove`` writes the operator's do-not-disturb
list (compacted topic ``do-not-disturb``). ``streams.cli`` discovers this module.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.contact.policy import load_policy
from agents.contact.policytests import packaged_tests, run_test_file
from streams.errors import RuleError
from streams.rules_command import check_files, compile_run

EPILOG = """\
examples:
  foresight policy check agents/rules/contact-policy.yaml
  foresight policy test --packaged
  foresight policy test my-policy.test.yaml --run 'quiet hours'
  foresight policy list --policy new-policy.yaml
  foresight policy dnd add S00000042 --note "asked on the hotline"
  foresight policy dnd remove S00000042
"""


def register(sub: Any, common: Any) -> None:
    p = sub.add_parser("policy", help="check, test or list contact policies; edit the "
                       "do-not-disturb list",
                       description="Validate contact policy files (agents/rules/"
                       "contact-policy.yaml), run their unit tests, list their rules and "
                       "maintain the do-not-disturb list. See docs/contact-policy.md.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="policy_action", required=True, metavar="ACTION")
    c = actions.add_parser("check", help="validate policy files (exit code 2 on errors)",
                           description="Load every FILE as the worker would: YAML, fields, "
                           "values, expressions, time zone. Prints 'OK: N rules in FILE' or "
                           "each problem as FILE:LINE[:COL]: message.")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=cmd_check)
    t = actions.add_parser("test", help="run policy unit tests (exit 1 on failures, 2 on "
                           "malformed files)",
                           description="Feed each test's history and requests through the "
                           "contact-policy step (no Kafka) and compare every decision, its "
                           "reasons (in order), exemptions and allowed_after with the "
                           "expected ones. File format: agents/contact/policytests.py and "
                           "docs/contact-policy.md.")
    t.add_argument("files", nargs="*", metavar="FILE")
    t.add_argument("--packaged", action="store_true", help="also run the tests shipped with "
                   "the packaged policy (agents/rules/contact-tests/*.yaml)")
    t.add_argument("--policy", metavar="FILE", help="test this policy instead of the one "
                   "each test file names")
    t.add_argument("--run", metavar="REGEX", help="only the tests whose name matches REGEX")
    t.set_defaults(func=cmd_test)
    ls = actions.add_parser("list", help="print a policy's rules in precedence order")
    ls.add_argument("--policy", metavar="FILE", help="policy file (default: the packaged one)")
    ls.set_defaults(func=cmd_list)
    d = actions.add_parser("dnd", help="add a subscriber to, or remove one from, the "
                           "do-not-disturb list (topic do-not-disturb)",
                           description="Write one entry to the compacted do-not-disturb topic; "
                           "the contact-policy step applies it to every later request.")
    d.add_argument("op", choices=["add", "remove"])
    d.add_argument("subscriber", help="subscriber id")
    d.add_argument("--note", default="", help="why (kept with the entry)")
    common(d)
    d.set_defaults(func=cmd_dnd)


def cmd_check(args: argparse.Namespace) -> int:
    def check(path: str) -> str:
        policy = load_policy(path)
        return f"OK: {len(policy.rules)} rules in {path} (policy_version {policy.version})"
    return check_files(args.files, check, "foresight policy check")


def cmd_test(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files] + (packaged_tests() if args.packaged else [])
    if not files:
        print("name test files, or --packaged", file=sys.stderr)
        return 2
    try:
        pattern = compile_run(args.run, "foresight policy test")
    except re.error:
        return 2
    try:
        override = load_policy(args.policy) if args.policy else None
    except RuleError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    passed = failed = 0
    for path in files:
        try:
            outcomes = run_test_file(path, override)
        except RuleError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        for o in outcomes:
            if pattern and not pattern.search(o.name):
                continue
            if o.ok:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {path}: {o.name}")
                for f in o.failures:
                    print(f"  {f}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy)
    except RuleError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(f"policy_version {policy.version}, default zone {policy.tz}")
    for r in sorted(policy.rules, key=lambda r: (r.precedence, r.order)):
        kind = "quiet" if r.quiet else "cap" if r.cap_per else "expr"
        print(f"{r.precedence:>4}  {r.id:<24} {r.reason:<26} {kind:<5} "
              f"{','.join(sorted(r.purposes)):<18} {r.description}")
    return 0


def cmd_dnd(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from schemas.contacts import DoNotDisturb
    from schemas.registry import DO_NOT_DISTURB
    from streams.settings import Settings
    from streams.topics import ensure_topics

    settings = Settings()
    ensure_topics(settings)
    now = datetime.now(UTC)
    entry = DoNotDisturb(event_id=f"dnd-{args.subscriber}-{int(now.timestamp() * 1000)}",
                         event_time=now, subscriber_id=args.subscriber,
                         listed=args.op == "add", note=args.note)
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    producer.produce(settings.topic(DO_NOT_DISTURB), key=args.subscriber.encode(),
                     value=entry.model_dump_json().encode())
    if producer.flush(30) != 0:
        print("could not deliver the entry within 30 s", file=sys.stderr)
        return 1
    print(f"{'added' if entry.listed else 'removed'} {args.subscriber} "
          f"{'to' if entry.listed else 'from'} {settings.topic(DO_NOT_DISTURB)}")
    return 0
