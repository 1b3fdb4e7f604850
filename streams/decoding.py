"""Bytes in, a validated model or a dead letter out. Nothing raises, nothing is dropped.

Every input record is checked for size, parsed and validated against its topic's contract
in one pass (pydantic's JSON parser), and its Kafka key is checked against the payload:
a call event keyed by another subscriber (or by nothing) lands on a partition that does
not own that subscriber and would split its state across workers, so it is refused, not
silently processed. Event times far outside the wall clock are refused too
(:class:`TimeBounds`): one record dated 2999 would otherwise move its partition's
event-time clock, and every grace period on it, to the year 2999 for good.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas.outputs import DeadLetter, DeadLetterReason
from schemas.registry import NETWORK_KPIS, decode
from streams.envelope import Oversize


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


def decode_record(topic: str, key: bytes | Oversize | None, value: bytes, max_bytes: int) -> Any:
    """Return the validated event, or a :class:`Rejected` saying why not.

    ``key`` is an :class:`~streams.envelope.Oversize` stub when the packer could not carry
    the record whole.

    >>> decode_record("complaints", None, b"", 1024).reason.value
    'empty'
    >>> decode_record("complaints", None, b"{not json", 1024).reason.value
    'not_json'
    """
    if key.__class__ is Oversize:
        return _oversize(key, max_bytes)  # type: ignore[arg-type]
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
    expected = key_of_payload(topic, event)
    if key is None:
        return Rejected(DeadLetterReason.MISSING_KEY,
                        f"no key: records must be keyed by their subscriber/cell/line id "
                        f"({expected!r}) so they reach the partition that owns it")
    if key != expected.encode():
        shown = key[:64].decode(errors="replace")  # type: ignore[index]
        return Rejected(DeadLetterReason.KEY_MISMATCH,
                        f"key {shown!r} does not match payload key {expected!r}: "
                        "records must be keyed by their subscriber/cell/line id")
    return event


def _oversize(stub: Oversize, max_bytes: int) -> Rejected:
    if stub.value_bytes > max_bytes:
        return Rejected(DeadLetterReason.OVERSIZE, f"{stub.value_bytes} bytes > limit {max_bytes}")
    return Rejected(DeadLetterReason.KEY_MISMATCH,
                    f"key of {stub.key_bytes} bytes cannot be a subscriber/cell/line id")


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """The event times a worker accepts: from ``floor_ms`` to ``max_future_ms`` past the wall
    clock. A clock that moved to an absurd instant would judge every later grace period
    against it; a record outside these bounds is a dead letter instead.

    >>> b = TimeBounds(max_future_ms=3_600_000, floor_ms=0)
    >>> b.check(10_000, wall_ms=10_000) is None
    True
    >>> b.check(10_000 + 3_600_001, wall_ms=10_000).reason.value
    'event_time_out_of_bounds'
    """

    max_future_ms: int
    floor_ms: int

    @classmethod
    def of(cls, max_future_s: int, floor: datetime) -> TimeBounds:
        """From the settings' units (``FORESIGHT_EVENT_TIME_MAX_FUTURE_S``, ``..._FLOOR``)."""
        return cls(max_future_s * 1000, int(floor.timestamp() * 1000))

    def check(self, event_ms: int, wall_ms: int) -> Rejected | None:
        if event_ms > wall_ms + self.max_future_ms:
            return Rejected(DeadLetterReason.EVENT_TIME_OUT_OF_BOUNDS,
                            f"event_time {_iso(event_ms)} is more than {self.max_future_ms // 1000}s "
                            f"ahead of the worker's clock ({_iso(wall_ms)}); raise "
                            "FORESIGHT_EVENT_TIME_MAX_FUTURE_S if producers' clocks run ahead")
        if event_ms < self.floor_ms:
            return Rejected(DeadLetterReason.EVENT_TIME_OUT_OF_BOUNDS,
                            f"event_time {_iso(event_ms)} is before the floor {_iso(self.floor_ms)} "
                            "(FORESIGHT_EVENT_TIME_FLOOR)")
        return None


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


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
    key: bytes | Oversize | None,
    value: bytes,
    worker: str,
    now: datetime,
    max_copy_bytes: int = 64 * 1024,
) -> DeadLetter:
    """The dead-letter record of one rejected input, with its original bytes.

    The copy is whole up to ``max_copy_bytes`` (the worker's event size limit); beyond it,
    only the first bytes, so a dead letter always fits in a Kafka message. Size, SHA-256 and
    source position always identify the original.
    """
    stub = key if isinstance(key, Oversize) else Oversize.of(key, value,
                                                            max_value_bytes=max_copy_bytes)
    return DeadLetter(
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_timestamp_ms=timestamp_ms,
        key_b64=base64.b64encode(stub.key_head).decode() if stub.key_head is not None else None,
        key_truncated=stub.key_truncated,
        value_b64=base64.b64encode(stub.value_head).decode(),
        value_bytes=stub.value_bytes,
        value_sha256=stub.value_sha256,
        value_truncated=stub.value_truncated,
        reason=rejected.reason,
        error=rejected.error,
        worker=worker,
        detected_at=now,
    )
