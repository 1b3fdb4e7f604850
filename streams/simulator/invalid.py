"""Deliberately broken records, so dead-letter handling is exercised on every run.

Each broken record is derived from a valid event just emitted (same topic, same kind of
content) and is sent *in addition* to it. JSON variants get a fresh event id, so a
consumer that wrongly accepted one would show up as an extra event, never as a silently
altered one. The truth line says why the record must be rejected, in the terms of
``streams.decoding``: ``not_json``, ``invalid``, ``oversize``, ``empty``, ``key_mismatch``,
``missing_key`` or ``event_time_out_of_bounds`` (an event dated in the year 2999, outside
any worker's bounds whatever its wall clock).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson

#: (breakage, dead-letter reason, weight)
BREAKAGES: tuple[tuple[str, str, float], ...] = (
    ("truncated_json", "not_json", 0.16),
    ("binary_garbage", "not_json", 0.08),
    ("missing_field", "invalid", 0.18),
    ("unknown_enum", "invalid", 0.16),
    ("naive_timestamp", "invalid", 0.12),
    ("key_mismatch", "key_mismatch", 0.08),
    ("null_key", "missing_key", 0.06),
    ("far_future", "event_time_out_of_bounds", 0.06),
    ("oversize", "oversize", 0.06),
    ("empty", "empty", 0.06),
)
_NAMES = tuple(b[0] for b in BREAKAGES)
_REASON = {b[0]: b[1] for b in BREAKAGES}
_WEIGHTS = tuple(b[2] for b in BREAKAGES)

#: Enum-valued fields worth corrupting, by topic (first one present is used).
_ENUM_FIELDS = {
    "subscriber-state": ("system",),
    "call-events": ("result", "stage"),
    "complaints": ("channel", "severity"),
    "network-kpis": ("scenario", "kind"),
    "contact-requests": ("channel", "purpose"),
    "contact-outcomes": ("channel", "kind"),
}
#: Fields without a default, by topic (``kind`` defaults on single-kind topics, and a line
#: measurement's ``subscriber_id`` is optional, so removing those would still validate).
_REQUIRED = {
    "subscriber-state": ("event_id", "event_time", "kind", "subscriber_id", "msisdn"),
    "call-events": ("event_id", "event_time", "kind", "subscriber_id", "call_id"),
    "complaints": ("event_id", "event_time", "subscriber_id", "complaint_id", "category"),
    "network-kpis": ("event_id", "event_time", "kind", "cell_id", "line_id"),
    "contact-requests": ("event_id", "event_time", "subscriber_id", "request_id", "purpose"),
    "contact-outcomes": ("event_id", "event_time", "kind", "subscriber_id"),
}


class InvalidMaker:
    """Turns a valid record into a broken one; returns it with its truth line."""

    def __init__(self, rng: random.Random, max_bytes: int) -> None:
        self.rng = rng
        self.max_bytes = max_bytes

    def make(
        self, rec: tuple[str, str | None, bytes, int], payload: dict[str, Any],
        other_key: str, seq: int,
    ) -> tuple[tuple[str, str | None, bytes, int], dict[str, Any]]:
        """A broken copy of ``rec`` (never replacing it) and its ``invalid_input`` line."""
        topic, key, value, t = rec
        rng = self.rng
        breakage = rng.choices(_NAMES, weights=_WEIGHTS)[0]
        bad = dict(payload)
        if "event_id" in bad:
            bad["event_id"] = f"{payload['event_id']}-x"
        detail: dict[str, Any] = {"breakage": breakage}
        out_key = key
        if breakage == "truncated_json":
            raw = value[: max(1, len(value) // 2)]
        elif breakage == "binary_garbage":
            raw = b"\xff\xfe\x00" + rng.randbytes(24)
        elif breakage == "empty":
            raw = b""
        else:
            if breakage == "missing_field":
                present = [f for f in _REQUIRED[topic] if f in bad]
                name = rng.choice(present)
                del bad[name]
                detail["field"] = name
            elif breakage == "unknown_enum":
                name = next((f for f in _ENUM_FIELDS.get(topic, ()) if f in bad), "kind")
                bad[name] = f"no-such-{name}"
                detail["field"] = name
            elif breakage == "naive_timestamp":
                bad["event_time"] = str(bad["event_time"])[:23]
                detail["field"] = "event_time"
            elif breakage == "key_mismatch":
                out_key = other_key
                detail["payload_key"] = key
            elif breakage == "null_key":
                out_key = None
                detail["payload_key"] = key
            elif breakage == "far_future":
                bad["event_time"] = "2999-01-01T00:00:00+00:00"
                detail["field"] = "event_time"
            elif breakage == "oversize":
                bad["padding"] = "x" * (self.max_bytes + 1024)
            raw = orjson.dumps(bad)
        detail["bytes"] = len(raw)
        line = {
            "type": "invalid_input", "topic": topic, "key": out_key,
            "reason": _REASON[breakage], "detail": detail, "seq": seq,
            "value_sha256": hashlib.sha256(raw).hexdigest(),
        }
        return (topic, out_key, raw, t), line
