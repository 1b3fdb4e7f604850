"""``foresight sink sms-webhook``: Alertmanager webhook notifications -> SMS through Kannel.

Alertmanager keeps what it is good at: routes (which team), grouping, silences,
inhibition, time intervals (quiet hours) and retries. Its ``webhook_configs`` POST one
JSON notification per group (version 4: ``status``, ``receiver``, ``groupKey``,
``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``alerts[]``,
``truncatedAlerts``); this service turns each into ONE SMS (:mod:`sinks.sms_text`) per
recipient (:mod:`sinks.sms_recipients`) and hands it to Kannel's ``sendsms``
(:mod:`sinks.kannel`).

Delivery: the answer is 2xx only once Kannel accepted the SMS for every recipient; when
Kannel does not answer, or refuses, the answer is 502 and Alertmanager tries again (it
retries a webhook with back-off on 5xx, and at the next group interval after that). A
recipient Kannel already accepted is not texted again for the same notification within
``dedup_window_s``, so a retry after a partial failure reaches only those who missed it.
A notification that cannot become an SMS (not JSON, no recipients) gets 400: retrying
would not help, and Alertmanager counts it in ``alertmanager_notifications_failed_total``.

Logs name receivers, group keys, statuses and masked numbers (last four digits) only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from schemas.common import mask_msisdn
from sinks.kannel import Kannel, KannelResult
from sinks.sms_config import SmsWebhookConfig
from sinks.sms_recipients import WEBHOOK_PATH, RecipientBook, RecipientError, mask_numbers, resolve
from sinks.sms_text import Coding, build_text, info

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024  # Alertmanager's payloads are KBs; a runaway body is refused


class Gateway(Protocol):
    def send(self, to: str, text: str, coding: Coding) -> KannelResult: ...


class Metrics:
    """The webhook's own registry (served on its ``/metrics``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sent = Counter("foresight_sms_sent", "SMS Kannel accepted (one per recipient and "
                            "notification)", ["receiver", "status"], registry=r)
        self.failed = Counter("foresight_sms_failed", "SMS not handed over: reason unavailable "
                              "(Kannel did not answer or 5xx), rejected (Kannel 4xx), "
                              "no_recipients, bad_request (not a notification)",
                              ["receiver", "reason"], registry=r)
        self.segments = Counter("foresight_sms_segments", "SMS parts Kannel accepted (what the "
                                "operator bills)", ["receiver", "coding"], registry=r)
        self.duplicates = Counter("foresight_sms_duplicates", "SMS not sent again because Kannel "
                                  "accepted the same one within the dedup window (retries)",
                                  ["receiver"], registry=r)
        self.notifications = Counter("foresight_sms_notifications", "Alertmanager notifications "
                                     "received", ["receiver", "status"], registry=r)


class SmsWebhook:
    """The notification -> SMS logic, independent of the HTTP server (tested so)."""

    def __init__(self, config: SmsWebhookConfig, gateway: Gateway | None = None,
                 metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.gateway: Gateway = gateway or Kannel(
            config.kannel_url, config.username, config.password.get_secret_value(),
            config.sender, config.timeout_s)
        self.metrics = metrics or Metrics()
        self.book = RecipientBook(config.recipients_file)
        self.clock = clock
        self._accepted: dict[str, float] = {}  # dedup key -> expiry (monotonic)
        self._lock = threading.Lock()

    # --- dedup ----------------------------------------------------------------------------
    def _key(self, receiver: str, group_key: str, to: str, text: str) -> str:
        return hashlib.sha256("\0".join((receiver, group_key, to, text)).encode()).hexdigest()

    def _seen(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            for k in [k for k, exp in self._accepted.items() if exp <= now]:
                del self._accepted[k]
            return key in self._accepted

    def _remember(self, key: str) -> None:
        if self.config.dedup_window_s > 0:
            with self._lock:
                self._accepted[key] = self.clock() + self.config.dedup_window_s

    # --- one notification -----------------------------------------------------------------
    def handle(self, path: str, raw_query: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """HTTP status and JSON answer for one POSTed notification."""
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
                raise ValueError("not an Alertmanager notification (no alerts list)")
        except ValueError as exc:
            self.metrics.failed.labels("", "bad_request").inc()
            log.warning("refused a webhook call on %s: %s", path, exc)
            return 400, {"error": str(exc)[:200]}
        receiver = str(payload.get("receiver") or "")
        status = str(payload.get("status") or "firing")
        group_key = str(payload.get("groupKey") or "")
        if str(payload.get("version", "4")) != "4":
            log.warning("webhook payload version %s (expected 4): sending anyway", payload.get("version"))
        self.metrics.notifications.labels(receiver, status).inc()
        try:
            numbers, source = resolve(path, raw_query, receiver, self.book)
        except RecipientError as exc:
            self.metrics.failed.labels(receiver, "no_recipients").inc()
            log.error("receiver %s: %s", receiver, exc)
            return 400, {"error": str(exc)}

        text = build_text(payload, max_segments=self.config.max_segments, prefix=self.config.prefix)
        sms = info(text)
        sent, skipped, failed = [], [], []
        transient = False
        for to in numbers:
            key = self._key(receiver, group_key, to, text)
            if self._seen(key):
                skipped.append(to)
                self.metrics.duplicates.labels(receiver).inc()
                continue
            result = self.gateway.send(to, text, sms.coding)
            if result.accepted:
                self._remember(key)
                sent.append(to)
                self.metrics.sent.labels(receiver, status).inc()
                self.metrics.segments.labels(receiver, sms.coding).inc(sms.segments)
            else:
                failed.append(to)
                transient = transient or result.transient
                reason = "unavailable" if result.transient else "rejected"
                self.metrics.failed.labels(receiver, reason).inc()
                log.warning("receiver %s: Kannel did not accept the SMS for %s: %s %s",
                            receiver, mask_msisdn(to), result.status or "no answer",
                            mask_numbers(result.body)[:200])
        answer = {"receiver": receiver, "status": status, "coding": sms.coding,
                  "segments": sms.segments, "sent": [mask_msisdn(n) for n in sent],
                  "duplicates": [mask_msisdn(n) for n in skipped],
                  "failed": [mask_msisdn(n) for n in failed]}
        log.info("receiver %s group %s %s (%d alerts): %d-part %s SMS to %s (%s) sent %d, "
                 "already sent %d, failed %d", receiver, group_key, status,
                 len(payload["alerts"]), sms.segments, sms.coding,
                 ",".join(mask_msisdn(n) for n in numbers), source, len(sent), len(skipped),
                 len(failed))
        # 5xx on any failure: Alertmanager retries, and the dedup spares those already texted
        return (502 if failed else 200), answer


def make_server(hook: SmsWebhook, host: str, port: int) -> ThreadingHTTPServer:
    """The HTTP server: POST /alertmanager[/<list>][?to=...], GET /metrics, /-/healthy."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "foresight-sms-webhook"

        def log_message(self, format: str, *args: Any) -> None:
            # the request line may hold ?to=<numbers>: log it masked, at debug level
            log.debug("%s %s", self.address_string(), mask_numbers(format % args))

        def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(hook.metrics.registry), CONTENT_TYPE_LATEST)
            elif path in ("/-/healthy", "/-/ready", "/health"):
                self._reply(200, b"OK\n", "text/plain")
            else:
                self._reply(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            if path != WEBHOOK_PATH and not path.startswith(WEBHOOK_PATH + "/"):
                self._reply(404, b'{"error": "POST to /alertmanager"}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._reply(413 if length > MAX_BODY else 400, b'{"error": "body size"}')
                return
            status, answer = hook.handle(path, query, self.rfile.read(length))
            self._reply(status, json.dumps(answer, ensure_ascii=False).encode())

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = False  # server_close() waits for calls in flight
    return server


def run_webhook(config: SmsWebhookConfig) -> int:
    """Serve until SIGTERM/SIGINT; calls in flight finish (Kannel's timeout bounds them)."""
    hook = SmsWebhook(config)
    host, port = config.host_port
    server = make_server(hook, host, port)
    stopping = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("signal %d: stopping", signum)
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    lists = hook.book.lists()
    log.info("SMS webhook on http://%s:%d%s -> %s (user %s, %d recipient lists, at most %d "
                "parts per SMS)", host, port, WEBHOOK_PATH, config.kannel_url.split("?")[0],
                config.username or "-", len(lists), config.max_segments)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0
