"""Log lines: the JSON formatter, the text formatter's lack of escape codes, the masking
filter, and the set-up every command shares (no broker)."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from streams.logs import (
    JsonFormatter,
    MaskFilter,
    TextFormatter,
    configure,
    handler,
    mask,
    mode_logging_config,
)
from streams.settings import Settings


def _record(msg: str, *args: object, level: int = logging.WARNING, name: str = "streams.t",
            exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad msisdn 8613800001234")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, args or None, exc_info)


def test_json_formatter_one_object_per_line_with_the_fields() -> None:
    f = JsonFormatter("worker", "w7")
    rec = _record("lag %d on %s\nsecond line", 42, "p1", level=logging.ERROR, exc=True)
    rec.created = 1_764_547_200.25  # 2025-12-01T00:00:00.250Z
    line = f.format(rec)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["time"] == "2025-12-01T00:00:00.250Z"
    assert doc["level"] == "ERROR"
    assert doc["logger"] == "streams.t"
    assert doc["message"] == "lag 42 on p1\nsecond line"
    assert doc["worker"] == "w7"
    assert doc["component"] == "worker"
    assert doc["exception"].startswith("Traceback (most recent call last)")
    assert "ValueError: bad msisdn" in doc["exception"]


def test_json_formatter_without_exception_has_no_exception_field() -> None:
    doc = json.loads(JsonFormatter("packer", "w1").format(_record("ok")))
    assert "exception" not in doc
    assert doc["component"] == "packer"


def test_json_keeps_non_ascii_readable() -> None:
    line = JsonFormatter("worker", "w1").format(_record("用户 %s", "张**"))
    assert "用户 张**" in line


@pytest.mark.parametrize("fmt", [TextFormatter("worker"), JsonFormatter("worker", "w1")])
def test_no_escape_codes_even_when_the_message_has_some(fmt: logging.Formatter) -> None:
    # Faust draws tables with the terminal's line-drawing set when stdout is a terminal
    rec = _record("\x1b[31mred\x1b[0m table \x1b(0lqk\x1b(B")
    out = fmt.format(rec)
    assert "\x1b" not in out
    assert "red" in out and "lqk" in out


def test_text_line_shape() -> None:
    rec = _record("packer started again (start #%d)", 2, name="streams.supervision")
    rec.created = 0.0
    assert TextFormatter("worker").format(rec) == (
        "1970-01-01T00:00:00.000Z WARNING worker streams.supervision: "
        "packer started again (start #2)")


# --- masking ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "masked"), [
    # bare phone numbers (11-15 digits, optionally +), IMSI/IMEI-length digit runs
    ("from 13912345678", "from *******5678"),
    ("call +8613812345678 now", "call *********5678 now"),
    ("imei 356938035643809", "imei ***********3809"),
    # known personal fields, in JSON, repr, key=value and key: value spellings
    ('{"msisdn": "8613800001234"}', '{"msisdn": "*********1234"}'),
    ("{'msisdn': '13800001234'}", "{'msisdn': '*******1234'}"),
    ("msisdn=86138000", "msisdn=****8000"),  # shorter than 11 digits: the field still masks
    ("phone: 12345", "phone: *2345"),
    ('{"name": "张三丰", "plan": "P1"}', '{"name": "张**", "plan": "P1"}'),
    ("{'name': 'Ann Lee'}", "{'name': 'A******'}"),
    ('"email": "ann@example.com"', '"email": "a**************"'),
    ("IMSI=460001234567890", "IMSI=***********7890"),
])
def test_mask_catches(text: str, masked: str) -> None:
    assert mask(text) == masked


@pytest.mark.parametrize("text", [
    "offset 1234567890",                       # 10 digits: offsets, counts
    "order 20261126 at 2026-11-26T10:00:00Z",  # dates
    "card 4111111111111111",                   # 16 digits: not a phone number (documented gap)
    "subscriber S00000001",                    # pseudonymous ids stay: operators act on them
    "agent name=subscriber-pipeline",          # bare name= is Faust's, not a person's
    "broker address=127.0.0.1:19092",          # addresses are brokers' here
    '{"msisdn_masked": "*******5678"}',        # already masked output field
    "TP(topic='foresight-unified-view-changelog', partition=3)",
])
def test_mask_leaves(text: str) -> None:
    assert mask(text) == text


def test_mask_filter_masks_arguments_and_tracebacks() -> None:
    rec = _record("bad record %r", {"msisdn": "8613800001234"}, exc=True)
    assert MaskFilter().filter(rec) is True
    assert rec.getMessage() == "bad record {'msisdn': '*********1234'}"
    assert rec.exc_text is not None and "8613800001234" not in rec.exc_text
    assert "*********1234" in rec.exc_text


# --- set-up ----------------------------------------------------------------------------------
def test_configure_routes_every_logger_through_one_masked_json_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buf = io.StringIO()
    try:
        configure(Settings(log_format="json", log_level="info", worker_id="w9"), "sink",
                  stream=buf)
        configure(Settings(log_format="json", log_level="info", worker_id="w9"), "sink",
                  stream=buf)  # again: replaces, no duplicate lines
        logging.getLogger("aiokafka.conn").info("connected to %s", "13912345678")
        lines = buf.getvalue().splitlines()
        assert len(lines) == 1
        doc = json.loads(lines[0])
        assert doc["message"] == "connected to *******5678"
        assert (doc["worker"], doc["component"], doc["logger"]) == ("w9", "sink", "aiokafka.conn")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_handler_for_faust_worker_is_the_only_root_handler() -> None:
    # what run_worker hands to Faust's worker (mode): dictConfig with no handler, ours added
    cfg = mode_logging_config(Settings(log_level="warning"))
    assert cfg["root"] == {"level": "WARNING", "handlers": []}
    h = handler(Settings(), "worker", stream=io.StringIO(), worker="w1")
    assert isinstance(h.formatter, TextFormatter)
    assert [type(f).__name__ for f in h.filters] == ["DemoteFilter", "RepeatFilter", "MaskFilter"]


def test_a_rebalance_heartbeat_is_info_not_warning() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buf = io.StringIO()
    try:
        configure(Settings(log_level="info"), "worker", stream=buf)
        log = logging.getLogger("aiokafka.consumer.group_coordinator")
        log.warning("Heartbeat failed for group %s because it is rebalancing", "fs")
        log.warning("Heartbeat failed for group %s: generation id is not  current.", "fs")
        lines = buf.getvalue().splitlines()
        assert " INFO worker aiokafka.consumer.group_coordinator: Heartbeat failed for group " \
            "fs because it is rebalancing" in lines[0]
        assert " WARNING " in lines[1]  # a member that lost its generation still warns
        buf.truncate(0)
        buf.seek(0)
        configure(Settings(log_level="warning"), "worker", stream=buf)
        log.warning("Heartbeat failed for group %s because it is rebalancing", "fs")
        assert buf.getvalue() == ""  # below the configured level once demoted
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
