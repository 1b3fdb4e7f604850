"""The screen service (``foresight screen serve``): agents' pages, live pops, outcomes back.

* Workers POST pops to ``/push`` (bearer ``FORESIGHT_SCREEN_TOKEN``, else
  ``FORESIGHT_API_TOKEN``) the moment the ``screen-pop`` step applies an answered call.
* Each agent's page (``/``) logs in with that agent's own token and listens on
  ``/screen/events`` (Server-Sent Events): it receives the pops of *its* calls and nothing
  else, plus the ``agent-hints`` that arrive during the call (read committed from Kafka).
* The page posts what happened (retention, offer, reminder told or dismissed) to
  ``/screen/outcomes``: the service checks the call is the agent's and produces a
  ``contact-outcomes`` event with the call id (so it becomes a label for the models and an
  input to the contact policy).
* ``/screen/subscribers/{id}`` is the one-key view for the page, fetched from the workers
  (``FORESIGHT_WORKER_URL``, which forwards to the owner).

One process serves every agent; several can run behind a load balancer only if each worker
pushes to the one holding the agent's connection (today: one service; see docs/screen.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientSession, ClientTimeout, web
from pydantic import ValidationError

from schemas.contacts import ContactResult, OfferOutcome, RetentionOutcome
from schemas.registry import AGENT_HINTS, CONTACT_OUTCOMES
from schemas.screen import ScreenPush
from streams.settings import Settings

log = logging.getLogger(__name__)

HUB: web.AppKey[Hub] = web.AppKey("hub")  # type: ignore[name-defined]
HINTS: web.AppKey[Any] = web.AppKey("hints")
PAGE = Path(__file__).with_name("screen_page.html")
#: How many calls per agent the service remembers for outcomes recorded after the call.
KEEP_CALLS = 50


def load_agents(spec: str | None) -> dict[str, str]:
    """Agent tokens: ``{token: agent_id}`` from a YAML/JSON file or inline ``A=t,B=u``.

    >>> load_agents("A001=token-one, A002=token-two")
    {'token-one': 'A001', 'token-two': 'A002'}
    """
    if not spec:
        return {}
    path = Path(spec)
    if "=" not in spec and path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        agents = data.get("agents", data)
        pairs = [(str(a), str(t)) for a, t in agents.items()]
    else:
        pairs = [tuple(p.strip().split("=", 1)) for p in spec.split(",") if p.strip()]  # type: ignore[misc]
    out = {}
    for agent, token in pairs:
        if len(token) < 8:
            raise ValueError(f"agent {agent}: token too short (8 characters at least)")
        out[token] = agent
    return out


class Hub:
    """Who listens, which call is whose, and the last pop of each agent."""

    def __init__(self) -> None:
        self.listeners: dict[str, set[asyncio.Queue[tuple[str, str]]]] = {}
        self.current: dict[str, dict[str, Any]] = {}    # agent -> current pop (JSON)
        self.calls: dict[str, OrderedDict[str, dict[str, Any]]] = {}  # agent -> calls
        self.on_call: dict[str, tuple[str, str]] = {}   # subscriber -> (agent, call)
        self.delivered = 0

    def listen(self, agent: str) -> asyncio.Queue[tuple[str, str]]:
        q: asyncio.Queue[tuple[str, str]] = asyncio.Queue(1000)
        self.listeners.setdefault(agent, set()).add(q)
        return q

    def leave(self, agent: str, q: asyncio.Queue[tuple[str, str]]) -> None:
        self.listeners.get(agent, set()).discard(q)

    def send(self, agent: str, event: str, data: dict[str, Any]) -> int:
        text = json.dumps(data, ensure_ascii=False, default=str)
        n = 0
        for q in list(self.listeners.get(agent, ())):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait((event, text))
                n += 1
        self.delivered += n
        return n

    def push(self, p: ScreenPush) -> None:
        data = p.model_dump(mode="json")
        data["received_ms"] = int(time.time() * 1000)
        if p.kind == "pop":
            self.current[p.agent_id] = data
            calls = self.calls.setdefault(p.agent_id, OrderedDict())
            calls[p.call_id] = {"subscriber_id": p.subscriber_id,
                                "msisdn": p.bundle.get("msisdn", ""), "at": time.time()}
            while len(calls) > KEEP_CALLS:
                calls.popitem(last=False)
            self.on_call[p.subscriber_id] = (p.agent_id, p.call_id)
        elif p.kind == "update":
            cur = self.current.get(p.agent_id)
            if cur is None or cur["call_id"] != p.call_id:
                return  # the call was ended or replaced on this agent's screen
            self.current[p.agent_id] = {**data, "kind": "pop"}
        elif p.kind == "ended":
            cur = self.current.get(p.agent_id)
            if cur and cur["call_id"] == p.call_id:
                self.current.pop(p.agent_id, None)
            if self.on_call.get(p.subscriber_id, ("", ""))[1] == p.call_id:
                self.on_call.pop(p.subscriber_id, None)
        self.send(p.agent_id, p.kind, data)

    def hint(self, hint: dict[str, Any]) -> None:
        """An ``agent-hints`` record: to the agent on a call with that subscriber, if any."""
        who = self.on_call.get(hint.get("subscriber_id", ""))
        if who is not None:
            self.send(who[0], "hint", {"call_id": who[1], "hint": hint})


class HintFollower(threading.Thread):
    """Reads ``agent-hints`` (read committed, from the end) and hands them to the hub."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop, hub: Hub) -> None:
        super().__init__(name="screen-hints", daemon=True)
        self.settings, self.loop, self.hub = settings, loop, hub
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        from streams.logs import client_logging
        topic = self.settings.topic(AGENT_HINTS)
        consumer = Consumer(client_logging({
            **self.settings.kafka_client_config(),
            "group.id": f"{self.settings.app_id}-screen-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "isolation.level": "read_committed",
        }))
        try:
            parts: Any = {}
            while not parts and not self.stopping.is_set():  # workers create the topic
                meta = consumer.list_topics(topic, timeout=10)
                found = meta.topics.get(topic)
                parts = found.partitions if found is not None and not found.error else {}
                if not parts:
                    self.stopping.wait(1.0)
            consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
            self.ready.set()
            while not self.stopping.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                try:
                    hint = json.loads(msg.value())
                except (TypeError, ValueError):
                    continue
                self.loop.call_soon_threadsafe(self.hub.hint, hint)
        finally:
            consumer.close()


class Outcomes:
    """Produces the page's outcomes to ``contact-outcomes`` (idempotent producer)."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        from streams.logs import client_logging
        self.topic = settings.topic(CONTACT_OUTCOMES)
        self.producer = Producer(client_logging({
            **settings.kafka_client_config(), "enable.idempotence": True,
            "partitioner": "murmur2_random", "linger.ms": 0}))

    async def send(self, key: str, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def delivered(err: Any, msg: Any) -> None:
            def settle() -> None:
                if done.done():
                    return
                if err is not None:
                    done.set_exception(RuntimeError(str(err)))
                else:
                    done.set_result(None)
            loop.call_soon_threadsafe(settle)

        self.producer.produce(self.topic, value, key.encode(), on_delivery=delivered)
        deadline = time.monotonic() + 10
        while not done.done() and time.monotonic() < deadline:
            await asyncio.to_thread(self.producer.poll, 0.05)
        await asyncio.wait_for(done, 1)

    def close(self) -> None:
        self.producer.flush(5)


def outcome_event(kind: str, body: dict[str, Any], call: dict[str, Any], agent: str,
                  call_id: str) -> Any:
    """The ``contact-outcomes`` record for one click on the page; the event id is stable
    per call and target, so a double click is the same event."""
    now = datetime.now(UTC)
    common = {"subscriber_id": call["subscriber_id"], "msisdn": call["msisdn"],
              "event_time": now, "call_id": call_id, "agent_id": agent}
    if kind == "retention":
        task = body.get("task_id") or f"retain:{call['subscriber_id']}:{call_id}"
        return RetentionOutcome(kind="retention", event_id=f"scr:{call_id}:ret", task_id=task,
                                outcome=body.get("outcome"), **common)
    if kind == "offer":
        return OfferOutcome(kind="offer", event_id=f"scr:{call_id}:off:{body.get('offer_id')}",
                            offer_id=body.get("offer_id"), decision=body.get("decision"),
                            **common)
    if kind == "reminder":
        return ContactResult(kind="contact_result",
                             event_id=f"scr:{call_id}:rem:{body.get('hint_id')}",
                             request_id=body.get("hint_id"), result=body.get("result"),
                             **common)
    raise ValueError(f"unknown outcome type {kind!r}: retention, offer or reminder")


def create_screen_app(settings: Settings, *, outcomes: Outcomes | None = None,
                      follow_hints: bool = True) -> web.Application:
    agents = load_agents(settings.screen_agents)
    push_token = (settings.screen_token or settings.api_token)
    push_secret = push_token.get_secret_value().encode() if push_token else b""
    hub = Hub()
    app = web.Application()
    app[HUB] = hub

    def agent_of(token: str | None) -> str | None:
        if not token:
            return None
        for known, agent in agents.items():
            if hmac.compare_digest(known.encode(), token.encode("utf-8", "replace")):
                return agent
        return None

    def bearer(request: web.Request) -> str | None:
        scheme, _, tok = request.headers.get("Authorization", "").partition(" ")
        return tok.strip() if scheme.lower() == "bearer" else None

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok", "agents_online": sum(
            1 for s in hub.listeners.values() if s), "delivered": hub.delivered})

    async def events(request: web.Request) -> web.StreamResponse:
        # EventSource cannot send headers: the token comes as a query parameter (HTTPS in
        # production; the page keeps it in sessionStorage, never in the address bar)
        agent = agent_of(request.query.get("token") or bearer(request))
        if agent is None:
            return web.json_response({"error": "unknown agent token"}, status=401)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q = hub.listen(agent)
        try:
            await resp.write(f"event: hello\ndata: {json.dumps({'agent_id': agent})}\n\n".encode())
            if agent in hub.current:
                cur = json.dumps(hub.current[agent], ensure_ascii=False)
                await resp.write(f"event: pop\ndata: {cur}\n\n".encode())
            while True:
                try:
                    event, text = await asyncio.wait_for(q.get(), 15)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                await resp.write(f"event: {event}\ndata: {text}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.leave(agent, q)
        return resp

    async def push(request: web.Request) -> web.StreamResponse:
        tok = bearer(request) or ""
        if not push_secret or not hmac.compare_digest(tok.encode(), push_secret):
            return web.json_response({"error": "workers push with FORESIGHT_SCREEN_TOKEN"},
                                     status=401)
        try:
            items = json.loads(await request.read())
            pushes = [ScreenPush.model_validate(i) for i in items]
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)[:500]}, status=400)
        for p in pushes:
            hub.push(p)
        return web.json_response({"accepted": len(pushes)})

    async def record(request: web.Request) -> web.StreamResponse:
        agent = agent_of(bearer(request))
        if agent is None:
            return web.json_response({"error": "unknown agent token"}, status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "JSON body expected"}, status=400)
        call_id = str(body.get("call_id", ""))
        call = hub.calls.get(agent, {}).get(call_id)
        if call is None:
            return web.json_response({"error": f"call {call_id!r} is not one of agent "
                                      f"{agent}'s calls"}, status=403)
        try:
            event = outcome_event(str(body.get("type")), body, call, agent, call_id)
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)[:500]}, status=400)
        if outcomes is None:
            return web.json_response({"error": "no Kafka producer configured"}, status=503)
        try:
            await outcomes.send(call["subscriber_id"], event.model_dump_json().encode())
        except Exception as exc:  # tell the page, keep serving
            return web.json_response({"error": f"not recorded: {exc}"}, status=503)
        return web.json_response({"recorded": event.event_id, "kind": event.kind})

    async def view(request: web.Request) -> web.StreamResponse:
        agent = agent_of(bearer(request))
        if agent is None:
            return web.json_response({"error": "unknown agent token"}, status=401)
        sid = request.match_info["subscriber_id"]
        headers = {"Authorization": f"Bearer {push_token.get_secret_value()}"} if push_token \
            else {}
        async with ClientSession(timeout=ClientTimeout(total=6)) as s, s.get(
                f"{settings.worker_url.rstrip('/')}/subscribers/{sid}", headers=headers) as r:
            return web.Response(body=await r.read(), status=r.status,
                                content_type="application/json")

    app.router.add_get("/", page)
    app.router.add_get("/health", health)
    app.router.add_get("/screen/events", events)
    app.router.add_post("/push", push)
    app.router.add_post("/screen/outcomes", record)
    app.router.add_get("/screen/subscribers/{subscriber_id}", view)

    if follow_hints:
        async def start_hints(app: web.Application) -> None:
            follower = HintFollower(settings, asyncio.get_running_loop(), hub)
            follower.start()
            app[HINTS] = follower

        async def stop_hints(app: web.Application) -> None:
            app[HINTS].stopping.set()

        app.on_startup.append(start_hints)
        app.on_cleanup.append(stop_hints)
    return app


def serve(settings: Settings, host: str = "127.0.0.1") -> None:
    """Run the screen service until interrupted (``foresight screen serve``)."""
    if not load_agents(settings.screen_agents):
        log.warning("no agents configured (FORESIGHT_SCREEN_AGENTS): nobody can log in")
    outcomes = Outcomes(settings)
    app = create_screen_app(settings, outcomes=outcomes)
    app.on_cleanup.append(lambda _app: asyncio.to_thread(outcomes.close))
    web.run_app(app, host=host, port=settings.screen_port, print=None,
                access_log=None, shutdown_timeout=2)
