"""``foresight rules check`` and ``foresight rules list``: the audit catalog's own tools.

Like ``promtool check rules``: an operator edits ``agents/rules/audit.yaml`` (or a copy),
runs ``foresight rules check FILE`` and gets either ``OK: N rules in FILE`` or every problem
as ``FILE:LINE: what is wrong`` (exit code 2), before any worker loads it.
``streams.cli`` discovers this module and calls :func:`register`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agents.audit.catalog import Catalog, load_catalog
from agents.audit.durations import format_duration
from streams.errors import RuleError

EPILOG = """\
examples:
  foresight rules check agents/rules/audit.yaml
  foresight rules check my-rules.yaml other-rules.yaml
  foresight rules list
  foresight rules list --catalog my-rules.yaml
"""


def register(sub: Any, common: Any) -> None:
    """Add ``rules check`` and ``rules list`` to the ``foresight`` parser."""
    p = sub.add_parser("rules", help="check or list audit rule catalogs",
                       description="Validate audit rule files (YAML shaped like Prometheus "
                       "alerting rules) and list the rules of a catalog. See docs/audit.md.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="rules_action", required=True, metavar="ACTION")
    c = actions.add_parser("check", help="validate rule files (exit code 2 on errors)",
                           description="Load every FILE as the audit would: YAML, fields, "
                           "durations, expressions, placeholders. Prints 'OK: N rules in "
                           "FILE' or each problem as FILE:LINE: message.")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=cmd_check)
    ls = actions.add_parser("list", help="print a catalog's rules as a table",
                            description="Print id, grace period, severity, notify, each and "
                            "description of every rule (default: the packaged catalog).")
    ls.add_argument("--catalog", metavar="FILE", help="rules file (default: the packaged "
                    "agents/rules/audit.yaml)")
    ls.set_defaults(func=cmd_list)


def cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            catalog = load_catalog(path)
        except RuleError as exc:
            failed += 1
            print(str(exc), file=sys.stderr)
            continue
        print(f"OK: {len(catalog.rules)} rules in {path}")
    if failed:
        print(f"{failed} of {len(args.files)} file(s) have errors: fix the lines above and "
              "run 'foresight rules check' again", file=sys.stderr)
        return 2
    return 0


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
