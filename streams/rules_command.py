"""``foresight rules check|test|list``: the audit catalog's own tools.

Like ``promtool check rules``: an operator edits ``agents/rules/audit.yaml`` (or a copy),
runs ``foresight rules check FILE`` and gets either ``OK: N rules in FILE`` or every problem
as ``FILE:LINE: what is wrong`` (exit code 2), before any worker loads it. Like ``promtool
test rules``, ``foresight rules test FILE`` replays the reports of a test file through the
unified view and the audit (no Kafka) and compares the alerts and hints active at each
``eval_time`` with the expected ones (exit code 1 on a failure, 2 on a malformed file).
``streams.cli`` discovers this module and calls :func:`register`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from agents.audit.catalog import Catalog, load_catalog
from agents.audit.durations import format_duration
from agents.audit.ruletests import packaged_tests, run_test_file
from streams.errors import RuleError

EPILOG = """\
examples:
  foresight rules check agents/rules/audit.yaml
  foresight rules check my-rules.yaml other-rules.yaml
  foresight rules test agents/rules/tests/*.yaml
  foresight rules test --packaged
  foresight rules test my-rules.test.yaml --run 'bss-active'
  foresight rules list
  foresight rules list --catalog my-rules.yaml
"""


def register(sub: Any, common: Any) -> None:
    """Add ``rules check`` and ``rules list`` to the ``foresight`` parser."""
    p = sub.add_parser("rules", help="check, test or list audit rule catalogs",
                       description="Validate audit rule files (YAML shaped like Prometheus "
                       "alerting rules), run their unit tests and list the rules of a "
                       "catalog. See docs/audit.md.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="rules_action", required=True, metavar="ACTION")
    c = actions.add_parser("check", help="validate rule files (exit code 2 on errors)",
                           description="Load every FILE as the audit would: YAML, fields, "
                           "durations, expressions, placeholders. Prints 'OK: N rules in "
                           "FILE' or each problem as FILE:LINE: message.")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=cmd_check)
    t = actions.add_parser(
        "test", help="run rule unit tests (exit code 1 on failures, 2 on malformed files)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=TEST_DESCRIPTION)
    t.add_argument("files", nargs="*", metavar="FILE", help="test files (YAML, see below)")
    t.add_argument("--packaged", action="store_true", help="also run the tests shipped with "
                   "the packaged catalog (agents/rules/tests/*.yaml)")
    t.add_argument("--run", metavar="REGEX", help="only the tests whose name matches REGEX")
    t.set_defaults(func=cmd_test)
    ls = actions.add_parser("list", help="print a catalog's rules as a table",
                            description="Print id, grace period, severity, notify, each and "
                            "description of every rule (default: the packaged catalog).")
    ls.add_argument("--catalog", metavar="FILE", help="rules file (default: the packaged "
                    "agents/rules/audit.yaml)")
    ls.set_defaults(func=cmd_list)


def cmd_check(args: argparse.Namespace) -> int:
    return check_files(args.files, lambda path: f"OK: {len(load_catalog(path).rules)} rules "
                       f"in {path}", "foresight rules check")


def check_files(files: list[str], check: Callable[[str], str], command: str) -> int:
    """Run ``check`` (load one file, return its OK line) on every file: each RuleError is
    printed and counted, and any makes the exit code 2 (``rules check``, ``policy check``)."""
    failed = 0
    for path in files:
        try:
            print(check(path))
        except RuleError as exc:
            failed += 1
            print(str(exc), file=sys.stderr)
    if failed:
        print(f"{failed} of {len(files)} file(s) have errors: fix the lines above and "
              f"run '{command}' again", file=sys.stderr)
        return 2
    return 0


def compile_run(pattern: str | None, command: str) -> re.Pattern[str] | None:
    """``--run REGEX`` compiled; a bad expression says so (``re.error``, caught by callers)."""
    try:
        return re.compile(pattern) if pattern else None
    except re.error as exc:
        print(f"{command}: --run {pattern!r} is not a regular expression: {exc}",
              file=sys.stderr)
        raise


TEST_DESCRIPTION = """\
Run unit tests of audit rules, like 'promtool test rules': each test sends
subscriber-state reports (at offsets from a start time) through the unified view and
the audit exactly as a worker would, without Kafka, and at each eval_time compares the
alerts (and, if listed, the agent hints) active then with the expected ones: every
expected one must be there and nothing else ('alerts: []' asserts there is none).

  rule_files: [../audit.yaml]      # optional, relative to this file; default: packaged
  start: 2026-11-26T00:00:00Z      # optional: time 0s of every test
  lateness: 2s                     # optional: the event-time watermark's allowed lateness
  fixtures:                        # optional: reports shared by tests ('use:')
    healthy:
      - {at: 0s, system: bss, kind: activated}
      - {at: 0s, system: hss, kind: activated}
  tests:
    - name: "bss-active-hss-barred: barred for good"
      use: [healthy]
      reports:                     # kind, system and the event's own fields
        - {at: 1m, system: hss, kind: suspended, reason: fraud}
      never: []                    # optional: rules that must send nothing at all
      expect:
        - eval_time: 5m
          alerts: []               # still within the 5m grace period
        - eval_time: 7m
          alerts:
            - rule: bss-active-hss-barred
              severity: warning
              item: ""             # the item of 'each' rules (charge, product, grant id)
              starts_at: 1m        # optional
              labels: {category: status}           # optional, exact values
              annotations: {summary: "barred"}     # optional, substrings
          hints:                   # optional: agent hints active then
            - {rule: bss-active-hss-barred, script: "您好"}

Times are offsets (0s, 1m, 5m30s) from 'start' or absolute ISO times with a zone;
a report may say 'arrives: 10m' to reach the audit later than its event time.
Each failure prints as FILE: test N (name) at eval_time T: expected ..., got ...
Exit code 0 when every test passes, 1 when one fails, 2 when a file is malformed
(unknown fields, bad times, unknown rules: each named with its line).
"""


def cmd_test(args: argparse.Namespace) -> int:
    files = [str(f) for f in args.files] + ([str(p) for p in packaged_tests()]
                                           if args.packaged else [])
    if not files:
        print("foresight rules test: give test FILEs or --packaged", file=sys.stderr)
        return 2
    try:
        select = compile_run(args.run, "foresight rules test")
    except re.error:
        return 2
    malformed = failed = 0
    for path in files:
        try:
            result = run_test_file(path, select)
        except RuleError as exc:
            malformed += 1
            print(str(exc), file=sys.stderr)
            continue
        for failure in result.failures:
            print(str(failure), file=sys.stderr)
        if result.failures:
            failed += 1
            print(f"FAILED: {result.failed_tests} of {result.tests} tests in {path}",
                  file=sys.stderr)
        else:
            print(f"OK: {result.tests} tests ({result.evaluations} evaluations) in {path}")
    if malformed:
        print(f"{malformed} of {len(files)} test file(s) are malformed: fix the lines above",
              file=sys.stderr)
        return 2
    return 1 if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)  # a RuleError becomes exit code 2 in streams.cli
    print(format_table(catalog))
    return 0


def format_table(catalog: Catalog) -> str:
    """The catalog as a fixed-width table, one rule per line."""
    rows = [("ID", "FOR", "SEVERITY", "NOTIFY", "EACH", "DESCRIPTION")]
    for r in catalog.rules:
        sev = r.severity + "".join(f">{s}@{format_duration(a)}" for a, s in r.escalate)
        notify = ",".join(n for n, on in (("technician", r.technician), ("agent", r.agent)) if on)
        desc = " ".join(r.description.split())
        rows.append((r.id, format_duration(r.for_ms), sev, notify, r.each or "-",
                     desc if len(desc) <= 70 else desc[:67] + "..."))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True))
                     + "  " + row[5] for row in rows)
