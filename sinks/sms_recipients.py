"""Who gets the SMS of a notification: technicians' numbers per Alertmanager receiver.

Routing (which team, quiet hours, who is on call) stays in Alertmanager's own route tree:
each SMS receiver there points its ``webhook_configs`` URL at this service and says whom
to text, in one of three ways, first match wins:

1. the URL's query: ``/alertmanager?to=+8613800000001,+8613800000002`` (``+`` is kept as
   a plus, not read as a space; ``%2B`` works too);
2. the URL's path names a phone list of the recipients file: ``/alertmanager/hss-ops``;
3. the notification's ``receiver`` (the Alertmanager receiver name) names a list there.

The recipients file is YAML, list name -> numbers, re-read when it changes, so a team's
phone list is edited without restarting anything::

    sms: ["+8613800000001"]
    hss-ops: ["+8613800000002", "+8613800000003"]

Numbers are technicians' (configuration, not subscriber data), yet logs still show only
their last four digits: logs travel further than configuration does.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from schemas.common import mask_msisdn

log = logging.getLogger(__name__)

#: an E.164-ish number: optional +, 5 to 15 digits (short codes of the operator included)
NUMBER = re.compile(r"^\+?[0-9]{5,15}$")
WEBHOOK_PATH = "/alertmanager"


class RecipientError(ValueError):
    """The notification names no usable recipient (a configuration problem: retrying
    does not help, so the webhook answers 400)."""


def normalise(number: str) -> str:
    """A dialable number: spaces, dashes, dots and brackets dropped, ``00`` -> ``+``.

    >>> normalise(" +86 138-0000-1111 "), normalise("008613800001111"), normalise("(010) 1234 5678")
    ('+8613800001111', '+8613800001111', '01012345678')
    >>> normalise("call me")
    Traceback (most recent call last):
    ...
    sinks.sms_recipients.RecipientError: not a phone number: 'call me'
    """
    n = re.sub(r"[\s\-.()]", "", number)
    if n.startswith("00"):
        n = "+" + n[2:]
    if not NUMBER.match(n):
        # the value may be a mistyped full number: never echo it unmasked
        raise RecipientError(f"not a phone number: {mask_numbers(number)!r}")
    return n


def mask_numbers(text: str) -> str:
    """``text`` with every run of 5+ digits cut to its last four (for logs and errors).

    >>> mask_numbers("+8613800001111,+8613900002222")
    '*********1111,*********2222'
    """
    return re.sub(r"\+?[0-9]{5,}", lambda m: mask_msisdn(m.group(0)), text)


def split_numbers(value: str) -> list[str]:
    """Numbers from a comma/semicolon/space separated list, normalised, duplicates dropped.

    >>> split_numbers("+8613800001111, +8613900002222;+8613800001111")
    ['+8613800001111', '+8613900002222']
    """
    out: list[str] = []
    for part in re.split(r"[,;]", value):
        if part.strip():
            n = normalise(part)
            if n not in out:
                out.append(n)
    return out


def query_numbers(raw_query: str) -> list[str]:
    """The ``to`` numbers of a raw query string, a literal ``+`` kept as a plus.

    ``urllib.parse.parse_qs`` would turn ``to=+86...`` into a space: operators write
    numbers into Alertmanager's config as they dial them.

    >>> query_numbers("to=+8613800001111,%2B8613900002222&x=1")
    ['+8613800001111', '+8613900002222']
    >>> query_numbers("x=1")
    []
    """
    out: list[str] = []
    for pair in raw_query.split("&"):
        key, _, value = pair.partition("=")
        if urllib.parse.unquote(key) == "to":
            out.extend(n for n in split_numbers(urllib.parse.unquote(value)) if n not in out)
    return out


def parse_book(data: Any) -> dict[str, list[str]]:
    """Validate a loaded recipients file: mapping of name -> list (or comma string) of
    quoted numbers.

    >>> parse_book({"sms": ["+8613800001111"], "noc": "+8613900002222, +8613900003333"})
    {'sms': ['+8613800001111'], 'noc': ['+8613900002222', '+8613900003333']}
    >>> parse_book({"sms": [8613800001111]})
    Traceback (most recent call last):
    ...
    sinks.sms_recipients.RecipientError: recipients file, list 'sms': quote the numbers ("+86...": \
YAML reads an unquoted +86... as an integer and drops the +)
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipientError("recipients file: expected a mapping of list name -> numbers")
    book: dict[str, list[str]] = {}
    for name, value in data.items():
        values = value if isinstance(value, list) else [value]
        if any(not isinstance(v, str) for v in values):
            raise RecipientError(f"recipients file, list {name!r}: quote the numbers (\"+86...\": "
                                 "YAML reads an unquoted +86... as an integer and drops the +)")
        numbers: list[str] = []
        for v in values:
            numbers.extend(n for n in split_numbers(v) if n not in numbers)
        book[str(name)] = numbers
    return book


@dataclass
class RecipientBook:
    """The recipients file, re-read when its modification time changes.

    A file that became invalid keeps the last good lists in force (and logs why), so a
    typo does not silence every team.
    """

    path: Path | None
    _lists: dict[str, list[str]] | None = None
    _mtime: float | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        if self.path is not None:
            self._lists = parse_book(yaml.safe_load(self.path.read_text(encoding="utf-8")))
            self._mtime = self.path.stat().st_mtime

    def lists(self) -> dict[str, list[str]]:
        if self.path is None:
            return {}
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
                if mtime != self._mtime:
                    self._lists = parse_book(yaml.safe_load(self.path.read_text(encoding="utf-8")))
                    self._mtime = mtime
                    log.info("recipients file %s re-read: %d lists", self.path, len(self._lists))
            except (OSError, yaml.YAMLError, RecipientError) as exc:
                log.error("recipients file %s unusable, keeping the previous lists: %s",
                          self.path, mask_numbers(str(exc)))
            return dict(self._lists or {})


def resolve(path: str, raw_query: str, receiver: str, book: RecipientBook) -> tuple[list[str], str]:
    """The numbers to text for a notification, and where they came from (for logs).

    >>> book = RecipientBook(None)
    >>> resolve("/alertmanager", "to=+8613800001111", "sms", book)
    (['+8613800001111'], 'query')
    >>> resolve("/alertmanager", "", "sms", book)
    Traceback (most recent call last):
    ...
    sinks.sms_recipients.RecipientError: no recipients for receiver 'sms': give ?to=... in the \
webhook URL or a list 'sms' in the recipients file
    """
    numbers = query_numbers(raw_query)
    if numbers:
        return numbers, "query"
    lists = book.lists()
    rest = path[len(WEBHOOK_PATH):].strip("/") if path.startswith(WEBHOOK_PATH) else ""
    if rest:
        name = urllib.parse.unquote(rest)
        if name not in lists:
            raise RecipientError(f"no list {name!r} in the recipients file (webhook path {path!r})")
        if not lists[name]:
            raise RecipientError(f"list {name!r} of the recipients file is empty")
        return lists[name], f"list {name}"
    if lists.get(receiver):
        return lists[receiver], f"list {receiver}"
    raise RecipientError(f"no recipients for receiver {receiver!r}: give ?to=... in the webhook URL "
                         f"or a list {receiver!r} in the recipients file")
