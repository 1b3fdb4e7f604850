"""The SMS webhook's parts without Kannel or Alertmanager: text, segments, masking,
recipients, the notification -> SMS decision (with a fake gateway), the HTTP server and
the Kannel client (against a local stand-in)."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry

from sinks.kannel import Kannel, KannelResult
from sinks.sms_config import SmsWebhookConfig
from sinks.sms_recipients import RecipientBook, RecipientError, query_numbers, resolve
from sinks.sms_text import build_text, coding_of, info, truncate
from sinks.sms_webhook import Metrics, SmsWebhook, make_server
from streams.cli import build_parser
from tests.integration.harness import free_port

SUBSCRIBER = "8613812345678"
TECH = "+8613800001111"


def alert(i: int, summary: str | None = None, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": "bss-active-hss-barred", "severity": "critical",
                                         **labels},
            "annotations": {"summary": summary if summary is not None else f"line {i} barred",
                            **({"resolved_summary": f"line {i} ok"} if status == "resolved" else {})},
            "startsAt": "2026-11-26T01:00:00Z", "fingerprint": f"{i:016x}"}


def payload(alerts: list[dict[str, Any]], status: str = "firing", receiver: str = "sms",
            **kw: Any) -> dict[str, Any]:
    return {"version": "4", "status": status, "receiver": receiver,
            "groupKey": '{}:{alertname="bss-active-hss-barred"}',
            "groupLabels": {"alertname": "bss-active-hss-barred"},
            "commonLabels": {"alertname": "bss-active-hss-barred", "severity": "critical"},
            "commonAnnotations": {}, "alerts": alerts, **kw}


# --- segments ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "coding", "segments"), [
    ("a" * 160, "gsm7", 1), ("a" * 161, "gsm7", 2), ("a" * 306, "gsm7", 2), ("a" * 307, "gsm7", 3),
    ("a" * 459, "gsm7", 3), ("a" * 460, "gsm7", 4),
    ("告" * 70, "ucs2", 1), ("告" * 71, "ucs2", 2), ("告" * 134, "ucs2", 2), ("告" * 201, "ucs2", 3),
    ("告" * 202, "ucs2", 4),
    ("a" * 159 + "告", "ucs2", 3),  # one Chinese character makes the whole text UCS-2
    ("€" * 80, "gsm7", 1), ("€" * 81, "gsm7", 2),  # extension table: 2 septets each
    ("😀" * 35, "ucs2", 1), ("😀" * 36, "ucs2", 2),  # outside the BMP: a surrogate pair each
])
def test_segments(text: str, coding: str, segments: int) -> None:
    got = info(text)
    assert (got.coding, got.segments) == (coding, segments)


def test_escape_pairs_are_not_split_across_parts() -> None:
    # 152 plain + '[' (2 septets) does not fit 153: the '[' opens part two
    assert info("a" * 152 + "[" + "a" * 10).segments == 2
    assert info("a" * 152 + "[" + "a" * 152).segments == 3


def test_gsm_alphabet_details() -> None:
    assert coding_of("Cell 4711: drop 2.5% @east, ok? (ÄÖÜ ñ é à)") == "gsm7"
    assert coding_of("café ç") == "ucs2"  # ç is not in GSM 03.38 (only Ç)
    assert coding_of("“quotes”") == "ucs2"


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_truncate_keeps_within_n_parts_with_an_ellipsis(n: int) -> None:
    for text in ("告警" * 500, "x " * 1000, "告" + "x" * 1000):
        t = truncate(text, n)
        assert info(t).segments <= n
        assert t.endswith("…" if coding_of(t) == "ucs2" else "...")
        # and uses the room: one character more would not fit
        assert info(text[: len(t)] + "…").segments > n or len(t) >= len(text)


def test_truncate_fills_exactly_the_chinese_limits() -> None:
    assert len(truncate("告" * 500, 1)) == 70
    assert len(truncate("告" * 500, 3)) == 201
    assert len(truncate("a" * 500, 3)) == 459


# --- text ----------------------------------------------------------------------------------
def test_a_burst_is_one_text_with_count_rule_severity_and_summaries() -> None:
    text = build_text(payload([alert(i) for i in range(5)]))
    assert text.splitlines() == ["Foresight FIRING 5 bss-active-hss-barred critical",
                                 "1. line 0 barred", "2. line 1 barred", "3. line 2 barred",
                                 "4. line 3 barred", "5. line 4 barred"]


def test_many_alerts_keep_the_first_summaries_and_count_the_rest() -> None:
    text = build_text(payload([alert(i, f"subscriber line {i} barred in HSS since 01:00")
                               for i in range(50)], truncatedAlerts=20))
    assert text.startswith("Foresight FIRING 70 bss-active-hss-barred critical\n1. subscriber line 0")
    assert info(text).segments <= 3
    shown = sum(1 for line in text.splitlines() if line[:1].isdigit())
    assert text.endswith(f"(+{70 - shown} more)")
    assert shown >= 5


def test_chinese_text_respects_ucs2_limits() -> None:
    text = build_text(payload([alert(i, f"用户 {SUBSCRIBER} 在BSS在用但HSS停机,请解除停机 {i}")
                               for i in range(10)]), max_segments=2)
    assert info(text).coding == "ucs2" and info(text).segments <= 2
    assert SUBSCRIBER not in text and "*********5678" in text
    assert text.endswith("more)")


def test_one_huge_summary_is_cut_with_an_ellipsis() -> None:
    text = build_text(payload([alert(1, "告" * 500)]), max_segments=1)
    assert info(text).segments == 1 and text.endswith("…")
    assert text.startswith("Foresight FIRING 1")


def test_numbers_are_masked_defensively() -> None:
    leaky = [alert(1, f"call {SUBSCRIBER} or +{SUBSCRIBER} or 008613812345678; order 2026112601 ok")]
    text = build_text(payload(leaky, commonLabels={"alertname": f"rule {SUBSCRIBER}"}))
    assert "5678" in text and SUBSCRIBER not in text and "38123" not in text
    assert "2026112601" in text  # 10 digits: an order id, not a phone number


def test_resolved_and_mixed_notifications() -> None:
    res = build_text(payload([alert(1, status="resolved"), alert(2, status="resolved")], "resolved"))
    assert res.splitlines() == ["Foresight RESOLVED 2 bss-active-hss-barred critical",
                                "1. line 1 ok", "2. line 2 ok"]
    mixed = build_text(payload([alert(1, status="resolved"), alert(2)]))
    assert mixed.splitlines() == ["Foresight FIRING 1, resolved 1 bss-active-hss-barred critical",
                                  "1. line 2 barred", "2. OK line 1 ok"]


def test_rule_and_severity_without_common_labels() -> None:
    p = payload([alert(1, severity="warning", rule="a"), alert(2, severity="critical", rule="b")],
                commonLabels={}, groupLabels={"team": "noc"})
    assert build_text(p, prefix="").splitlines()[0] == "FIRING 2 a,b critical"


# --- recipients ----------------------------------------------------------------------------
def test_query_keeps_the_plus() -> None:
    assert query_numbers("to=+8613800001111,+8613900002222") == ["+8613800001111", "+8613900002222"]
    assert query_numbers("to=%2B8613800001111&to=8613900002222") == ["+8613800001111", "8613900002222"]
    with pytest.raises(RecipientError) as err:
        query_numbers("to=not-a-number")
    assert "not a phone number" in str(err.value)


def test_recipient_resolution_order(tmp_path: Path) -> None:
    f = tmp_path / "r.yml"
    f.write_text('sms: ["+8613800001111"]\nhss-ops: "+8613900002222, +8613900003333"\nempty: []\n')
    book = RecipientBook(f)
    assert resolve("/alertmanager", "to=+8613700000000", "sms", book) == (["+8613700000000"], "query")
    assert resolve("/alertmanager/hss-ops", "", "sms", book) == (
        ["+8613900002222", "+8613900003333"], "list hss-ops")
    assert resolve("/alertmanager", "", "sms", book) == (["+8613800001111"], "list sms")
    for path, receiver, needle in (("/alertmanager/nope", "sms", "no list 'nope'"),
                                   ("/alertmanager/empty", "sms", "is empty"),
                                   ("/alertmanager", "other", "no recipients for receiver 'other'")):
        with pytest.raises(RecipientError, match=needle):
            resolve(path, "", receiver, book)


def test_recipients_file_is_reread_and_a_broken_edit_keeps_the_old_lists(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import os

    f = tmp_path / "r.yml"
    f.write_text('sms: ["+8613800001111"]\n')
    book = RecipientBook(f)
    f.write_text('sms: ["+8613800002222"]\n')
    os.utime(f, (1, 1))
    assert book.lists() == {"sms": ["+8613800002222"]}
    f.write_text("sms: [+8613800003333]\n")  # unquoted: YAML reads an int, the + is lost
    os.utime(f, (2, 2))
    with caplog.at_level(logging.ERROR):
        assert book.lists() == {"sms": ["+8613800002222"]}
    assert "quote the numbers" in caplog.text
    with pytest.raises(RecipientError, match="quote the numbers"):
        RecipientBook(f)


# --- the webhook's decision, with a fake gateway -------------------------------------------
class FakeGateway:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.fail: dict[str, KannelResult] = {}

    def send(self, to: str, text: str, coding: str) -> KannelResult:
        self.calls.append((to, text, coding))
        return self.fail.get(to) or KannelResult(True, 202, "0: Accepted for delivery")


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def hook(tmp_path: Path | None = None, **cfg: Any) -> tuple[SmsWebhook, FakeGateway, Clock]:
    gw, clock = FakeGateway(), Clock()
    config = SmsWebhookConfig(**cfg)
    return SmsWebhook(config, gateway=gw, metrics=Metrics(CollectorRegistry()), clock=clock), gw, clock


def value(h: SmsWebhook, name: str, **labels: str) -> float:
    return h.metrics.registry.get_sample_value(name, labels) or 0.0


def body(p: dict[str, Any]) -> bytes:
    return json.dumps(p).encode()


def test_one_sms_per_recipient_and_2xx_once_kannel_accepted() -> None:
    h, gw, _ = hook()
    status, answer = h.handle("/alertmanager", "to=+8613800001111,+8613900002222",
                              body(payload([alert(i) for i in range(5)])))
    assert status == 200
    assert [c[0] for c in gw.calls] == ["+8613800001111", "+8613900002222"]
    assert gw.calls[0][1] == gw.calls[1][1] and gw.calls[0][2] == "gsm7"
    assert answer["sent"] == ["*********1111", "*********2222"]
    assert value(h, "foresight_sms_sent_total", receiver="sms", status="firing") == 2
    assert value(h, "foresight_sms_segments_total", receiver="sms", coding="gsm7") == 2


def test_kannel_failure_is_5xx_and_the_retry_texts_only_who_missed_it(
        caplog: pytest.LogCaptureFixture) -> None:
    h, gw, clock = hook(dedup_window_s=600)
    p = body(payload([alert(1)]))
    gw.fail["+8613900002222"] = KannelResult(False, 0, "URLError: Connection refused")
    with caplog.at_level(logging.INFO):
        status, answer = h.handle("/alertmanager", "to=+8613800001111,+8613900002222", p)
    assert status == 502 and answer["failed"] == ["*********2222"]
    assert value(h, "foresight_sms_failed_total", receiver="sms", reason="unavailable") == 1
    # Alertmanager retries: only the number Kannel did not take is texted
    gw.fail.clear()
    gw.calls.clear()
    status, answer = h.handle("/alertmanager", "to=+8613800001111,+8613900002222", p)
    assert status == 200 and [c[0] for c in gw.calls] == ["+8613900002222"]
    assert answer["duplicates"] == ["*********1111"]
    assert value(h, "foresight_sms_duplicates_total", receiver="sms") == 1
    # after the window (a repeat_interval reminder) everyone is texted again
    clock.t += 601
    gw.calls.clear()
    assert h.handle("/alertmanager", "to=+8613800001111,+8613900002222", p)[0] == 200
    assert len(gw.calls) == 2
    assert "8613800001111" not in caplog.text and "8613900002222" not in caplog.text
    assert "*********2222" in caplog.text


def test_kannel_refusal_is_5xx_too_and_counted_as_rejected() -> None:
    h, gw, _ = hook()
    gw.fail[TECH] = KannelResult(False, 403, "Authorization failed for sendsms")
    status, _ = h.handle("/alertmanager", f"to={TECH}", body(payload([alert(1)])))
    assert status == 502
    assert value(h, "foresight_sms_failed_total", receiver="sms", reason="rejected") == 1


def test_what_cannot_become_an_sms_is_400() -> None:
    h, gw, _ = hook()
    assert h.handle("/alertmanager", f"to={TECH}", b"{nope")[0] == 400
    assert h.handle("/alertmanager", f"to={TECH}", b'{"status": "firing"}')[0] == 400
    status, answer = h.handle("/alertmanager", "", body(payload([alert(1)], receiver="nobody")))
    assert status == 400 and "nobody" in answer["error"]
    assert gw.calls == []
    assert value(h, "foresight_sms_failed_total", receiver="nobody", reason="no_recipients") == 1
    assert value(h, "foresight_sms_failed_total", receiver="", reason="bad_request") == 2


def test_max_segments_is_configurable() -> None:
    h, gw, _ = hook(max_segments=1)
    h.handle("/alertmanager", f"to={TECH}", body(payload([alert(i, "告警" * 20) for i in range(9)])))
    (_, text, coding), = gw.calls
    assert coding == "ucs2" and info(text).segments == 1
    assert value(h, "foresight_sms_segments_total", receiver="sms", coding="ucs2") == 1


# --- HTTP server and Kannel client ---------------------------------------------------------
@pytest.fixture
def server() -> Iterator[tuple[str, SmsWebhook, FakeGateway]]:
    h, gw, _ = hook()
    port = free_port()
    srv = make_server(h, "127.0.0.1", port)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{port}", h, gw
    finally:
        srv.shutdown()
        srv.server_close()


def _post(url: str, data: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_http_server(server: tuple[str, SmsWebhook, FakeGateway]) -> None:
    url, _h, gw = server
    # a literal + in the query, as Alertmanager sends the configured URL
    status, answer = _post(f"{url}/alertmanager?to=+8613800001111", body(payload([alert(1)])))
    assert (status, answer["sent"]) == (200, ["*********1111"])
    assert gw.calls[0][0] == "+8613800001111"
    assert _post(f"{url}/other", body(payload([alert(1)])))[0] == 404
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'foresight_sms_sent_total{receiver="sms",status="firing"} 1.0' in text
    with urllib.request.urlopen(f"{url}/-/healthy", timeout=5) as r:
        assert r.status == 200


class KannelStandIn(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []
    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        query = self.path.partition("?")[2]
        KannelStandIn.seen.append(urllib.parse.parse_qs(query))
        status, text = KannelStandIn.answers.pop(0) if KannelStandIn.answers else (202, b"0: Accepted")
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args: Any) -> None:
        pass


def test_kannel_client() -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), KannelStandIn)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        k = Kannel(f"http://127.0.0.1:{srv.server_port}", "foresight", "p&w", "10086", timeout_s=5)
        KannelStandIn.answers = [(202, b"0: Accepted for delivery"), (403, b"Authorization failed"),
                                 (503, b"busy")]
        ok = k.send("+8613800001111", "告警 a+b", "ucs2")
        assert ok == KannelResult(True, 202, "0: Accepted for delivery")
        q = KannelStandIn.seen[0]
        assert q["to"] == ["+8613800001111"] and q["text"] == ["告警 a+b"] and q["password"] == ["p&w"]
        assert q["coding"] == ["2"] and q["charset"] == ["UTF-8"] and q["from"] == ["10086"]
        refused = k.send(TECH, "x", "gsm7")
        assert (refused.accepted, refused.status, refused.transient) == (False, 403, False)
        assert KannelStandIn.seen[1]["coding"] == ["0"]
        busy = k.send(TECH, "x", "gsm7")
        assert (busy.accepted, busy.transient) == (False, True)
    finally:
        srv.shutdown()
        srv.server_close()
    down = Kannel(f"http://127.0.0.1:{free_port()}", "u", "p", timeout_s=2).send(TECH, "x", "gsm7")
    assert (down.accepted, down.status, down.transient) == (False, 0, True)


def test_cli_registers_the_webhook() -> None:
    args = build_parser().parse_args(["sink", "sms-webhook", "--listen", "0.0.0.0:9097",
                                      "--kannel-url", "http://smsbox:13013", "--username", "u",
                                      "--max-segments", "2", "--recipients-file", "/etc/r.yml"])
    assert (args.listen, args.max_segments, args.func.__name__) == ("0.0.0.0:9097", 2, "cmd_sms_webhook")


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORESIGHT_SMS_PASSWORD", "secret")
    monkeypatch.setenv("FORESIGHT_SMS_MAX_SEGMENTS", "4")
    c = SmsWebhookConfig()
    assert c.password.get_secret_value() == "secret" and c.max_segments == 4
    assert "secret" not in repr(c)
    with pytest.raises(ValueError, match="host:port"):
        SmsWebhookConfig(listen="9097x")


def test_compose_service_and_alertmanager_receiver_fit_together() -> None:
    """docker/compose.yaml's sms-webhook parses with the CLI, publishes nothing, mounts the
    recipients file that exists and parses; Alertmanager's `sms` receiver posts to it."""
    import yaml

    from sinks.sms_recipients import parse_book
    from tests.ops_helpers import ALERTMANAGER_CONFIG, DOCKER, load_compose

    svc = load_compose()["services"]["sms-webhook"]
    args = build_parser().parse_args(svc["command"])
    assert args.func.__name__ == "cmd_sms_webhook" and args.listen == "0.0.0.0:9097"
    assert "ports" not in svc
    (mount,) = svc["volumes"]
    source, target = mount.split(":")[:2]
    assert target == args.recipients_file
    book = parse_book(yaml.safe_load((DOCKER / source).read_text(encoding="utf-8")))
    assert "sms" in book
    am = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    (hook,) = {r["name"]: r for r in am["receivers"]}["sms"]["webhook_configs"]
    parts = urllib.parse.urlsplit(hook["url"])
    assert (parts.hostname, parts.port, parts.path) == ("sms-webhook", 9097, "/alertmanager")
    assert hook["send_resolved"] is True
