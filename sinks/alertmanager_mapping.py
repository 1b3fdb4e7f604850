"""Alert record -> Alertmanager API v2 "postable alert": pure, no I/O, no clock.

Alertmanager identifies an alert by its label set, so the labels must tell episodes apart:
``episode`` carries Foresight's fingerprint (16 hex characters, stable from firing to
resolved, no personal data). Without it every subscriber hit by the same rule would be one
alert in Alertmanager. Subscriber ids and phone numbers are never labels: labels are what
routes, groups and silences match on, and they end up in every notification.

Annotations are the technician's texts, already rendered and masked by the audit; as a
second line of defence any run of 11-15 digits left in a text (a full MSISDN slipped into a
template) is masked to its last four digits here.

>>> from datetime import UTC, datetime
>>> from schemas.outputs import Alert
>>> a = Alert(fingerprint="af3ce3eecf64bd2b", sequence=1, status="firing", rule_id="bss-active-hss-barred",
...           severity="critical", subscriber_id="S00000001", msisdn_masked="*******5678",
...           systems=["bss", "hss"], labels={"category": "status", "systems": "bss,hss",
...           "rule": "bss-active-hss-barred", "severity": "critical"},
...           annotations={"summary": "barred"}, starts_at=datetime(2026, 11, 26, tzinfo=UTC),
...           detected_at=datetime(2026, 11, 26, tzinfo=UTC))
>>> p = to_postable(a, view_url="http://v/subscribers/{subscriber_id}",
...                 now=datetime(2026, 11, 26, 0, 5, tzinfo=UTC), valid_for_s=240)
>>> p["labels"]["alertname"], p["labels"]["episode"], p["generatorURL"]
('bss-active-hss-barred', 'af3ce3eecf64bd2b', 'http://v/subscribers/S00000001')
>>> p["startsAt"], p["endsAt"]
('2026-11-26T00:00:00Z', '2026-11-26T00:09:00Z')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from schemas.common import mask_msisdn
from schemas.outputs import Alert

#: Prometheus label names; Alertmanager 0.25 validates labels *and* annotation names so.
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: A bare run of 11-15 digits (optionally ``+``): a full phone number, masked on sight.
PHONE = re.compile(r"(?<![0-9])\+?[0-9]{11,15}(?![0-9])")
#: Labels that would carry personal data if a rule set them: never sent as labels.
PERSONAL = frozenset({"subscriber", "subscriber_id", "msisdn", "phone", "imsi"})
#: Alertmanager keeps label values small in practice; a runaway value would bloat every
#: notification and every silence match.
MAX_VALUE = 1024
EVIDENCE_MAX = 1500


def label_name(name: str) -> str:
    """A valid Prometheus label name for ``name`` (invalid characters become ``_``).

    >>> label_name("systems"), label_name("fix-by"), label_name("9lives"), label_name("")
    ('systems', 'fix_by', '_9lives', '_')
    """
    clean = re.sub(r"[^a-zA-Z0-9_]", "_", name) or "_"
    return clean if LABEL_NAME.match(clean) else "_" + clean


def mask_text(text: str) -> str:
    """Mask any full phone number left in ``text``; other numbers stay as they are.

    >>> mask_text("call 13812345678 or +8613812345678 about 120.50 CNY, order 20261126")
    'call *******5678 or *********5678 about 120.50 CNY, order 20261126'
    """
    return PHONE.sub(lambda m: mask_msisdn(m.group(0)), text)


def rfc3339(t: datetime) -> str:
    """UTC, second precision or better, with ``Z`` (what Alertmanager prints back).

    >>> from datetime import timezone
    >>> rfc3339(datetime(2026, 11, 26, 8, 0, 0, 250000, tzinfo=timezone(timedelta(hours=8))))
    '2026-11-26T00:00:00.250Z'
    """
    t = t.astimezone(UTC)
    if t.microsecond:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def generator_url(alert: Alert, template: str) -> str:
    """The link back to Foresight: ``template`` with ``{subscriber_id}``, ``{fingerprint}``
    and ``{rule_id}`` filled in (URL-quoted).

    >>> from types import SimpleNamespace as A
    >>> generator_url(A(subscriber_id="S 1", fingerprint="ab", rule_id="r"), "http://h/{subscriber_id}#{fingerprint}")
    'http://h/S%201#ab'
    """
    values = {"subscriber_id": alert.subscriber_id or "", "fingerprint": alert.fingerprint,
              "rule_id": alert.rule_id}
    return template.format_map({k: quote(v, safe="") for k, v in values.items()})


def labels_of(alert: Alert) -> dict[str, str]:
    """Alertmanager labels of an alert: its rule's labels (``category``, ``systems``,
    ``item`` and ``region``/``cell``/``team`` where the rule sets them) plus ``alertname``
    (the rule id), ``rule``, ``severity`` and ``episode``."""
    out: dict[str, str] = {}
    for name, value in alert.labels.items():
        key = label_name(name)
        if key.lower() in PERSONAL or not value:
            continue
        out[key] = mask_text(value)[:MAX_VALUE]
    out.update(alertname=alert.rule_id, rule=alert.rule_id, severity=str(alert.severity),
               episode=alert.fingerprint)
    if alert.systems:
        out["systems"] = ",".join(alert.systems)
    return out


def annotations_of(alert: Alert) -> dict[str, str]:
    """The technician's texts (summary, guidance, resolution, resolved_summary...), the
    masked phone number and the evidence, each masked once more."""
    out = {label_name(k): mask_text(v) for k, v in alert.annotations.items() if v}
    if alert.msisdn_masked:
        out["msisdn"] = mask_text(alert.msisdn_masked)
    if alert.evidence:
        text = "; ".join(f"{k}={v}" for k, v in sorted(alert.evidence.items()))
        out["evidence"] = mask_text(text)[:EVIDENCE_MAX]
    out["fingerprint"] = alert.fingerprint
    out["sequence"] = str(alert.sequence)
    return out


def to_postable(alert: Alert, *, view_url: str, now: datetime, valid_for_s: float) -> dict[str, Any]:
    """One element of the JSON array ``POST /api/v2/alerts`` takes.

    A firing alert says it is valid until ``now + valid_for_s`` (Prometheus sends
    ``4 x resend interval``): the sink re-sends it well before then, and if the sink dies
    Alertmanager resolves it by itself instead of keeping a stale alert forever. That also
    makes the sink independent of Alertmanager's ``resolve_timeout``. A resolved alert
    carries its true end. ``endsAt`` is never before ``startsAt`` (Alertmanager rejects
    that), so an episode dated ahead of the wall clock (an accelerated simulation) is
    still accepted.
    """
    starts = alert.starts_at
    if alert.status == "resolved":
        ends = alert.ends_at or now
    else:
        ends = max(now, starts) + timedelta(seconds=valid_for_s)
    ends = max(ends, starts)
    return {
        "labels": labels_of(alert),
        "annotations": annotations_of(alert),
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
        "generatorURL": generator_url(alert, view_url),
    }


def check_postable(p: Mapping[str, Any]) -> list[str]:
    """What Alertmanager would reject in ``p`` (names, empty label set, times); [] if none.

    >>> check_postable({"labels": {"a-b": "x"}, "annotations": {},
    ...                 "startsAt": "2026-01-01T00:00:01Z", "endsAt": "2026-01-01T00:00:00.5Z"})
    ['invalid label name a-b', 'endsAt before startsAt']
    """
    problems = [f"invalid label name {k}" for k in p["labels"] if not LABEL_NAME.match(k)]
    problems += [f"invalid annotation name {k}" for k in p["annotations"] if not LABEL_NAME.match(k)]
    if not p["labels"]:
        problems.append("no labels")
    if datetime.fromisoformat(p["endsAt"]) < datetime.fromisoformat(p["startsAt"]):
        problems.append("endsAt before startsAt")
    return problems
