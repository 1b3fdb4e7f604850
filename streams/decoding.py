"""Bytes in, a validated model or a dead letter out. Nothing raises, nothing is dropped.

Every input record is checked for size, parsed and validated against its topic's contract
in one pass (pydantic's JSON parser), and its Kafka key is checked against the payload:
a call event keyed by another subscriber would land in the wrong partition and split that
subscriber's state across workers, so it is refused, not silently processed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.outputs import DeadLetter, DeadLetterReason
from schemas.registry import NETWORK_KPIS, decode


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a record could not be used; becomes a :class:`DeadLetter`."""

    reason: DeadLetterReason
    error: str


def key_of_payload(topic: str, event: Any) -> str:
    """The key a correctly partitioned record of ``topic`` must carry."""
    if topic == NETWORK_KPIS:
        return event.cell_id if event.kind == "cell_kpi" else event.line_id
    return event.subscriber_id


def decode_record(topic: str, key: bytes | None, value: bytes, max_bytes: int) -> Any:
    """Return the validated event, or a :class:`Rejected` saying why not.

    >>> decode_record("complaints", None, b"", 1024).reason.value
    'empty'
    >>> decode_record("complaints", None, b"{not json", 1024).reason.value
    'not_json'
    """
    if not value:
        return Rejected(DeadLetterReason.EMPTY, "empty value")
    if len(value) > max_bytes:
        return Rejected(DeadLetterReason.OVERSIZE, f"{len(value)} bytes > limit {max_bytes}")
    try:
        event = decode(topic, value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] in ("json_invalid", "json_type"):
            return Rejected(DeadLetterReason.NOT_JSON, errors[0]["msg"])
        return Rejected(DeadLetterReason.INVALID, _summarise(errors))
    if key is not None:
        expected = key_of_payload(topic, event)
        if key != expected.encode():
            shown = key[:64].decode(errors="replace")
            return Rejected(DeadLetterReason.INVALID,
                            f"key {shown!r} does not match payload key {expected!r}: "
                            "records must be keyed by their subscriber/cell/line id")
    return event


def _summarise(errors: list[Any], limit: int = 5) -> str:
    parts = []
    for e in errors[:limit]:
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        parts.append(f"{loc}: {e['msg']}")
    more = len(errors) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)[:2000]


def dead_letter(
    rejected: Rejected,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes,
    worker: str,
    now: datetime,
) -> DeadLetter:
    """The dead-letter record of one rejected input, with its original bytes."""
    return DeadLetter(
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_timestamp_ms=timestamp_ms,
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        value_b64=base64.b64encode(value).decode(),
        value_bytes=len(value),
        reason=rejected.reason,
        error=rejected.error,
        worker=worker,
        detected_at=now,
    )
