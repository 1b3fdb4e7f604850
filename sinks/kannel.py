"""Kannel's HTTP ``sendsms`` interface (smsbox), the operator's SMS gateway.

One GET per recipient: ``/cgi-bin/sendsms?username&password&from&to&text&charset=UTF-8
&coding=0|2``. ``coding=2`` asks for UCS-2 (Chinese), ``coding=0`` for the GSM 7-bit
alphabet; the text is always UTF-8 on the wire. Kannel splits a long text into a
concatenated SMS itself when its ``sendsms-user`` has ``concatenation = true`` and
``max-messages`` at least the webhook's ``--max-segments`` (docs/sms.md).

Kannel answers 202 once it took the message (``0: Accepted for delivery``, or
``3: Queued for later delivery`` when the SMSC link is down and bearerbox stores it);
those count as accepted. Everything else (refused login, 4xx, 5xx, no answer) is not.

>>> sendsms_url("http://smsbox:13013"), sendsms_url("http://smsbox:13013/cgi-bin/sendsms")
('http://smsbox:13013/cgi-bin/sendsms', 'http://smsbox:13013/cgi-bin/sendsms')
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from sinks.sms_text import Coding

SENDSMS_PATH = "/cgi-bin/sendsms"


def sendsms_url(url: str) -> str:
    """The sendsms endpoint: a bare ``http://host:port`` gets Kannel's standard path."""
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path=SENDSMS_PATH))
    return url


@dataclass(frozen=True)
class KannelResult:
    """What Kannel said: ``accepted`` only for a 2xx; ``status`` 0 means no answer."""

    accepted: bool
    status: int
    body: str

    @property
    def transient(self) -> bool:
        """No answer or 5xx/503 (smsbox restarting, bearerbox gone): worth retrying."""
        return self.status == 0 or self.status >= 500


@dataclass(frozen=True)
class Kannel:
    url: str
    username: str
    password: str
    sender: str = ""
    timeout_s: float = 10.0

    def query(self, to: str, text: str, coding: Coding) -> str:
        """The query string of one sendsms request (has the password: never logged).

        >>> Kannel("http://k", "u", "p", "10086").query("+8613800001111", "告警 a&b", "ucs2")
        'username=u&password=p&to=%2B8613800001111&text=%E5%91%8A%E8%AD%A6%20a%26b&charset=UTF-8&coding=2&from=10086'
        """
        params = {"username": self.username, "password": self.password, "to": to, "text": text,
                  "charset": "UTF-8", "coding": "2" if coding == "ucs2" else "0"}
        if self.sender:
            params["from"] = self.sender
        return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)

    def send(self, to: str, text: str, coding: Coding) -> KannelResult:
        """Hand one SMS to Kannel; never raises for network or HTTP errors."""
        url = f"{sendsms_url(self.url)}?{self.query(to, text, coding)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as r:  # noqa: S310 (http by config)
                body = r.read(2000).decode("utf-8", "replace").strip()
                return KannelResult(200 <= r.status < 300, r.status, body)
        except urllib.error.HTTPError as exc:
            body = exc.read(2000).decode("utf-8", "replace").strip() if exc.fp else ""
            return KannelResult(False, exc.code, body)
        except (OSError, ValueError) as exc:  # refused, reset, timeout, bad URL
            return KannelResult(False, 0, f"{type(exc).__name__}: {exc}")
