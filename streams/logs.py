"""Logs an operator can read: one line per problem per minute, plain text or JSON, no
escape codes in files, no personal data.

While the broker is away, aiokafka logs an ERROR on every reconnect attempt and every failed
fetch (over a thousand lines in 30 s, measured), librdkafka does the same on stderr, and
the lines that matter drown. :class:`RepeatFilter` lets the first record of each kind
through and then one per interval, saying how many it held back; :class:`Throttle` does
the same for our own warnings. Records are grouped by logger, level and message template
(not the formatted text), so a message with a changing number is still one kind.

Every Foresight process (the worker, its packer child, every CLI command) logs through
:func:`handler`: one line per record on stderr, as text or as one JSON object per line
(``FORESIGHT_LOG_FORMAT``), with :class:`MaskFilter` hiding phone numbers and personal
fields. The worker hands the same handler to Faust's worker (mode), whose default
formatter decides on colour from *stdout* while writing to *stderr*, so a worker started
from a terminal with its stderr in a file wrote ANSI colour codes into the file.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import IO, Any, Literal

#: Loggers whose repeated records are throttled (the clients' connection chatter).
CHATTY = ("aiokafka", "faust.transport", "kafka.librdkafka")


class Throttle:
    """Allows one event per key per ``interval_s``; counts the ones it held back.

    >>> t = Throttle(60.0, clock=iter([0.0, 1.0, 61.0]).__next__)
    >>> t.allow("x"), t.allow("x"), t.allow("x"), t.suppressed("x")
    (True, False, True, 0)
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}
        self.released = 0  # held-back count of the last allowed event

    def allow(self, key: Hashable) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        self.released = self._held.pop(key, 0)
        return True

    def suppressed(self, key: Hashable) -> int:
        return self._held.get(key, 0)


class RepeatFilter(logging.Filter):
    """A logging filter: the first record of a kind passes, then one per ``interval_s``.

    Applied to the handlers, so it sees every logger's records; only loggers under
    ``prefixes`` are throttled (our own code logs state changes, not per-poll noise).
    """

    def __init__(self, interval_s: float = 60.0, prefixes: tuple[str, ...] = CHATTY) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.throttle = Throttle(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg)[:200])
        if not self.throttle.allow(key):
            return False
        held = self.throttle.released
        if held:
            record.msg = f"{record.msg} ({held} similar messages in the last minute suppressed)"
        return True


def install(interval_s: float = 60.0) -> RepeatFilter:
    """Put one :class:`RepeatFilter` on every handler of the root logger (after the logging
    set-up, which Faust's worker does itself)."""
    flt = RepeatFilter(interval_s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    return flt


def librdkafka_logger() -> logging.Logger:
    """The logger librdkafka's own messages go to (``logger=`` of confluent-kafka clients),
    so they are throttled and formatted like everything else instead of written raw to
    stderr."""
    return logging.getLogger("kafka.librdkafka")


def client_logging(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` with librdkafka's messages routed to :func:`librdkafka_logger`."""
    return {**conf, "logger": librdkafka_logger()}


# --- formats -------------------------------------------------------------------------------
LogFormat = Literal["text", "json"]

#: ANSI/VT100 escape sequences: colours (``ESC [ ... m``), cursor moves, and the character
#: set switches (``ESC ( 0``) that box-drawing tables use.
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences.

    >>> strip_ansi("\x1b[31mred\x1b[0m and \x1b(0qq\x1b(B")
    'red and qq'
    """
    return ANSI.sub("", text)


def iso_utc(created: float) -> str:
    """A record's time as ISO 8601 in UTC with milliseconds: sortable, zone explicit.

    >>> iso_utc(0.5)
    '1970-01-01T00:00:00.500Z'
    """
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TextFormatter(logging.Formatter):
    """``2026-11-30T10:00:00.123Z WARNING worker streams.packer: message``.

    No colour, and escape codes that came inside a message (Faust draws its tables with
    the terminal's line-drawing set when *stdout* is a terminal) are removed: a log file
    or a journal is not a terminal, whatever stdout is.
    """

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{iso_utc(record.created)} {record.levelname} {self.component} "
                f"{record.name}: {record.getMessage()}")
        extra = _exception_text(self, record)
        return strip_ansi(f"{line}\n{extra}" if extra else line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers (Loki, Elasticsearch, journald's JSON
    export) index without a parsing rule, multi-line tracebacks included.

    >>> f = JsonFormatter("worker", "w1")
    >>> r = logging.LogRecord("streams.x", logging.WARNING, __file__, 1, "lag %d", (5,), None)
    >>> r.created = 0.0
    >>> f.format(r)
    '{"time": "1970-01-01T00:00:00.000Z", "level": "WARNING", "logger": "streams.x", \
"message": "lag 5", "worker": "w1", "component": "worker"}'
    """

    def __init__(self, component: str, worker: str) -> None:
        super().__init__()
        self.component = component
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": strip_ansi(record.getMessage()),
            "worker": self.worker,
            "component": self.component,
        }
        exc = _exception_text(self, record)
        if exc:
            doc["exception"] = strip_ansi(exc)
        return json.dumps(doc, ensure_ascii=False, default=str)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The traceback and stack of ``record`` (cached on it like the stdlib does)."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    parts = [p for p in (record.exc_text, record.stack_info and
                         formatter.formatStack(record.stack_info)) if p]
    return "\n".join(parts)


# --- personal data -------------------------------------------------------------------------
#: A bare run of 11-15 digits, optionally after ``+``: a full phone number (MSISDN; an
#: IMSI or IMEI too), whatever the text around it.
PHONE = re.compile(r"(?<![0-9])\+?[0-9]{11,15}(?![0-9])")
#: Fields that hold personal data in Foresight's events (``msisdn``) or in an operator's
#: systems, in any ``key=value``, ``key: value``, ``"key": "value"`` or ``'key': 'value'``
#: spelling. Not ``address``: Kafka clients log broker addresses, which operators need.
PERSONAL_FIELDS = ("msisdn", "phone", "phone_number", "imsi", "imei", "email",
                   "customer_name", "id_number", "id_card")
#: ``name`` is personal in ``profile_changed`` events but also the name of every Faust
#: agent, table and topic: only its quoted (JSON or dict repr) spelling is masked.
_FIELD = re.compile(
    r"""(?P<key>(?P<kq>["']?)\b(?:"""
    + "|".join(PERSONAL_FIELDS)
    + r""")(?P=kq)\s*[:=]\s*|(?P<nq>["'])name(?P=nq)\s*:\s*)"""
    r"""(?:(?P<q>["'])(?P<quoted>(?:\\.|(?!(?P=q)).)*)(?P=q)|(?P<bare>[^\s,;)}\]]+))""",
    re.IGNORECASE)


def mask_value(value: str) -> str:
    """Hide a personal value: digits keep their last four (an operator can still match a
    complaint to a line), anything else keeps its first character.

    >>> mask_value("+8613812345678"), mask_value("张三丰"), mask_value("a@b.cn")
    ('*********5678', '张**', 'a*****')
    """
    compact = value.lstrip("+")
    if compact.isdigit():
        return "*" * max(len(compact) - 4, 0) + compact[-4:] if len(compact) > 4 \
            else "*" * len(compact)
    return value[:1] + "*" * max(len(value) - 1, 0)


def mask(text: str) -> str:
    """``text`` with personal fields' values and full phone numbers masked.

    >>> mask('bad event {"msisdn": "8613800001234", "name": "张三丰", "plan": "P1"} '
    ...      'from 13912345678, imsi=460001234567890, order 20261126, offset 123')
    'bad event {"msisdn": "*********1234", "name": "张**", "plan": "P1"} from \
*******5678, imsi=***********7890, order 20261126, offset 123'
    """
    def field(m: re.Match[str]) -> str:
        if m.group("q"):
            return f"{m.group('key')}{m.group('q')}{mask_value(m.group('quoted'))}{m.group('q')}"
        return m.group("key") + mask_value(m.group("bare"))

    text = _FIELD.sub(field, text)
    return PHONE.sub(lambda m: mask_value(m.group(0)), text)


class MaskFilter(logging.Filter):
    """Masks personal data in every record before any handler formats it.

    The message is formatted here (template and arguments) and masked as a whole, and so is
    the traceback text, which quotes the values that failed (pydantic's ``input_value=``).
    Applied as a handler filter, it sees the records of every logger: Foresight's, Faust's,
    aiokafka's and librdkafka's.
    """

    _tb = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tb.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


# --- levels --------------------------------------------------------------------------------
#: Records a client logs above what they mean, by (logger, message template): each is a
#: normal step of a healthy cluster, which the same client elsewhere logs at INFO.
DEMOTED = {
    # the way a group member learns of a rebalance (a worker joined or left); the Java
    # client logs it at INFO ("Attempt to heartbeat failed since group is rebalancing").
    # A rebalance that does not end shows as stalled on /health, logged by the worker.
    ("aiokafka.consumer.group_coordinator",
     "Heartbeat failed for group %s because it is rebalancing"): logging.INFO,
}


class DemoteFilter(logging.Filter):
    """Logs the records listed in :data:`DEMOTED` at their real level (and drops them when
    that is below the root logger's level), so a WARNING line is worth reading."""

    def filter(self, record: logging.LogRecord) -> bool:
        level = DEMOTED.get((record.name, str(record.msg)))
        if level is None or level >= record.levelno:
            return True
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return level >= logging.getLogger().getEffectiveLevel()


# --- set-up --------------------------------------------------------------------------------
def worker_name(settings: Any) -> str:
    """The worker id a process logs with: ``FORESIGHT_WORKER_ID``, else host-web_port (what
    the worker uses as its transactional id), so the worker and its packer child agree."""
    return settings.worker_id or f"{socket.gethostname()}-{settings.web_port}"


def handler(settings: Any, component: str, *, stream: IO[str] | None = None,
            worker: str | None = None) -> logging.Handler:
    """A stderr handler in ``settings.log_format`` with the level, repeat and mask filters.

    The filters run in order: levels are corrected and repeats grouped by message template
    before masking replaces the template with the masked text.
    """
    h = logging.StreamHandler(stream if stream is not None else sys.stderr)
    fmt: LogFormat = settings.log_format
    h.setFormatter(JsonFormatter(component, worker or worker_name(settings)) if fmt == "json"
                   else TextFormatter(component))
    h.addFilter(DemoteFilter())
    h.addFilter(RepeatFilter())
    h.addFilter(MaskFilter())
    h.set_name(_HANDLER_NAME)
    return h


_HANDLER_NAME = "foresight"


def configure(settings: Any, component: str, *, stream: IO[str] | None = None,
              worker: str | None = None) -> logging.Handler:
    """Route the root logger to one Foresight :func:`handler` at ``settings.log_level``.

    Replaces the handler of an earlier call, so a command may call it again after reading
    its own flags; other handlers stay (a process starts with none; in-process tests keep
    pytest's capture).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    h = handler(settings, component, stream=stream, worker=worker)
    root.addHandler(h)
    root.setLevel(settings.log_level.upper())
    return h


def mode_logging_config(settings: Any) -> dict[str, Any]:
    """``logging_config`` for Faust's worker (mode): no handler of its own, so the
    :func:`handler` passed as ``loghandlers`` is the only one; the level is ours."""
    return {"version": 1, "disable_existing_loggers": False,
            "root": {"level": settings.log_level.upper(), "handlers": []}}
