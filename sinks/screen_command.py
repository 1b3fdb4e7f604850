"""``foresight screen serve``: the agents' screen service (see :mod:`sinks.screen`)."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Serve the agent page on http://HOST:PORT/ and push screen pops to it. Workers send pops
here (set FORESIGHT_SCREEN_URL=http://HOST:PORT on them, and the same FORESIGHT_SCREEN_TOKEN
or FORESIGHT_API_TOKEN on both); each agent signs in with its own token
(FORESIGHT_SCREEN_AGENTS: a YAML file 'agents: {A001: token}' or inline 'A001=token,...')
and receives only its own calls' pops, plus the agent-hints that arrive during the call.
Outcomes recorded on the page go to contact-outcomes. See docs/screen.md."""

EXAMPLES = """\
examples:
  FORESIGHT_SCREEN_AGENTS='A001=demo-token-a001' FORESIGHT_API_TOKEN=secret foresight screen serve
  foresight screen serve --port 6070 --agents agents.yaml
"""


def register(sub: Any, common: Any) -> None:
    p = sub.add_parser("screen", help="the agents' screen service (screen pops, outcomes)",
                       description="The contact-center agents' screen.")
    kinds = p.add_subparsers(dest="screen", required=True, metavar="ACTION")
    s = kinds.add_parser("serve", help="serve agent pages and push pops to them",
                         description=DESCRIPTION, epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    common(s)
    s.add_argument("--port", type=int, help="FORESIGHT_SCREEN_PORT (default 6070)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--agents", help="agent tokens file or inline list (FORESIGHT_SCREEN_AGENTS)")
    s.add_argument("--worker-url", help="a worker for one-key views (FORESIGHT_WORKER_URL)")
    s.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from sinks.screen import serve
    from streams.cli import ensure_broker, settings_from
    from streams.logs import configure

    settings = settings_from(args, screen_port=args.port, screen_agents=args.agents,
                             worker_url=args.worker_url)
    configure(settings, "screen")
    ensure_broker(settings)
    serve(settings, args.host)
    return 0
