"""``foresight demo``: the whole thing on this machine, for a bounded time, then tidy up.

Starts the embedded Kafka (unless one is configured or already running), a worker and the
simulator on fresh topics, prints a live summary every few seconds (events in per topic,
dead letters, outputs per topic, commits, latency), waits for the worker to catch up,
checks the counts against what the simulator produced, and stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any

from schemas.registry import INPUT_TOPICS, OUTPUT_TOPICS

FORESIGHT = str(Path(sys.executable).parent / "foresight")


def register(sub: Any, common: Any) -> None:
    p = sub.add_parser(
        "demo", help="run Kafka + worker + simulator for a while with a live summary",
        description="Start the embedded Apache Kafka (or use KAFKA_BOOTSTRAP_SERVERS), a "
        "worker and the simulator on fresh topics; print a live summary; stop everything "
        "it started when the time is up (or on Ctrl-C).")
    p.add_argument("--duration", type=float, default=120.0,
                   help="seconds the simulator produces (default 120)")
    p.add_argument("--rate", type=float, default=3000.0,
                   help="simulated events per second (default 3000)")
    p.add_argument("--subscribers", type=int, default=20000, help="simulated subscribers")
    p.add_argument("--speed", default="auto",
                   help="simulated seconds per wall second, or 'auto' to reach --rate (default)")
    p.add_argument("--every", type=float, default=5.0, help="seconds between summaries")
    p.add_argument("--keep", action="store_true", help="keep the demo's topics afterwards")
    common(p)
    p.set_defaults(func=run_demo)


def scrape_metrics(port: int) -> dict[str, float]:
    """A local worker's ``/metrics`` as ``{'name{labels}': value}`` (the demo and the tests)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _sum(m: dict[str, float], name: str, label: str = "") -> float:
    return sum(v for k, v in m.items() if (k == name or k.startswith(name + "{")) and label in k)


def _quantile(m: dict[str, float], name: str, q: float,
              before: dict[str, float] | None = None) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` (since ``before`` if given)."""
    prev = before or {}
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), v - prev.get(k, 0.0))
        for k, v in m.items() if k.startswith(name + "_bucket{") and 'le="+Inf"' not in k)
    count = m.get(name + "_count", 0.0) - prev.get(name + "_count", 0.0)
    if not count:
        return None
    for le, v in buckets:
        if v >= q * count:
            return le
    return float("inf")


def _topic(name: str) -> str:
    return f'topic="{name}"'


def summary(m: dict[str, float], elapsed: float, before: dict[str, float] | None = None) -> str:
    """A few lines a person can read at a glance; latency is over the last interval."""
    lines = [f"--- {elapsed:6.0f}s ---"]
    ins = "  ".join(f"{t}={_sum(m, 'foresight_packer_records_total', _topic(t)):.0f}"
                    for t in INPUT_TOPICS)
    lines.append(f"in:   {ins}")
    dead = _sum(m, "foresight_dead_letters_total")
    lines.append(f"ok:   {_sum(m, 'foresight_input_events_total'):.0f} valid events, "
                 f"{dead:.0f} dead letters, {_sum(m, 'foresight_duplicate_records_total'):.0f} "
                 f"redeliveries skipped")
    outs = "  ".join(f"{t}={_sum(m, 'foresight_output_records_total', _topic(t)):.0f}"
                     for t in OUTPUT_TOPICS)
    lines.append(f"out:  {outs}")
    p50 = _quantile(m, "foresight_processing_latency_seconds", 0.5, before)
    p99 = _quantile(m, "foresight_processing_latency_seconds", 0.99, before)
    upd = _sum(m, "foresight_state_updates_total")
    cl = _sum(m, "foresight_changelog_records_total")
    lines.append(
        f"work: {_sum(m, 'foresight_commits_total'):.0f} commits, "
        f"{_sum(m, 'foresight_committed_records_total'):.0f} records committed, state updates "
        f"{upd:.0f} -> changelog writes {cl:.0f}, latency p50<={p50 or 0:.3f}s p99<={p99 or 0:.3f}s")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    from streams.cli import ensure_broker, settings_from
    from streams.kafka_local import LocalKafka
    from streams.simulator.runner import future_allowance_s, resolve_speed

    stamp = time.strftime("%Y%m%d%H%M%S")
    base = settings_from(args)
    settings = base.model_copy(update={
        "topic_prefix": base.topic_prefix or f"demo-{stamp}.", "app_id": f"demo-{stamp}"})
    home = Path(settings.home).resolve()
    run_dir = home / "demo" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    started_kafka = ensure_broker(settings)
    port = _free_port()
    env = {**os.environ, "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
           "FORESIGHT_APP_ID": settings.app_id, "FORESIGHT_HOME": str(home),
           "FORESIGHT_PARTITIONS": str(settings.partitions), "FORESIGHT_WEB_PORT": str(port),
           "FORESIGHT_WORKER_ID": f"demo-{stamp}", "KAFKA_BOOTSTRAP_SERVERS": settings.brokers}
    # the simulated clock runs ahead of the wall clock: the demo's worker accepts its events
    speed = resolve_speed(args.speed, args.rate, args.subscribers)
    allowance = future_allowance_s(speed, args.duration)
    if allowance is not None:
        env["FORESIGHT_EVENT_TIME_MAX_FUTURE_S"] = str(allowance)
    procs: list[subprocess.Popen] = []
    screen_url, agent_url = _screen_env(env, settings.steps)
    print(f"demo: topics prefixed {settings.topic_prefix!r}, logs in {run_dir}", file=sys.stderr)
    try:
        worker = _spawn([FORESIGHT, "worker"], env, run_dir / "worker.log")
        procs.append(worker)
        _wait_ready(worker, port, run_dir / "worker.log")
        procs.append(_spawn([FORESIGHT, "screen", "serve", "--port", screen_url.rsplit(":", 1)[1]],
                            {**env, "FORESIGHT_WORKER_URL": f"http://127.0.0.1:{port}"},
                            run_dir / "screen.log"))
        print(f"demo: agent screen for agent A0001 (simulated calls pop there): {agent_url}",
              file=sys.stderr)
        from sinks.alertmanager_local import alert_count, start_alertmanager_and_sink
        from sinks.prometheus_local import start_prometheus

        sink_port = _free_port()
        am_procs, am_url = start_alertmanager_and_sink(run_dir, env, _free_port(), port,
                                                       run_dir / "sink.log", sink_port)
        procs.extend(am_procs)
        if am_url:
            print(f"demo: alerts go to Alertmanager, UI at {am_url} while the demo runs",
                  file=sys.stderr)
        prom_procs, prom_url = start_prometheus(run_dir, _free_port(), port,
                                                sink_port if am_url else None, am_url)
        procs.extend(prom_procs)
        if prom_url:
            print(f"demo: Prometheus scrapes the worker{' and the sink' if am_url else ''}, "
                  f"UI at {prom_url} (try foresight_input_events_total)", file=sys.stderr)
        truth = run_dir / "truth.jsonl"
        sim = _spawn([FORESIGHT, "simulate", "--rate", str(args.rate), "--duration",
                      str(args.duration), "--subscribers", str(args.subscribers), "--speed",
                      str(args.speed), "--truth", str(truth)], env, run_dir / "simulator.log")
        procs.append(sim)
        t0 = time.monotonic()
        last = 0.0
        before: dict[str, float] = {}
        while sim.poll() is None:
            time.sleep(0.5)
            if time.monotonic() - last >= args.every:
                last = time.monotonic()
                now = scrape_metrics(port)
                print(summary(now, last - t0, before), flush=True)
                before = now
        if sim.returncode != 0:
            print(f"demo: the simulator failed; see {run_dir / 'simulator.log'}", file=sys.stderr)
            return 1
        produced = _produced(run_dir / "simulator.log")
        print(f"demo: simulator done ({produced or '?'} records); waiting for the worker to "
              "catch up ...", file=sys.stderr)
        deadline = time.monotonic() + 120
        m = scrape_metrics(port)
        while time.monotonic() < deadline:
            m = scrape_metrics(port)
            done = _sum(m, "foresight_committed_records_total")
            if produced and done >= produced:
                break
            time.sleep(1.0)
        print(summary(m, time.monotonic() - t0))
        done = _sum(m, "foresight_committed_records_total")
        ok = produced is not None and done == produced
        print(f"demo: {'OK' if ok else 'INCOMPLETE'}: {done:.0f} of {produced} produced records "
              f"processed and committed; ground truth in {truth}")
        if am_url:
            print(f"demo: Alertmanager UI {am_url} ({alert_count(am_url)} active alerts; it "
                  "stops with the demo)")
        print(f"demo: agent screen {agent_url} (agent A0001; it stops with the demo)")
        if prom_url:
            print(f"demo: Prometheus UI {prom_url}/graph (worker and sink metrics, Foresight's "
                  "own alerting rules; it stops with the demo; --keep leaves the run folder)")
        return 0 if ok else 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if not args.keep:
            delete_run(settings)
        if started_kafka:
            LocalKafka.from_settings(settings).stop()
            print("demo: stopped the Kafka broker it started", file=sys.stderr)


def _screen_env(env: dict[str, str], steps: str) -> tuple[str, str]:
    """Run the screen-pop step and point it at a screen service with a demo agent (the
    simulator's agents are A0001..A0300); return the service URL and the agent's page URL
    (the token rides in the fragment, which the browser never sends)."""
    import secrets

    port = _free_port()
    token = env.get("FORESIGHT_SCREEN_TOKEN") or env.get("FORESIGHT_API_TOKEN") or \
        secrets.token_urlsafe(16)
    agent_token = f"demo-A0001-{secrets.token_urlsafe(8)}"
    names = [n.strip() for n in steps.split(",") if n.strip()]
    own_agents = env.get("FORESIGHT_SCREEN_AGENTS")
    env.update({
        "FORESIGHT_STEPS": ",".join([*names, "screen-pop"] if "screen-pop" not in names else names),
        "FORESIGHT_SCREEN_URL": f"http://127.0.0.1:{port}", "FORESIGHT_SCREEN_TOKEN": token,
        "FORESIGHT_API_TOKEN": env.get("FORESIGHT_API_TOKEN") or token,
        "FORESIGHT_SCREEN_AGENTS": own_agents or f"A0001={agent_token}",
    })
    page = f"http://127.0.0.1:{port}/"
    return page.rstrip("/"), page if own_agents else f"{page}#token={agent_token}"


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(worker: subprocess.Popen, port: int, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"demo: the worker exited early; see {log}")
        with suppress(OSError):
            scrape_metrics(port)
            return
        time.sleep(0.3)
    raise SystemExit(f"demo: the worker did not start within {timeout:.0f}s; see {log}")


def _produced(log: Path) -> int | None:
    """The simulator's final count (its last line says 'produced N records')."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if "produced" in line:
            for word in line.replace(",", "").split():
                if word.isdigit():
                    return int(word)
    return None


def delete_run(settings: Any, who: str = "demo") -> None:
    """Delete the run's topics (its prefix) and consumer groups (its app id and the
    packer's), so a shared broker is left as it was."""
    from streams.topics import delete_groups, delete_topics

    def say(msg: str) -> None:
        print(f"{who}: {msg}", file=sys.stderr)

    prefix, app = settings.topic_prefix, settings.app_id
    if not prefix or not app:
        raise ValueError("refusing to delete a run without its own topic prefix and app id")
    delete_topics(settings, lambda t: t.startswith(prefix), say)
    delete_groups(settings, lambda g: g == app or g.startswith(app + "-"), say,
                  wait_s=settings.session_timeout_s + 5)
