"""The worker's side of the agent screen: push pops at once, serve the one-key view.

**Push.** The ``screen-pop`` step is pure: it returns its pops as outputs addressed to the
pseudo-topic ``screen-push``. :class:`LivePush` wraps it, takes those out of the result
(the committer never sees them) and hands them to a :class:`Pusher`, a thread that POSTs
them to the screen service (``FORESIGHT_SCREEN_URL``/push) while the worker goes on. So a
pop leaves the worker as soon as the answered call is applied, not after the next
transaction commits: the floor of a Kafka output (~250 ms p50 today) does not apply.
The price: a pop may be pushed again (a batch redone after a crash or a rebalance), which
the page treats as the same call (it keys by call id), and a pop whose batch is later
aborted was shown anyway, which is right: the call was answered.

**View.** :func:`subscriber_view` is ``GET /subscribers/{id}``: the worker that owns the
subscriber's partition answers from its tables (the same bundle function as the pop);
another worker forwards the request to the owner (Faust's router: the partition
assignment it shares with the group), and while a rebalance moves the partition the
request is retried until the new owner answers or ``deadline_s`` passes.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from agents.core import EventContext, Result, State
from schemas.common import mask_msisdn, mask_name
from schemas.screen import SCREEN_PUSH, ScreenPush

log = logging.getLogger(__name__)


class LivePush:
    """A screen step whose pushes leave at once (see the module docstring)."""

    def __init__(self, step: Any, send: Callable[[list[ScreenPush]], None]) -> None:
        self.step = step
        self.name = step.name
        self.topics = step.topics
        self.reads = step.reads
        self.send = send

    def key_of(self, event: Any) -> str | None:
        return self.step.key_of(event)

    def apply(self, state: State | None, event: Any, ctx: EventContext,
              reads: Mapping[str, State | None]) -> Result:
        result = self.step.apply(state, event, ctx, reads)
        if result.outputs:
            pushes = [o.value for o in result.outputs if o.topic == SCREEN_PUSH]
            if pushes:
                result.outputs = [o for o in result.outputs if o.topic != SCREEN_PUSH]
                self.send(pushes)  # type: ignore[arg-type]
        return result


class Pusher:
    """Sends pushes to the screen service from a thread, batching what queued meanwhile.

    Never blocks the worker: the queue is bounded and a push that finds it full is dropped
    and counted (a pop late by seconds is of no use to an agent anyway). Errors are logged
    once per ``log_every_s`` and counted; the connection is re-opened on the next batch.
    """

    def __init__(self, url: str | None, token: str | None, registry: CollectorRegistry | None,
                 *, max_queue: int = 10_000, log_every_s: float = 30.0) -> None:
        self.url = urllib.parse.urlsplit(url) if url else None
        self.token = token
        self.q: queue.Queue[ScreenPush] = queue.Queue(max_queue)
        self.log_every_s = log_every_s
        self._logged = 0.0
        self._conn: http.client.HTTPConnection | None = None
        kw: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.pushes = Counter("foresight_screen_pushes_total",
                              "Screen pushes by result (sent, failed, dropped, disabled)",
                              ["result"], **kw)
        self.seconds = Histogram("foresight_screen_push_seconds",
                                 "Time to POST one batch of pushes to the screen service",
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, 1), **kw)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def send(self, pushes: list[ScreenPush]) -> None:
        if self.url is None:
            self.pushes.labels("disabled").inc(len(pushes))
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="screen-push", daemon=True)
            self._thread.start()
        for p in pushes:
            try:
                self.q.put_nowait(p)
            except queue.Full:
                self.pushes.labels("dropped").inc()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.q.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < 500:
                try:
                    batch.append(self.q.get_nowait())
                except queue.Empty:
                    break
            body = ("[" + ",".join(p.model_dump_json() for p in batch) + "]").encode()
            started = time.monotonic()
            try:
                self._post(body)
                self.pushes.labels("sent").inc(len(batch))
            except Exception as exc:  # any failure: count, log, go on
                self._conn = None
                self.pushes.labels("failed").inc(len(batch))
                now = time.monotonic()
                if now - self._logged >= self.log_every_s:
                    self._logged = now
                    log.warning("screen service %s did not take %d pushes: %s "
                                "(logged once per %.0fs while it lasts)",
                                self.url.geturl() if self.url else "", len(batch), exc,
                                self.log_every_s)
            self.seconds.observe(time.monotonic() - started)

    def _post(self, body: bytes) -> None:
        assert self.url is not None
        for attempt in (0, 1):  # a kept-alive connection the server closed: one reconnect
            if self._conn is None:
                cls = (http.client.HTTPSConnection if self.url.scheme == "https"
                       else http.client.HTTPConnection)
                self._conn = cls(self.url.hostname or "127.0.0.1", self.url.port, timeout=5)
            headers = {"Content-Type": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                self._conn.request("POST", self.url.path.rstrip("/") + "/push", body, headers)
                resp = self._conn.getresponse()
                resp.read()
            except (http.client.HTTPException, OSError):
                self._conn = None
                if attempt:
                    raise
                continue
            if resp.status >= 300:
                raise RuntimeError(f"HTTP {resp.status}")
            return


def masked_view(view: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The unified view with the number and the name masked (no agent is on a call here)."""
    if view is None:
        return None
    out = dict(view)
    if out.get("msisdn"):
        out["msisdn"] = mask_msisdn(out["msisdn"])
    prof = dict(out.get("profile", {}))
    if isinstance(prof.get("name"), dict) and prof["name"].get("v"):
        prof["name"] = {**prof["name"], "v": mask_name(prof["name"]["v"])}
    out["profile"] = prof
    return out


def open_episodes(audit: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every audit episode of the subscriber, pending or firing (for technicians too)."""
    out = []
    for key, ep in (audit or {}).get("episodes", {}).items():
        rule, _, item = key.partition("|")
        out.append({"rule": rule, "item": item, "since_ms": ep.get("since"),
                    "state": "firing" if "fired_at" in ep else "pending",
                    "severity": ep.get("severity")})
    return out


def partition_of(key: str, partitions: int) -> int:
    """The partition the producers' murmur2 partitioner (Java's, librdkafka's
    ``murmur2_random``) puts ``key`` in.

    >>> partition_of("S00000001", 12)
    10
    """
    from aiokafka.partitioner import murmur2
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


#: Header a forwarded view request carries: the owner answers or says 503, never forwards.
HOP = "X-Foresight-Forwarded"


async def subscriber_view(app: Any, unit: Any, steps: list[Any], request: Any,
                          subscriber_id: str, *, deadline_s: float = 5.0) -> Any:
    """``GET /subscribers/{id}`` on a worker (see the module docstring)."""
    from aiohttp import web

    settings = app.settings
    p = partition_of(subscriber_id, settings.partitions)
    from streams.topics import PACKED
    packed = settings.topic(PACKED)
    from streams.topics import changelog_topic
    changelog = changelog_topic(settings, steps[0].name)
    forwarded = request.headers.get(HOP)
    started = time.monotonic()
    delay = 0.05
    last_error = "rebalancing"
    while True:
        mine = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == packed}
        if p in mine and not app.rebalancing:
            body = _view_body(app, unit, steps, subscriber_id, p)
            return web.json_response(body, dumps=_dumps,
                                     headers={"X-Foresight-Worker": app.worker_id})
        if forwarded:
            return web.json_response({"error": f"partition {p} is not assigned here"},
                                     status=503)
        owner = None
        for url, topics in app.assignor.table_metadata(changelog).items():
            if p in topics.get(changelog, ()):
                owner = url
        if owner and owner.rstrip("/") != str(app.conf.canonical_url).rstrip("/"):
            try:
                async with app.http_client.get(
                        owner.rstrip("/") + request.path_qs,
                        headers={"Authorization": request.headers.get("Authorization", ""),
                                 HOP: "1"}, timeout=_timeout(2.0)) as resp:
                    text = await resp.read()
                    if resp.status != 503:
                        return web.Response(body=text, status=resp.status,
                                            content_type="application/json",
                                            headers={"X-Foresight-Worker":
                                                     resp.headers.get("X-Foresight-Worker", "")})
                    last_error = f"owner {owner} is taking partition {p} over"
            except Exception as exc:  # the owner left: ask again after a pause
                last_error = f"owner {owner} did not answer: {exc}"
        if time.monotonic() - started + delay > deadline_s:
            return web.json_response({"error": f"no worker answers for partition {p}: "
                                      f"{last_error}"}, status=503,
                                     headers={"Retry-After": "1"})
        import asyncio
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


def _timeout(s: float) -> Any:
    import aiohttp
    return aiohttp.ClientTimeout(total=s)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def _view_body(app: Any, unit: Any, steps: list[Any], sid: str, p: int) -> dict[str, Any]:
    from agents.call_features import window
    from agents.screen.bundle import INPUTS, build_bundle
    from agents.screen.step import ScreenPop

    states = {name: unit.tables[name].get(p, sid) for name in unit.tables}
    screen = next((s.step for s in steps if isinstance(s, LivePush)), None)
    if screen is None:
        screen = ScreenPop([n for n in INPUTS if n in states],
                           next((s.catalog for s in steps if s.name == "audit"), None))
    now_ms = int(time.time() * 1000)
    own = states.get("screen-pop")
    features = states.get("call-features")
    audit = states.get("audit")
    foresee = states.get("foresee")
    return {
        "subscriber_id": sid,
        "partition": p,
        "served_by": app.worker_id,
        "found": any(v is not None for v in states.values()),
        "unified_view": masked_view(states.get("unified-view")),
        "call_features": ({"30d": window(features, now_ms, 30), "7d": window(features, now_ms, 7),
                           "last_hotline_ms": features.get("last_hotline_ms")}
                          if features else None),
        "open_episodes": open_episodes(audit),
        "scores": (foresee or {}).get("scores") if "foresee" in states else None,
        "recent_contacts": {"complaints": (own or {}).get("complaints", []),
                            "online": (own or {}).get("online", [])},
        "bundle": build_bundle(sid, states, own, now_ms, available=screen.available,
                               catalog=screen.catalog, offer_gate=screen.offer_gate,
                               offers=screen.offers, full=False),
    }
