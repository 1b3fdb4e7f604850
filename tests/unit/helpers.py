"""Small builders for input records used across unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.examples import INPUT_EXAMPLES

T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def example(topic: str, kind: str) -> dict[str, Any]:
    return dict(next(e for e in INPUT_EXAMPLES[topic] if e["kind"] == kind))


def event(topic: str, kind: str, *, sid: str = "S00000001", at: float = 0.0,
          eid: str | None = None, **fields: Any) -> dict[str, Any]:
    """An input event ``at`` seconds after T0, from the schema examples."""
    ev = example(topic, kind)
    ev.update(subscriber_id=sid, event_time=(T0 + timedelta(seconds=at)).isoformat(),
              event_id=eid or f"{kind}-{sid}-{at}")
    ev.update(fields)
    return ev


def record(ev: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) as a producer keyed by subscriber would send it."""
    return ev["subscriber_id"].encode(), orjson.dumps(ev)
