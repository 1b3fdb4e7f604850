"""SMS text for an Alertmanager notification: one message per notification group.

Pure functions, no I/O: the webhook (``sinks/sms_webhook.py``) calls them, the unit tests
check them without Kannel. Why the care about length: an SMS is 140 octets. Text that fits
the GSM 03.38 7-bit alphabet gets 160 characters (153 per part once it is split, the rest
is the concatenation header); anything else (Chinese) is sent as UCS-2, 70 characters
(67 per part). Operators pay per part and phones show long chains badly, so a message is
capped at a few parts and cut with an ellipsis; the full story stays in Alertmanager.

>>> text = build_text({"status": "firing", "commonLabels": {"alertname": "r", "severity": "critical"},
...     "alerts": [{"status": "firing", "annotations": {"summary": "line 8613812345678 down"}}]})
>>> text
'Foresight FIRING 1 r critical\\n1. line *********5678 down'
>>> info(text)
SmsInfo(coding='gsm7', units=56, segments=1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sinks.alertmanager_mapping import mask_text

#: GSM 03.38 default alphabet (one septet each; ESC itself excluded: it is not text).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
#: GSM 03.38 extension table: ESC + one septet, so two septets each.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

#: (single message, per part of a concatenated message) in the coding's units.
LIMITS = {"gsm7": (160, 153), "ucs2": (70, 67)}
ELLIPSIS = {"gsm7": "...", "ucs2": "…"}
SEVERITY_ORDER = ("critical", "warning", "info")
Coding = Literal["gsm7", "ucs2"]


@dataclass(frozen=True)
class SmsInfo:
    """How ``text`` travels: its coding, its length in that coding's units, its parts."""

    coding: Coding
    units: int
    segments: int


def coding_of(text: str) -> Coding:
    """GSM-7 when every character is in the GSM alphabet, else UCS-2.

    >>> coding_of("Cell 4711 down [east]"), coding_of("小区 4711 退服"), coding_of("café"), coding_of("ç")
    ('gsm7', 'ucs2', 'gsm7', 'ucs2')
    """
    return "gsm7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else "ucs2"


def _units(text: str, coding: Coding) -> list[int]:
    """Units per character: septets (2 for the extension table) or UTF-16 code units
    (2 for characters outside the BMP, e.g. emoji)."""
    if coding == "gsm7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def info(text: str) -> SmsInfo:
    """Coding, length and number of parts of ``text``.

    Parts are packed greedily without splitting a character (an escape pair or a
    surrogate pair stays in one part), as gateways do.

    >>> info("a" * 160), info("a" * 161), info("a" * 306), info("a" * 307)
    (SmsInfo(coding='gsm7', units=160, segments=1), SmsInfo(coding='gsm7', units=161, segments=2), \
SmsInfo(coding='gsm7', units=306, segments=2), SmsInfo(coding='gsm7', units=307, segments=3))
    >>> [info("告" * n).segments for n in (70, 71, 134, 135)]
    [1, 2, 2, 3]
    >>> info("[]" * 80)
    SmsInfo(coding='gsm7', units=320, segments=3)
    """
    coding = coding_of(text)
    units = _units(text, coding)
    total = sum(units)
    single, part = LIMITS[coding]
    if total <= single:
        return SmsInfo(coding, total, 1)
    segments, used = 1, 0
    for u in units:
        if used + u > part:
            segments, used = segments + 1, 0
        used += u
    return SmsInfo(coding, total, segments)


def fits(text: str, max_segments: int) -> bool:
    return info(text).segments <= max_segments


def truncate(text: str, max_segments: int) -> str:
    """``text`` cut to at most ``max_segments`` parts, ending with an ellipsis if cut.

    >>> t = truncate("告警" * 200, 3); len(t), t[-1], info(t).segments
    (201, '…', 3)
    >>> t = truncate("x" * 1000, 1); len(t), t[-3:], info(t).segments
    (160, '...', 1)
    >>> truncate("short", 1)
    'short'
    """
    if max_segments < 1:
        raise ValueError("max_segments must be >= 1")
    if fits(text, max_segments):
        return text

    def cut(k: int) -> str:
        head = text[:k].rstrip()
        return head + ELLIPSIS[coding_of(head)]

    # the upper bound of what can fit, then the longest prefix that does (binary search,
    # then a short walk back in case the coding changed at the boundary)
    lo, hi = 0, min(len(text), max_segments * LIMITS["gsm7"][0])
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(cut(mid), max_segments):
            lo = mid
        else:
            hi = mid - 1
    while lo > 0 and not fits(cut(lo), max_segments):
        lo -= 1
    return cut(lo)


def _rule(payload: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]) -> str:
    common = {**(payload.get("commonLabels") or {}), **(payload.get("groupLabels") or {})}
    for key in ("rule", "alertname"):
        if common.get(key):
            return str(common[key])
    names: list[str] = []
    for a in alerts:
        labels = a.get("labels") or {}
        name = str(labels.get("rule") or labels.get("alertname") or "")
        if name and name not in names:
            names.append(name)
    if not names:
        return "alert"
    return ",".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")


def _severity(payload: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]) -> str:
    common = payload.get("commonLabels") or {}
    if common.get("severity"):
        return str(common["severity"])
    seen = {str((a.get("labels") or {}).get("severity", "")) for a in alerts} - {""}
    for sev in SEVERITY_ORDER:
        if sev in seen:
            return sev
    return sorted(seen)[0] if seen else ""


def _summary(alert: Mapping[str, Any], common: Mapping[str, Any]) -> str:
    """The alert's one-line story: for a resolved alert its ``resolved_summary`` first."""
    ann = {**common, **(alert.get("annotations") or {})}
    keys = ("resolved_summary", "summary", "description", "message") \
        if alert.get("status") == "resolved" else ("summary", "description", "message")
    for key in keys:
        if ann.get(key):
            return " ".join(str(ann[key]).split())  # one line: newlines cost parts
    return ""


def build_text(payload: Mapping[str, Any], *, max_segments: int = 3, prefix: str = "Foresight") -> str:
    """One SMS for one Alertmanager webhook notification (version 4).

    Header: status, how many alerts, the rule and the severity; then as many numbered
    summaries as fit in ``max_segments`` parts, firing ones first, with ``(+k more)`` for
    the rest; a text that does not fit even so is cut with an ellipsis. Alerts Alertmanager
    left out because of the receiver's ``max_alerts`` (``truncatedAlerts``) count too. Every
    run of 11-15 digits is masked to its last four: a template that printed a subscriber's
    full number does not reach a phone with it.

    >>> alerts = [{"status": "firing", "annotations": {"summary": f"S{i} barred"}} for i in range(5)]
    >>> print(build_text({"status": "firing", "commonLabels": {"rule": "hss-barred",
    ...                   "severity": "warning"}, "alerts": alerts, "truncatedAlerts": 2}))
    Foresight FIRING 7 hss-barred warning
    1. S0 barred
    2. S1 barred
    3. S2 barred
    4. S3 barred
    5. S4 barred
    (+2 more)
    >>> print(build_text({"status": "resolved", "commonLabels": {"alertname": "x"},
    ...                   "alerts": [{"status": "resolved", "annotations": {"summary": "a",
    ...                               "resolved_summary": "a cleared"}}]}, prefix=""))
    RESOLVED 1 x
    1. a cleared
    """
    alerts = list(payload.get("alerts") or [])
    firing = [a for a in alerts if a.get("status") != "resolved"]
    resolved = [a for a in alerts if a.get("status") == "resolved"]
    extra = int(payload.get("truncatedAlerts") or 0)
    status = str(payload.get("status") or ("firing" if firing else "resolved"))
    if status == "resolved":
        head = f"RESOLVED {len(resolved) + extra}"
    else:
        head = f"FIRING {len(firing) + extra}" + (f", resolved {len(resolved)}" if resolved else "")
    sev = _severity(payload, firing or resolved)
    header = " ".join(p for p in (prefix.strip(), head, _rule(payload, alerts), sev) if p)
    common = payload.get("commonAnnotations") or {}
    lines = []
    for i, a in enumerate([*firing, *resolved], start=1):
        s = _summary(a, common)
        mark = "OK " if a.get("status") == "resolved" and status != "resolved" else ""
        lines.append(f"{i}. {mark}{s}" if s else f"{i}. {mark}(no summary)")
    header = mask_text(header)
    lines = [mask_text(line) for line in lines]
    total = len(lines) + extra

    # as many whole lines as fit, the rest counted; if not even one does, the start of the
    # first one (cut with an ellipsis below) says more than a bare count
    for k in range(len(lines), 0, -1):
        rest = total - k
        text = "\n".join([header, *lines[:k], *([f"(+{rest} more)"] if rest else [])])
        if fits(text, max_segments):
            return text
    return truncate("\n".join([header, *lines[:1]]), max_segments)
