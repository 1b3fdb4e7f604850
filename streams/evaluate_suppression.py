"""``foresight evaluate suppression``: the contact policy scored against the simulator's truth.

The simulator (pure, seeded) generates an operator's stream with its ground truth; the
stream is replayed **in-process** through the same pure steps the worker runs (unified
view and audit, driven with timers like the runtime by
:class:`agents.audit.testing.AuditHarness`, then ``contact-policy``): no Kafka, so the
figures measure the policy, not the transport (the worker's path is covered by the
integration tests). With ``--policy NEW.yaml`` the very same recorded stream (one list
of records, in memory) is replayed once per policy and the decisions are compared per
request id.

Scored, per policy:

* **protected marketing stopped**: marketing requests the truth marks ``suppress``
  (seed users, recent complainers, do-not-disturb, open audit faults) that the policy
  suppressed. Target 100%.
* **service wrongly suppressed**: service requests the policy suppressed. Target 0. The
  truth's expected ``allow`` marketing requests (high-star seed users through their account
  manager) suppressed are reported beside them, as are every decision's reason counts.
* **disturbance reduction**: marketing contacts reaching seed users with the policy versus
  without one (every request allowed), set beside seed 000's -91% (45k -> 4.1k calls a
  month).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEED_REDUCTION = 0.91        # seed 000: ~45k -> ~4.1k calls a month
SEED_CALLS = (45_000, 4_100)
START = "2026-11-02T00:00:00+08:00"
CONTACT_TOPICS = ("complaints", "contact-requests", "contact-outcomes", "do-not-disturb")


@dataclass
class Figures:
    """What one policy did to the recorded stream."""

    policy: str
    source: str
    requests: int = 0
    duplicates: int = 0
    decisions: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_primary: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def register_args(p: argparse.ArgumentParser) -> None:
    """Options of ``evaluate suppression`` (added to the ``evaluate`` parser)."""
    p.add_argument("--policy", type=Path, metavar="NEW.yaml",
                   help="suppression: also replay the same stream through this policy and "
                   "compare it with the live one (FORESIGHT_CONTACT_POLICY or the packaged)")
    p.add_argument("--days", type=float, default=3.0,
                   help="suppression: simulated days replayed (3)")


def simulate(subscribers: int, seed: int, days: float) -> tuple[list[tuple[str, bytes]],
                                                                   list[dict[str, Any]]]:
    """The recorded stream (topic, value) the steps need, and the truth records."""
    from streams.simulator.config import SimConfig
    from streams.simulator.simulation import Simulation
    from streams.simulator.truthlog import TruthLog

    start = int(datetime.fromisoformat(START).timestamp() * 1000)
    truth = TruthLog(keep=True)
    sim = Simulation(SimConfig(seed=seed, subscribers=subscribers, start_ms=start), truth)
    wanted = {"subscriber-state", *CONTACT_TOPICS}
    records: list[tuple[str, bytes]] = []
    counts: Counter[str] = Counter()
    for batch in (*sim.bootstrap(), *sim.run(until_ms=start + int(days * 86_400_000))):
        for topic, _key, value, _ts in batch:
            counts[topic] += 1
            if topic in wanted:
                records.append((topic, value))
    sim.finish(dict(counts))
    return records, truth.records


def replay(records: list[tuple[str, bytes]], policy: Any, name: str) -> Figures:
    """Feed the stream through view + audit (with timers) + contact-policy, in order."""
    from pydantic import ValidationError

    from agents.audit.testing import AuditHarness
    from agents.contact.step import ContactPolicy
    from agents.core import EventContext
    from schemas.registry import SUBSCRIBER_STATE, decode

    began = time.perf_counter()
    harness = AuditHarness()
    step = ContactPolicy(policy, reads=("unified-view", "audit"))
    states: dict[str, Any] = {}
    fig = Figures(name, policy.source)
    now = datetime.now(UTC)
    for topic, value in records:
        try:
            event = decode(topic, value)
        except (ValidationError, ValueError):
            continue                    # the worker dead-letters these
        if topic == SUBSCRIBER_STATE:
            harness.send(event)
            continue
        sid = event.subscriber_id
        t = int(event.event_time.timestamp() * 1000)
        harness.advance_to(t)
        reads = {"unified-view": harness.views.get(sid), "audit": harness.states.get(sid)}
        ctx = EventContext(topic, 0, 0, t, now, event_ms=t)
        result = step.apply(states.get(sid), event, ctx, reads)
        if result.changed:
            states[sid] = result.state
        if topic == "contact-requests":
            if not result.outputs:
                fig.duplicates += 1
                continue
            fig.requests += 1
            d = result.outputs[0].value
            fig.decisions[d.request_id] = (d.decision, list(d.reasons))
            fig.by_primary[d.reasons[0] if d.reasons else "none"] += 1
            fig.by_reason.update(d.reasons)
    fig.seconds = time.perf_counter() - began
    return fig


def score(fig: Figures, records: list[tuple[str, bytes]],
          truth: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures and targets of one policy (see the module docstring)."""
    import orjson

    requests = {}
    for topic, value in records:
        if topic == "contact-requests":
            try:
                r = orjson.loads(value)
                requests[r["request_id"]] = r
            except (ValueError, KeyError, TypeError):
                continue
    protected = [t for t in truth if t.get("type") == "protected_contact"]
    must_stop = [t for t in protected if t["expected"] == "suppress"]
    must_pass = [t for t in protected if t["expected"] == "allow"]
    stopped = [t for t in must_stop if fig.decisions.get(t["request_id"], ("?",))[0] == "suppress"]
    missed = [t for t in must_stop if t not in stopped]
    wrongly = [t for t in must_pass if fig.decisions.get(t["request_id"], ("?",))[0] == "suppress"]
    service = [rid for rid, r in requests.items() if r.get("purpose") == "service"
               and rid in fig.decisions]
    service_suppressed = [rid for rid in service if fig.decisions[rid][0] == "suppress"]
    service_reasons: Counter[str] = Counter(
        reason for rid in service_suppressed for reason in fig.decisions[rid][1])
    by_truth_reason = {}
    for reason in ("seed_user", "recent_complaint", "do_not_disturb", "open_fault"):
        cases = [t for t in must_stop if reason in t["reasons"]]
        hit = [t for t in cases if t in stopped]
        by_truth_reason[reason] = {"cases": len(cases), "stopped": len(hit),
                                   "share": round(len(hit) / len(cases), 4) if cases else None}
    seed_marketing = [t["request_id"] for t in protected
                      if t["purpose"] == "marketing" and "seed_user" in t["reasons"]
                      and t["request_id"] in fig.decisions]
    seed_allowed = [rid for rid in seed_marketing if fig.decisions[rid][0] == "allow"]
    reduction = 1 - len(seed_allowed) / len(seed_marketing) if seed_marketing else None
    marketing = [rid for rid, r in requests.items() if r.get("purpose") == "marketing"
                 and rid in fig.decisions]
    stop_share = len(stopped) / len(must_stop) if must_stop else None
    return {
        "policy": fig.policy, "source": fig.source, "requests": fig.requests,
        "redelivered_requests_ignored": fig.duplicates,
        "replay_seconds": round(fig.seconds, 2),
        "protected_marketing": {"cases": len(must_stop), "stopped": len(stopped),
                                "share": round(stop_share, 4) if stop_share is not None else None,
                                "target": 1.0, "by_truth_reason": by_truth_reason,
                                "missed": [{"request_id": t["request_id"],
                                            "reasons": t["reasons"],
                                            "decided": fig.decisions.get(t["request_id"])}
                                           for t in missed[:20]]},
        "service_wrongly_suppressed": {"service_requests": len(service),
                                       "suppressed": len(service_suppressed), "target": 0,
                                       "by_reason": dict(service_reasons)},
        "exempt_marketing_wrongly_suppressed": {"cases": len(must_pass),
                                                "suppressed": len(wrongly)},
        "seed_disturbance": {
            "marketing_requests_to_seed_users": len(seed_marketing),
            "allowed_with_policy": len(seed_allowed),
            "reduction": round(reduction, 4) if reduction is not None else None,
            "seed_000_reduction": -SEED_REDUCTION,
            "seed_000_calls_per_month": {"before": SEED_CALLS[0], "after": SEED_CALLS[1]}},
        "marketing": {"requests": len(marketing),
                      "suppressed": sum(1 for rid in marketing
                                        if fig.decisions[rid][0] == "suppress")},
        "reasons": dict(fig.by_reason.most_common()),
        "primary_reasons": dict(fig.by_primary.most_common()),
        "targets_met": {
            "protected_marketing_stopped_100pct": bool(must_stop) and not missed,
            "service_wrongly_suppressed_0": not service_suppressed,
        },
    }


def compare(a: Figures, b: Figures) -> dict[str, Any]:
    """Per request id: where the two policies decided differently."""
    changed: Counter[str] = Counter()
    examples = []
    for rid, (decision, reasons) in a.decisions.items():
        other = b.decisions.get(rid)
        if other is None:
            continue
        if other[0] != decision:
            changed[f"{decision}->{other[0]}"] += 1
            if len(examples) < 10:
                examples.append({"request_id": rid, a.policy: [decision, reasons],
                                 b.policy: list(other)})
        elif other[1] != reasons:
            changed["same decision, other reasons"] += 1
    return {"requests": len(a.decisions), "disagreements": sum(
        n for k, n in changed.items() if "->" in k), "changes": dict(changed),
        "examples": examples}


def run_suppression(args: argparse.Namespace) -> int:
    from agents.contact.policy import load_policy
    from streams.settings import Settings

    say = lambda msg: print(f"[evaluate] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    settings = Settings()
    live = load_policy(settings.contact_policy)
    policies = [("live", live)]
    if args.policy is not None:
        policies.append(("new", load_policy(args.policy)))
    say(f"simulating {args.subscribers} subscribers for {args.days} days (seed {args.seed})")
    began = time.perf_counter()
    records, truth = simulate(args.subscribers, args.seed, args.days)
    say(f"{len(records)} records in {time.perf_counter() - began:.1f}s; replaying in-process "
        "through unified-view, audit and contact-policy")
    figures = [replay(records, p, name) for name, p in policies]
    report: dict[str, Any] = {
        "what": "suppression", "mode": "in-process replay of the simulated stream through "
        "the pure steps (no Kafka)", "subscribers": args.subscribers, "days": args.days,
        "seed": args.seed, "records": len(records),
        "policies": {f.policy: score(f, records, truth) for f in figures}}
    if len(figures) == 2:
        report["comparison"] = compare(figures[0], figures[1])
    ok = all(all(p["targets_met"].values()) for p in report["policies"].values())
    report["targets_met"] = ok
    for name, p in report["policies"].items():
        pm, sw, sd = p["protected_marketing"], p["service_wrongly_suppressed"], p["seed_disturbance"]
        print(f"{name} ({p['source']}): {p['requests']} requests "
              f"({p['redelivered_requests_ignored']} redelivered, ignored)")
        print(f"  protected marketing stopped  {pm['stopped']}/{pm['cases']} "
              f"({(pm['share'] or 0) * 100:.1f}%, target 100%)")
        for reason, r in pm["by_truth_reason"].items():
            print(f"    {reason:<18} {r['stopped']}/{r['cases']}")
        print(f"  service wrongly suppressed   {sw['suppressed']}/{sw['service_requests']} "
              f"(target 0) {sw['by_reason'] or ''}")
        ex = p["exempt_marketing_wrongly_suppressed"]
        print(f"  exempt marketing suppressed  {ex['suppressed']}/{ex['cases']} "
              "(high-star seed users through the account manager)")
        red = sd["reduction"]
        print(f"  seed-user marketing          {sd['marketing_requests_to_seed_users']} -> "
              f"{sd['allowed_with_policy']} ({'-' if red is None else f'-{red * 100:.1f}%'}; "
              f"seed 000: -91%)")
        print(f"  reasons                      {p['reasons']}")
    if "comparison" in report:
        c = report["comparison"]
        print(f"live vs new: {c['disagreements']} of {c['requests']} decisions differ "
              f"{c['changes']}")
    print("targets " + ("met" if ok else "MISSED"))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0 if ok else 1
