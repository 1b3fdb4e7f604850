"""Simulated time: integer epoch milliseconds inside, zoned ISO strings on the wire.

The generators format hundreds of thousands of timestamps a second, so formatting avoids
``datetime`` on the hot path: the date part is cached per day and the rest is arithmetic.
Most systems report China time (``+08:00``); the HSS and the network OSS report UTC, as
real ones often do, so consumers must compare instants, never wall-clock strings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.simulator.errors import SimulatorInputError

CHINA_OFFSET_MS = 8 * 3_600_000
_DAY_MS = 86_400_000


class IsoFormatter:
    """Formats epoch ms as ISO 8601 with a fixed zone suffix; caches the date per day.

    >>> IsoFormatter(8).format(0)
    '1970-01-01T08:00:00.000+08:00'
    >>> IsoFormatter(0, "Z").format(1_500)
    '1970-01-01T00:00:01.500Z'
    """

    __slots__ = ("_days", "offset_ms", "suffix")

    def __init__(self, offset_hours: int, suffix: str | None = None) -> None:
        self.offset_ms = offset_hours * 3_600_000
        if suffix is None:
            sign = "+" if offset_hours >= 0 else "-"
            suffix = f"{sign}{abs(offset_hours):02d}:00"
        self.suffix = suffix
        self._days: dict[int, str] = {}

    def format(self, t_ms: int) -> str:
        """ISO 8601 of ``t_ms`` in this formatter's zone, millisecond precision."""
        local = t_ms + self.offset_ms
        day, rest = divmod(local, _DAY_MS)
        prefix = self._days.get(day)
        if prefix is None:
            date = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)
            prefix = self._days[day] = date.strftime("%Y-%m-%dT")
        h, rest = divmod(rest, 3_600_000)
        m, rest = divmod(rest, 60_000)
        s, ms = divmod(rest, 1000)
        return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{ms:03d}{self.suffix}"


CHINA = IsoFormatter(8)
UTC_PLUS0 = IsoFormatter(0, "+00:00")
UTC_Z = IsoFormatter(0, "Z")


def china_hour(t_ms: int) -> int:
    """Hour of day (0-23) in China time, for daily traffic curves.

    >>> china_hour(0)
    8
    """
    return ((t_ms + CHINA_OFFSET_MS) // 3_600_000) % 24


def iso(t_ms: int) -> str:
    """China-time ISO string used in truth records."""
    return CHINA.format(t_ms)


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(dt.timestamp() * 1000)


def parse_start(text: str | None, now: datetime | None = None) -> int:
    """``--start``: an ISO time with a zone, or now (UTC) rounded down to the second.

    >>> parse_start("2025-06-01T08:00:00+08:00")
    1748736000000
    """
    if text is None:
        current = now or datetime.now(UTC)
        return to_ms(current.replace(microsecond=0))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SimulatorInputError(
            f"--start {text!r} is not an ISO 8601 time; use e.g. 2025-06-01T08:00:00+08:00"
        ) from exc
    if dt.tzinfo is None:
        raise SimulatorInputError(
            f"--start {text!r} has no zone; add one, e.g. {text}+08:00 or {text}Z"
        )
    return to_ms(dt)
