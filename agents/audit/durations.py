"""Prometheus-style durations (``0s``, ``30s``, ``10m``, ``2h``, ``1d``, ``1h30m``).

Rule files say how long a condition must hold in the notation operators already read in
Prometheus alerting rules, so a catalog reviewer never guesses whether ``600`` meant
seconds or milliseconds. Internally everything is epoch milliseconds.

>>> parse_duration("1h30m"), parse_duration("0s"), format_duration(5_400_000)
(5400000, 0, '1h30m')
"""

from __future__ import annotations

import re

_UNITS: tuple[tuple[str, int], ...] = (
    ("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000),
    ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1),
)
_PATTERN = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_duration(text: object) -> int:
    """Milliseconds of a duration such as ``"10m"``; ``0`` (the number) is also accepted.

    Raises ``ValueError`` with the expected notation, because a bare number is ambiguous.

    >>> parse_duration("2h"), parse_duration(0)
    (7200000, 0)
    >>> parse_duration("10")
    Traceback (most recent call last):
    ...
    ValueError: '10' is not a duration: write a number with a unit, e.g. 0s, 30s, 10m, 2h, 1d
    """
    if text == 0 and not isinstance(text, bool):
        return 0
    match = _PATTERN.match(text) if isinstance(text, str) and text else None
    if match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration: write a number with a unit, "
                         "e.g. 0s, 30s, 10m, 2h, 1d")
    return sum(int(g) * unit for g, (_, unit) in zip(match.groups(), _UNITS, strict=True) if g)


def format_duration(ms: int) -> str:
    """The shortest Prometheus notation of ``ms`` (rounded down to seconds above a minute).

    >>> format_duration(0), format_duration(90_000), format_duration(86_400_000 + 60_000)
    ('0s', '1m30s', '1d1m')
    """
    if ms <= 0:
        return "0s"
    if ms < 1_000:
        return f"{ms}ms"
    out = []
    rest = ms
    for name, unit in _UNITS[:-1]:
        if rest >= unit:
            n, rest = divmod(rest, unit)
            out.append(f"{n}{name}")
    return "".join(out)
