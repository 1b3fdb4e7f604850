"""``foresight models ...`` (list, show, learn, features) and ``foresight evaluate models``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any, common: Any) -> None:
    p = sub.add_parser("models", help="Foresee propensity models: list, show, learn, features",
                       description="Inspect the published model versions, run the single "
                       "learner, or print the feature catalog (docs/foresee.md).")
    msub = p.add_subparsers(dest="models_cmd", required=True)
    q = msub.add_parser("list", help="every model's newest version, examples and last AUC")
    q.add_argument("--json", action="store_true")
    common(q)
    q.set_defaults(func=cmd_list)
    q = msub.add_parser("show", help="one model: version, figures, top weights")
    q.add_argument("model", help="complaint, dissatisfaction, churn or offer:<id>")
    common(q)
    q.set_defaults(func=cmd_show)
    q = msub.add_parser("learn", help="run the learner: model-examples in, versions to models")
    q.add_argument("--interval", type=float, default=2.0,
                   help="seconds between published versions (2)")
    q.add_argument("--max-seconds", type=float, help="stop after this long (tests, demos)")
    q.add_argument("--metrics-port", type=int,
                   help="serve foresight_model_* metrics on this port")
    common(q)
    q.set_defaults(func=cmd_learn)
    q = msub.add_parser("features", help="print the feature catalog (name, window, unit, meaning)")
    q.set_defaults(func=cmd_features)
    q = msub.add_parser("bench", help="scoring cost per event and pipeline cost, in process")
    q.add_argument("--subscribers", type=int, default=300)
    q.add_argument("--days", type=float, default=30.0)
    q.add_argument("--json", type=Path, help="write the figures here")
    q.set_defaults(func=cmd_bench)


def _settings(args: argparse.Namespace) -> Any:
    from streams.cli import settings_from
    return settings_from(args)


def cmd_list(args: argparse.Namespace) -> int:
    from streams.models_topic import read_models
    snaps = read_models(_settings(args))
    rows = [{"model": s.model, "version": s.version, "estimator": s.estimator,
             "examples": s.examples, "positives": s.positives, "auc": s.auc,
             "logloss": s.logloss, "published": s.created_at.isoformat()}
            for s in sorted(snaps.values(), key=lambda s: s.model)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no model version published yet (is `foresight models learn` running?)")
        return 0
    print(f"{'model':24} {'version':32} {'examples':>9} {'pos':>6} {'auc':>6}  published")
    for r in rows:
        auc = f"{r['auc']:.3f}" if r["auc"] is not None else "-"
        print(f"{r['model']:24} {r['version']:32} {r['examples']:>9} {r['positives']:>6} "
              f"{auc:>6}  {r['published']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from agents.foresee.learner import trained_from
    from streams.models_topic import read_models
    snap = read_models(_settings(args)).get(args.model)
    if snap is None:
        print(f"no published version of {args.model!r}", file=sys.stderr)
        return 1
    t = trained_from(snap)
    print(f"model      {snap.model}\nversion    {snap.version}\nestimator  {snap.estimator}\n"
          f"examples   {snap.examples} ({snap.positives} positive)\n"
          f"auc        {snap.auc}\nlogloss    {snap.logloss}\npublished  {snap.created_at}")
    est = t.estimator
    try:
        weights = est["LogisticRegression"].weights
    except (KeyError, TypeError, AttributeError):
        return 0
    print("top weights (standardised features):")
    for k, w in sorted(weights.items(), key=lambda kv: -abs(kv[1]))[:12]:
        print(f"  {k:30} {w:+.3f}")
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    from streams.cli import ensure_broker
    from streams.models_topic import run_learner
    settings = _settings(args)
    ensure_broker(settings)
    observe = None
    if args.metrics_port:
        from prometheus_client import Counter, Gauge, start_http_server
        auc = Gauge("foresight_model_auc_ratio", "progressive ROC AUC (last 5000 examples)",
                    ["model"])
        ll = Gauge("foresight_model_logloss_ratio", "progressive log loss", ["model"])
        n = Gauge("foresight_model_examples", "examples the published version learned",
                  ["model"])
        pub = Counter("foresight_model_versions_published_total", "versions published",
                      ["model"])

        def observe(snap: Any) -> None:
            if snap.auc is not None:
                auc.labels(snap.model).set(snap.auc)
            if snap.logloss is not None:
                ll.labels(snap.model).set(snap.logloss)
            n.labels(snap.model).set(snap.examples)
            pub.labels(snap.model).inc()
        start_http_server(args.metrics_port)
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # leave the group cleanly (the finally in run_learner)
    signal.signal(signal.SIGTERM, stop)
    import contextlib
    with contextlib.suppress(KeyboardInterrupt):
        run_learner(settings, interval_s=args.interval, max_seconds=args.max_seconds,
                    metrics=observe)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from agents.foresee.bench import run
    result = run(args.subscribers, args.days)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from agents.foresee.catalog import load_catalog
    cat = load_catalog()
    for f in cat.features:
        print(f"{f.name:28} {f.window:>5} {f.unit:10} {','.join(f.topics):28} {f.meaning}")
    for name, m in cat.models.items():
        print(f"model {name}: estimator {m.estimator}, horizon {m.horizon_ms // 86_400_000} d, "
              f"excludes {sorted(m.exclude) or 'nothing'}")
    return 0


def run_evaluate_models(args: argparse.Namespace) -> int:
    from agents.foresee.evaluation import evaluate, read_jsonl, simulate
    subscribers = args.subscribers if args.subscribers != 10_000 else 400
    # --days is shared with `evaluate suppression` (default 3): the models need 90
    # (churn's 30-day horizon three times) unless another number is given
    days = args.days if args.days not in (None, 3.0) else 90.0
    args.days = days
    say = lambda m: print(f"[evaluate models] {m}", file=sys.stderr, flush=True)  # noqa: E731
    if args.events:
        records = read_jsonl(str(args.events))
        subscribers = len({r[1] for r in records if r[0] != "network-kpis"}) or 1
        say(f"{len(records)} recorded events of {subscribers} subscribers from {args.events}")
    else:
        records = simulate(subscribers, args.days, args.seed, 14.0, 0.2, 0.05)
        say(f"simulated {subscribers} subscribers for {args.days:g} days: {len(records)} records")
    result = evaluate(records, subscribers=subscribers, estimator=args.estimator)
    result["source"] = str(args.events) if args.events else {
        "simulator": True, "subscribers": subscribers, "days": args.days, "seed": args.seed,
        "precursor_days": 14.0, "complaint_share": 0.2, "churn_share": 0.05}
    for name, f in result["models"].items():
        if f["examples"]:
            say(f"{name:22} auc {_f(f['auc'])} (baseline {_f(f['baseline_auc'])}) "
                f"p@{f['k']} {_f(f['precision_at_k'])} examples {f['examples']}"
                + (f" lead {_f(f.get('lead_days_median'))} d" if 'lead_days_median' in f else ""))
    missed = [t for t in result["targets"] if not t["met"]]
    for t in result["targets"]:
        say(f"{'ok  ' if t['met'] else 'MISS'} {t['target']}: {_f(t['value'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 1 if missed else 0


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"
