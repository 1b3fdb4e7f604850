"""``foresight bench screen``: screen-pop latency and one-key view latency under load.

A fresh worker (unified-view, call-features, audit, screen-pop) pushes to a fresh screen
service (``foresight screen serve``, its own process); ``--agents`` agents listen on the
service over Server-Sent Events, like their pages. While the benchmark dataset runs at
``--background`` events/s, ``--calls`` answered hotline calls per second are produced,
spread over the agents. Pop latency is the time an agent's SSE client receives the pop
minus the answered event's Kafka CreateTime (its produce time): what the page receives,
without the browser's own rendering (``--browser`` adds one headless Chromium page for the
first agent and reports produce-to-DOM for its pops). Meanwhile the worker's
``GET /subscribers/{id}`` is queried ``--view-rate`` times per second.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from schemas.registry import CALL_EVENTS, INPUT_TOPICS
from streams.bench import dataset, kafka, procs
from streams.bench.report import percentile
from streams.bench.worker import foresight_argv, free_port, start_worker, total
from streams.settings import Settings

TOKEN = "bench-" + uuid.uuid4().hex  # this run only
STEPS = "unified-view,call-features,audit,screen-pop"


class SseAgent(threading.Thread):
    """One agent's event stream: records pop latency (receive - event_ts_ms)."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.port, self.token = port, token
        self.latencies_ms: list[float] = []
        self.others = 0
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", f"/screen/events?token={self.token}")
        resp = conn.getresponse()
        event = ""
        while not self.stop.is_set():
            try:
                line = resp.readline()
            except Exception:  # closed at the end of the run
                break
            if not line:
                break
            if line.startswith(b"event: "):
                event = line[7:].strip().decode()
                if event == "hello":
                    self.ready.set()
            elif line.startswith(b"data: ") and event == "pop":
                now = time.time() * 1000.0
                data = json.loads(line[6:])
                if data["call_id"].startswith("bench-call-"):
                    self.latencies_ms.append(now - data["event_ts_ms"])
                else:
                    self.others += 1
        conn.close()


def _answered(i: int, agent: str, sub: int) -> tuple[str, bytes, bytes]:
    sid = dataset.subscriber_id(sub)
    ev = {"event_id": f"bench-ans-{i}", "event_time": datetime.now(UTC).isoformat(),
          "subscriber_id": sid, "msisdn": dataset.msisdn(sub), "kind": "hotline_call",
          "call_id": f"bench-call-{i}", "stage": "answered", "hotline": "10010",
          "agent_id": agent}
    return CALL_EVENTS, sid.encode(), json.dumps(ev).encode()


def _view_latency(port: int, subscribers: int, rate: float, stop: threading.Event,
                  out: list[float], statuses: list[int]) -> None:
    rng = random.Random(3)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not stop.is_set():
        sid = dataset.subscriber_id(rng.randrange(max(1, subscribers // 100)))  # heavy users
        t = time.monotonic()
        conn.request("GET", f"/subscribers/{sid}", headers={"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        r.read()
        out.append((time.monotonic() - t) * 1000.0)
        statuses.append(r.status)
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - t)))
    conn.close()


def run_screen_bench(base: Settings, *, background: float, calls: float, agents: int,
                     seconds: float, subscribers: int, view_rate: float, browser: bool,
                     say: Callable[[str], None]) -> dict[str, Any]:
    tag = "fss" + uuid.uuid4().hex[:8]
    scratch = (base.home / "bench" / tag).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    settings = kafka.run_settings(base, f"{base.topic_prefix}{tag}.", base.partitions)
    kafka.create_topics(settings)
    screen_port = free_port()
    names = [f"bench-A{i:03d}" for i in range(agents)]
    tokens = {a: f"bench-token-{a}" for a in names}
    env = {"FORESIGHT_STEPS": STEPS, "FORESIGHT_SCREEN_URL": f"http://127.0.0.1:{screen_port}",
           "FORESIGHT_API_TOKEN": TOKEN}
    worker = start_worker(settings, app_id=tag, worker_id=f"{tag}-w0", home=scratch / "w0",
                          log_path=scratch / "worker.log", env_extra=env)
    svc_env = {"FORESIGHT_TOPIC_PREFIX": settings.topic_prefix, "FORESIGHT_APP_ID": tag,
               "KAFKA_BOOTSTRAP_SERVERS": settings.brokers, "FORESIGHT_API_TOKEN": TOKEN,
               "FORESIGHT_HOME": str(scratch),
               "FORESIGHT_SCREEN_AGENTS": ",".join(f"{a}={t}" for a, t in tokens.items()),
               "FORESIGHT_WORKER_URL": f"http://127.0.0.1:{worker.port}"}
    with open(scratch / "screen.log", "wb") as log:
        service = procs.spawn([*foresight_argv(), "screen", "serve", "--port", str(screen_port)],
                              env={**os.environ, **svc_env}, stdout=log,
                              stderr=subprocess.STDOUT)
    listeners = [SseAgent(screen_port, tokens[a]) for a in names]
    driver = None
    stop_views = threading.Event()
    view_ms: list[float] = []
    view_status: list[int] = []
    try:
        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{screen_port}/health", timeout=1):
                    return worker.scrape() is not None
            except OSError:
                return False
        if not kafka.wait_for(up, 120, 0.2):
            raise procs.LineFailed(f"worker or screen service did not start: {worker.log_tail()}")
        for s in listeners:
            s.start()
        if not all(s.ready.wait(10) for s in listeners):
            raise procs.LineFailed("agents could not connect to the screen service")
        if browser:
            driver = _browser(screen_port, tokens[names[0]])
        producer = kafka.bench_producer(settings, **{"linger.ms": 1})
        topics = {t: settings.topic(t) for t in INPUT_TOPICS}
        records = list(dataset.events(int(background * seconds) + 1000, subscribers))
        for topic, key, value in records[:500]:
            producer.produce(topics[topic], value, key=key)
        producer.flush(30)
        if not kafka.wait_for(lambda: total(worker.scrape() or {},
                                            "foresight_committed_records_total") >= 500, 120, 0.2):
            raise procs.LineFailed(f"warm-up not committed: {worker.log_tail()}")
        viewer = threading.Thread(target=_view_latency, args=(
            worker.port, subscribers, view_rate, stop_views, view_ms, view_status), daemon=True)
        viewer.start()
        say(f"screen: {background:,.0f} events/s background + {calls:g} answered calls/s "
            f"over {agents} agents for {seconds:.0f} s")
        rng = random.Random(11)
        start = time.monotonic()
        sent_bg = sent_calls = 0
        i = 500
        while (elapsed := time.monotonic() - start) < seconds:
            while sent_bg < int(background * elapsed):
                topic, key, value = records[i % len(records)]
                i += 1
                sent_bg += 1
                producer.produce(topics[topic], value, key=key)
            while sent_calls < int(calls * elapsed):
                topic, key, value = _answered(sent_calls, names[sent_calls % agents],
                                              rng.randrange(subscribers))
                sent_calls += 1
                producer.produce(topics[topic], value, key=key)
            producer.poll(0)
            time.sleep(0.002)
        producer.flush(30)
        kafka.wait_for(lambda: sum(len(s.latencies_ms) for s in listeners) >= sent_calls, 20, 0.1)
        stop_views.set()
        viewer.join(10)
        lat = [x for s in listeners for x in s.latencies_ms]
        series = worker.scrape() or {}
        result: dict[str, Any] = {
            "background_rate": background, "calls_rate": calls, "agents": agents,
            "seconds": seconds, "calls_sent": sent_calls, "pops_received": len(lat),
            "background_sent": sent_bg,
            "other_pops_on_bench_agents": sum(s.others for s in listeners),
            "pushes_sent": total(series, "foresight_screen_pushes_total"),
            "views": len(view_ms), "view_errors": sum(1 for s in view_status if s != 200),
        }
        if lat:
            result.update(pop_p50_ms=percentile(lat, 50), pop_p99_ms=percentile(lat, 99),
                          pop_max_ms=max(lat))
        if view_ms:
            result.update(view_p50_ms=percentile(view_ms, 50), view_p99_ms=percentile(view_ms, 99))
        if driver is not None:
            pops = driver.execute_script("return window.__pops") or []
            dom = [p["shown_ms"] - p["event_ts_ms"] for p in pops
                   if str(p["call_id"]).startswith("bench-call-")]
            result["dom_pops"] = len(dom)
            if dom:
                result.update(dom_p50_ms=percentile(dom, 50), dom_p99_ms=percentile(dom, 99))
        return result
    finally:
        stop_views.set()
        for s in listeners:
            s.stop.set()
        if driver is not None:
            driver.quit()
        procs.stop(service, grace=10.0)
        procs.stop(worker.proc, grace=20.0)
        procs.kill_all()
        kafka.cleanup_or_say(settings, tag, say)
        shutil.rmtree(scratch, ignore_errors=True)


def _browser(port: int, token: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.get(f"http://127.0.0.1:{port}/#token={token}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if driver.execute_script("return document.getElementById('agent').textContent"):
            return driver
        time.sleep(0.1)
    driver.quit()
    raise procs.LineFailed("the browser page did not sign in")


def format_screen(r: dict[str, Any]) -> str:
    def ms(k: str) -> str:
        return f"{r[k]:.0f} ms" if r.get(k) is not None else "n/a"
    lines = [
        f"screen pop at {r['calls_rate']:g} answered calls/s over {r['agents']} agents, "
        f"{r['background_rate']:,.0f} events/s background, {r['seconds']:.0f} s",
        f"  pops received {r['pops_received']}/{r['calls_sent']}: produce -> SSE client "
        f"p50 {ms('pop_p50_ms')}, p99 {ms('pop_p99_ms')}, max {ms('pop_max_ms')}",
        f"  GET /subscribers/{{id}} ({r['views']} queries, {r['view_errors']} errors): "
        f"p50 {ms('view_p50_ms')}, p99 {ms('view_p99_ms')}",
    ]
    if "dom_pops" in r:
        lines.append(f"  browser page (one agent, {r['dom_pops']} pops): produce -> DOM "
                     f"p50 {ms('dom_p50_ms')}, p99 {ms('dom_p99_ms')}")
    return "\n".join(lines)
