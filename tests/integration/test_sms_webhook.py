"""SMS to technicians, end to end, with every part real:

Kafka ``alerts`` (a transaction) -> ``foresight sink alertmanager`` -> Prometheus
Alertmanager (routes, grouping, silences) -> webhook -> ``foresight sink sms-webhook`` ->
Kannel smsbox ``sendsms`` -> bearerbox -> the fake SMSC (``fakesmsc``, Kannel's test
tool, standing in for the operator's SMSC: it prints every SMS it receives, which is what
this test reads).

Checked: a fired alert arrives as an SMS with the rule, its summary and the subscriber's
number masked; a silence made through Alertmanager's API stops one; a burst of 5 alerts
of one rule becomes ONE SMS per technician; a resolved group sends a resolved SMS where
the route says ``send_resolved: true`` and none where it does not.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.outputs import Alert
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.harness import FORESIGHT, ROOT, free_port, wait_until
from tests.integration.test_alertmanager_sink import committed, produce_in_transaction
from tests.ops_helpers import stop_processes

pytestmark = pytest.mark.integration

AM_BIN = "/usr/bin/prometheus-alertmanager"
BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
HOW = ("run `make ops-packages` (as root; installs the Debian packages prometheus-alertmanager, "
       "kannel and kannel-extras)")

SUBSCRIBER = "8613812345678"          # a subscriber's full number, leaked by a template
ONCALL = "+8613800001111"             # in the webhook URL (?to=)
NOC = ("+8613900002222", "+8613900003333")  # in the recipients file, list = receiver name
FIRE_RULE = "bss-active-hss-barred"
SILENCED_RULE = "hss-active-bss-closed"
BURST_RULE = "vas-ordered-not-provisioned"
GROUP_INTERVAL_S = 2.0

KANNEL_CONF = """\
group = core
admin-port = {admin}
admin-interface = 127.0.0.1
admin-password = {admin_password}
admin-allow-ip = "127.0.0.1"
smsbox-port = {smsbox}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "{dir}/bearerbox.log"
log-level = 1

group = smsc
smsc = fake
smsc-id = fake
port = {fake}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
log-file = "{dir}/smsbox.log"
log-level = 1

group = sendsms-user
username = foresight
password = {password}
user-allow-ip = "127.0.0.1"
concatenation = true
max-messages = 3

group = sms-service
keyword = default
text = "No service here"
"""

AM_CONF = """\
route:
  receiver: sms-oncall
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
  routes:
    - receiver: sms-noc
      matchers: ['alertname="{burst}"']
receivers:
  - name: sms-oncall
    webhook_configs:
      - url: "http://127.0.0.1:{hook}/alertmanager?to={oncall}"
        send_resolved: false
  - name: sms-noc
    webhook_configs:
      - url: "http://127.0.0.1:{hook}/alertmanager"
        send_resolved: true
"""


def _need(*paths: str) -> None:
    missing = [p for p in paths if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: {HOW}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Sms:
    """One SMS as the operator's SMSC saw it (concatenated parts put together)."""

    sender: str
    to: str
    text: str
    parts: int


def parse_fakesmsc(output: str) -> list[Sms]:
    """The MT messages fakesmsc printed, concatenated parts joined (UDH ref/total/seq).

    Lines look like ``Got message 3: <from to type [udh] data>``: ``text`` is plain,
    ``ucs-2`` URL-encoded UTF-16BE, ``udh <udh> data <bytes>`` one part of a concatenated
    SMS (UTF-16BE bytes for UCS-2, the text itself for GSM-7). The fake SMSC protocol is
    line-based and sends GSM text raw, so each newline of a GSM-7 SMS reaches fakesmsc as
    a "message" of its own (a real SMSC link carries it inside the SMS): a line that is
    not ``<digits number type ...`` continues the previous text.

    >>> parse_fakesmsc("Got message 1: <10086 +86138 text hello there>\\n"
    ...                "Got message 2: <1. second line>\\n"
    ...                "Got message 3: <10086 +86139 ucs-2 %00h%00i>")
    [Sms(sender='10086', to='+86138', text='hello there\\n1. second line', parts=1), \
Sms(sender='10086', to='+86139', text='hi', parts=1)]
    """
    out: list[Sms] = []
    pending: dict[tuple[str, int], dict[int, bytes]] = {}
    for content in re.findall(r"Got message \d+: <(.*)>$", output, re.M):
        m = re.match(r"(\d+) (\+?\d+) (text|ucs-2|udh) (.*)$", content)
        if m is None:
            if out:
                out[-1].text += "\n" + content
            continue
        sender, to, kind, rest = m.groups()
        if kind == "text":
            out.append(Sms(sender, to, rest, 1))
        elif kind == "ucs-2":
            out.append(Sms(sender, to, _bytes(rest).decode("utf-16-be"), 1))
        else:
            udh_enc, _data_kind, data = rest.split(" ", 2)
            udh = _bytes(udh_enc)
            ref, total, seq = udh[3], udh[4], udh[5]
            parts = pending.setdefault((to, ref), {})
            parts[seq] = _bytes(data)
            if len(parts) == total:
                raw = b"".join(parts[i] for i in sorted(parts))
                text = raw.decode("utf-16-be") if b"\x00" in raw else raw.decode("latin-1")
                out.append(Sms(sender, to, text, total))
                del pending[(to, ref)]
    return out


def _bytes(encoded: str) -> bytes:
    return urllib.parse.unquote_to_bytes(encoded.replace("+", " "))


@dataclass
class Kannel:
    dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    password: str = "s3cret-pw"

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['sendsms']}/cgi-bin/sendsms"

    def start(self) -> None:
        self.ports = {k: free_port() for k in ("admin", "smsbox", "fake", "sendsms")}
        conf = self.dir / "kannel.conf"
        conf.write_text(KANNEL_CONF.format(dir=self.dir, password=self.password,
                                           admin_password="adm1n", **self.ports))
        self._spawn([BEARERBOX, str(conf)], "bearerbox.out")
        wait_until(lambda: _listening(self.ports["fake"]) and _listening(self.ports["smsbox"]), 20,
                   f"bearerbox listening\n{self.tail('bearerbox.out')}")
        # the operator side: connects to bearerbox's fake SMSC port and prints every MT SMS
        self._spawn([FAKESMSC, "-H", "127.0.0.1", "-r", str(self.ports["fake"]), "-i", "1",
                     "-m", "0", "1 2 text unused"], "fakesmsc.out")
        self._spawn([SMSBOX, str(conf)], "smsbox.out")
        wait_until(self.online, 20, f"Kannel SMSC link and smsbox online\n{self.status()}")

    def _spawn(self, argv: list[str], out: str) -> None:
        with open(self.dir / out, "ab") as f:
            self.procs.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                               cwd=self.dir, start_new_session=True))

    def status(self) -> str:
        try:
            url = f"http://127.0.0.1:{self.ports['admin']}/status.txt?password=adm1n"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(bearerbox status unavailable: {exc})"

    def online(self) -> bool:
        s = self.status()
        return "fake[fake]" in s and "(online" in s and "smsbox:" in s and \
            _listening(self.ports["sendsms"])

    def tail(self, name: str) -> str:
        p = self.dir / name
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def received(self) -> list[Sms]:
        return parse_fakesmsc(self.tail_all("fakesmsc.out"))

    def tail_all(self, name: str) -> str:
        return (self.dir / name).read_text(errors="replace")

    def stop(self) -> None:
        stop_processes(self.procs, timeout=10)


def make_alert(i: int, rule: str, status: str = "firing", seq: int = 1) -> Alert:
    # starting now: Alertmanager flushes a new group at once (no group_wait) when its first
    # alert started more than group_wait ago, and the burst must show grouping, not a race
    start = datetime.now(UTC)
    # a template that leaked a full number; the first alert speaks Chinese (UCS-2)
    story = "BSS 在用, HSS 停机" if i == 1 else rule
    summary = f"{SUBSCRIBER[:-4]}{i:04d}: {story} case {i}"
    return Alert(
        fingerprint=f"{i:016x}", sequence=seq, status=status, rule_id=rule, severity="critical",
        subscriber_id=f"S{i:08d}", msisdn_masked=f"*********{i:04d}", systems=["bss", "hss"],
        labels={"category": "status", "rule": rule, "severity": "critical"},
        annotations={"summary": summary, "guidance": "Fix it.",
                     **({"resolved_summary": f"case {i} cleared"} if status == "resolved" else {})},
        starts_at=start, ends_at=datetime.now(UTC) if status == "resolved" else None,
        detected_at=start)


def _records(*alerts: Alert) -> list[tuple[bytes, bytes]]:
    return [(a.fingerprint.encode(), a.model_dump_json().encode()) for a in alerts]


def _am(url: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(f"{url}{path}", method="POST" if body is not None else "GET",
                                 data=orjson.dumps(body) if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return orjson.loads(r.read())


def _metrics(port: int) -> dict[str, float]:
    from streams.demo import scrape_metrics

    return scrape_metrics(port)


def test_alerts_become_sms_through_alertmanager_and_kannel(isolated: Settings, kannel: Kannel,
                                                           tmp_path: Path) -> None:
    _need(AM_BIN)
    started = time.monotonic()
    settings = isolated
    ensure_topics(settings)
    procs: list[subprocess.Popen] = []
    logs = {name: tmp_path / f"{name}.log" for name in ("alertmanager", "webhook", "sink")}

    def spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(logs[name], "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                 start_new_session=True)
        procs.append(p)
        return p

    def tail(name: str) -> str:
        return logs[name].read_text(errors="replace")[-3000:]

    def diagnostics() -> str:
        return "\n".join(f"--- {n} ---\n{tail(n)}" for n in logs) + \
            f"\n--- fakesmsc ---\n{kannel.tail('fakesmsc.out')}\n--- smsbox ---\n{kannel.tail('smsbox.log')}"

    try:
        # the webhook: oncall number from the URL, the NOC's from the recipients file
        hook_port = free_port()
        (tmp_path / "recipients.yml").write_text(
            "# list name = Alertmanager receiver name\n"
            f"sms-noc: [\"{NOC[0]}\", \"{NOC[1]}\"]\n")
        env = {**os.environ, "FORESIGHT_SMS_PASSWORD": kannel.password}
        spawn("webhook", [FORESIGHT, "sink", "sms-webhook", "--listen", f"127.0.0.1:{hook_port}",
                          "--kannel-url", kannel.sendsms_url, "--username", "foresight",
                          "--sender", "10086", "--recipients-file", str(tmp_path / "recipients.yml")],
              env)

        # Alertmanager: group per alertname, 1 s wait, 2 s interval
        am_port = free_port()
        am_url = f"http://127.0.0.1:{am_port}"
        (tmp_path / "am.yml").write_text(AM_CONF.format(hook=hook_port, oncall=ONCALL, burst=BURST_RULE))
        spawn("alertmanager", [AM_BIN, f"--config.file={tmp_path / 'am.yml'}",
                               f"--storage.path={tmp_path / 'am-data'}",
                               f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="])

        # the Alertmanager sink reading the alerts topic
        sink_env = {**os.environ, "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
                    "FORESIGHT_APP_ID": settings.app_id, "FORESIGHT_HOME": str(settings.home),
                    "KAFKA_BOOTSTRAP_SERVERS": settings.brokers, "FORESIGHT_LOG_LEVEL": "info"}
        spawn("sink", [FORESIGHT, "sink", "alertmanager", "--url", am_url, "--metrics-port", "0",
                       "--backoff-max", "1"], sink_env)

        def up() -> bool:
            for p in procs:
                if p.poll() is not None:
                    raise AssertionError(f"{p.args[:3]} exited with {p.returncode}\n{diagnostics()}")
            try:
                _am(am_url, "/api/v2/status")
                _metrics(hook_port)
            except OSError:
                return False
            return all(o >= 0 for o in committed(settings, f"{settings.app_id}-sink-alertmanager").values())

        wait_until(up, 60, f"webhook, Alertmanager and sink up\n{diagnostics()}")
        print(f"\nstack up in {time.monotonic() - started:.1f}s")

        def sms_to(number: str, needle: str = "") -> list[Sms]:
            return [s for s in kannel.received() if s.to == number and needle in s.text]

        # 1. an alert fired on Kafka arrives as an SMS, the subscriber's number masked
        t = time.monotonic()
        produce_in_transaction(settings, _records(make_alert(1, FIRE_RULE)))
        (sms,) = wait_until(lambda: sms_to(ONCALL), 30, f"the fired alert's SMS\n{diagnostics()}")
        fired_s = time.monotonic() - t
        assert sms.sender == "10086"
        assert f"FIRING 1 {FIRE_RULE} critical" in sms.text, sms.text
        assert "*********0001: BSS 在用, HSS 停机 case 1" in sms.text, sms.text
        assert SUBSCRIBER[:-4] not in sms.text  # no full subscriber number anywhere
        print(f"produce -> SMS at the SMSC: {fired_s:.2f}s; text {sms.text!r}")

        # 2. a silence made through Alertmanager's API: a new matching alert sends nothing
        now = datetime.now(UTC)
        silence = _am(am_url, "/api/v2/silences", {
            "matchers": [{"name": "alertname", "value": SILENCED_RULE, "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "test", "comment": "maintenance"})
        assert silence.get("silenceID")
        produce_in_transaction(settings, _records(make_alert(2, SILENCED_RULE)))

        def suppressed() -> bool:
            alerts = _am(am_url, "/api/v2/alerts?silenced=true")
            return any(a["labels"].get("alertname") == SILENCED_RULE and
                       a["status"]["state"] == "suppressed" for a in alerts)

        wait_until(suppressed, 30, f"the silenced alert in Alertmanager\n{diagnostics()}")
        silenced_at = time.monotonic()

        # 3. meanwhile a burst of 5 alerts of one rule: ONE SMS per technician
        t = time.monotonic()
        produce_in_transaction(settings, _records(*(make_alert(i, BURST_RULE) for i in range(10, 15))))
        wait_until(lambda: all(sms_to(n, "FIRING") for n in NOC), 30,
                   f"the burst's SMS to the NOC\n{diagnostics()}")
        burst_s = time.monotonic() - t
        time.sleep(2 * GROUP_INTERVAL_S + 1)  # a second notification would have come by now
        for n in NOC:
            (burst,) = sms_to(n, "FIRING")
            assert burst.text.startswith(f"Foresight FIRING 5 {BURST_RULE} critical"), burst.text
            assert all(f"*********{i:04d}: {BURST_RULE} case {i}" in burst.text for i in range(10, 15)), \
                burst.text
        print(f"burst of 5 -> one {burst.parts}-part SMS per NOC number in {burst_s:.2f}s")

        # the silenced alert has sat in Alertmanager for several group intervals: no SMS
        time.sleep(max(0.0, 3 * GROUP_INTERVAL_S - (time.monotonic() - silenced_at)))
        assert not [s for s in kannel.received() if SILENCED_RULE in s.text], kannel.received()

        # 4. resolved: the NOC route has send_resolved: true, the oncall route does not
        t = time.monotonic()
        produce_in_transaction(settings, _records(
            make_alert(1, FIRE_RULE, "resolved", 2),
            *(make_alert(i, BURST_RULE, "resolved", 2) for i in range(10, 15))))
        wait_until(lambda: all(sms_to(n, "RESOLVED") for n in NOC), 30,
                   f"the resolved SMS\n{diagnostics()}")
        resolved_s = time.monotonic() - t
        time.sleep(2 * GROUP_INTERVAL_S + 1)
        for n in NOC:
            (res,) = sms_to(n, "RESOLVED")
            assert res.text.startswith(f"Foresight RESOLVED 5 {BURST_RULE}"), res.text
            assert "case 10 cleared" in res.text
        assert len(sms_to(ONCALL)) == 1, "send_resolved: false must not text the resolution"
        print(f"resolve -> resolved SMS in {resolved_s:.2f}s")

        # everything the SMSC got, and the webhook's counters agree
        got = kannel.received()
        assert len(got) == 5, got  # 1 oncall + 2 burst + 2 resolved
        m = _metrics(hook_port)
        sent = sum(v for k, v in m.items() if k.startswith("foresight_sms_sent_total"))
        segments = sum(v for k, v in m.items() if k.startswith("foresight_sms_segments_total"))
        failed = sum(v for k, v in m.items() if k.startswith("foresight_sms_failed_total"))
        assert (sent, segments, failed) == (5, sum(s.parts for s in got), 0), m
        webhook_log = logs["webhook"].read_text(errors="replace")
        assert SUBSCRIBER[:-4] not in webhook_log and NOC[0] not in webhook_log
        print(f"SMS at the SMSC: {len(got)}, parts {segments:.0f}; "
              f"test took {time.monotonic() - started:.1f}s")
    finally:
        stop_processes(procs)
