"""Unit tests for contact policies: ``foresight policy test FILE`` (no Kafka).

A test file names the policy (default: the packaged one) and lists tests. Each test
describes one subscriber (profile, BSS status, open audit findings, Foresee scores), a
history (complaints, do-not-disturb entries, contact results) and requests, each with
the decision expected. Requests go through the real ``contact-policy`` step in order, so
the caps count the requests a test allowed before::

    policy: ../contact-policy.yaml       # optional, relative to this file
    start: 2026-11-26T10:00:00+08:00     # instant of offset 0s
    tests:
      - name: seed user, telemarketing
        subscriber: {seed_user: true, star_level: 3}
        history:
          - {at: -3d, complaint: escalated}          # opened 3 days before start
        requests:
          - at: 0s
            purpose: marketing
            channel: telemarketing
            expect: {decision: suppress, reasons: [escalated_complaint, recent_complaint,
                     open_complaint, seed_user]}

``reasons`` must match exactly, in order (the policy's precedence); ``exempted`` and
``allowed_after`` (an ISO time, or ``null``) are checked when given. Offsets (``at``,
``scheduled_for``) are durations from ``start`` and may be negative (``-3d``);
``scheduled_for`` may also be an ISO time. Every field is checked: a misspelt one is an
error with its line, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.audit.catalog import _at
from agents.audit.durations import parse_duration
from agents.audit.yamlmarks import YamlProblem, compose_document, line_of
from agents.contact.functions import CHANNELS, MODELS
from agents.contact.policy import Policy, _msg, _trim, load_policy
from agents.contact.step import ContactPolicy
from agents.core import EventContext
from agents.unified_view import new_view
from schemas.contacts import ContactRequest
from schemas.registry import decode
from streams.errors import RuleError

When = str | int | datetime


def offset_ms(value: When, start_ms: int) -> int:
    """``-3d``, ``90m``, ``0`` or an ISO time (with zone) -> epoch ms."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone: add Z or +08:00")
        return int(value.timestamp() * 1000)
    if isinstance(value, str) and value[:4].isdigit() and "-" in value[4:5]:
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise ValueError(f"{value} has no time zone: add Z or +08:00")
        return int(when.timestamp() * 1000)
    if isinstance(value, str) and value.startswith("-"):
        return start_ms - parse_duration(value[1:])
    return start_ms + parse_duration(value)


def _check_when(value: Any) -> Any:
    offset_ms(value, 0)
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubscriberSpec(_Spec):
    seed_user: bool | None = None
    star_level: int | None = Field(default=None, ge=0, le=7)
    do_not_disturb: bool | None = None
    status: Literal["active", "suspended", "closed"] = "active"
    porting_out: bool = False
    timezone: str | None = None
    audit_findings: int = Field(default=0, ge=0, le=20)
    #: Foresee scores (model -> probability); absent: no foresee step in the pipeline
    foresee: dict[Literal[MODELS], float] | None = None  # type: ignore[valid-type]


class HistorySpec(_Spec):
    at: When
    complaint: Literal["normal", "escalated", "regulator"] | None = None
    stage: Literal["opened", "resolved", "closed"] = "opened"
    complaint_id: str | None = None
    dnd: bool | None = None
    result: Literal["reached", "not_reached", "refused", "complained"] | None = None
    request_id: str | None = None


class ExpectSpec(_Spec):
    #: ``none``: no decision at all (a redelivered request id)
    decision: Literal["allow", "suppress", "none"]
    reasons: list[str] = Field(default_factory=list)
    exempted: list[str] | None = None
    allowed_after: When | None = Field(default="unset")


class RequestSpec(_Spec):
    at: When = "0s"
    request_id: str | None = None
    purpose: Literal["marketing", "service"]
    channel: Literal[tuple(CHANNELS)]  # type: ignore[valid-type]
    scheduled_for: When | None = None
    timezone: str | None = None
    expect: ExpectSpec | None = None


class TestSpec(_Spec):
    name: str = Field(min_length=1)
    subscriber: SubscriberSpec = SubscriberSpec()
    history: list[HistorySpec] = Field(default_factory=list)
    requests: list[RequestSpec] = Field(min_length=1)


class FileSpec(_Spec):
    policy: str | None = None
    start: When = "2026-11-26T10:00:00+08:00"
    tests: list[TestSpec] = Field(min_length=1)


@dataclass
class Outcome:
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _iso(t: int | None) -> str:
    return "null" if t is None else datetime.fromtimestamp(t / 1000, UTC).isoformat()


def load_test_file(path: Path) -> tuple[FileSpec, Policy]:
    """Parse and check a test file and load its policy; RuleError names ``file:line``."""
    text = path.read_text(encoding="utf-8")
    try:
        doc = compose_document(text)
    except YamlProblem as exc:
        raise RuleError(f"{path}:{_at(exc.line)}: {exc}") from None
    try:
        spec = FileSpec.model_validate(doc.data)
        _check_when(spec.start)
        for t in spec.tests:
            for h in t.history:
                _check_when(h.at)
            for r in t.requests:
                _check_when(r.at)
                if r.scheduled_for is not None:
                    _check_when(r.scheduled_for)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _trim(tuple(err["loc"]))
            problems.append(f"{path}:{_at(line_of(doc.lines, loc))}: "
                            f"{'.'.join(str(p) for p in loc) or 'document'}: {_msg(err)}")
        raise RuleError("\n".join(problems)) from None
    except ValueError as exc:
        raise RuleError(f"{path}: {exc}") from None
    policy = load_policy(path.parent / spec.policy) if spec.policy else load_policy()
    return spec, policy


def run_test_file(path: Path, policy: Policy | None = None) -> list[Outcome]:
    """Run every test of ``path`` (with its own policy unless ``policy`` is given)."""
    spec, own = load_test_file(path)
    policy = policy or own
    start = offset_ms(spec.start, 0)
    return [run_test(t, policy, start) for t in spec.tests]


def _ctx(topic: str, t: int) -> EventContext:
    return EventContext(topic, 0, 0, t, datetime.fromtimestamp(t / 1000, UTC), event_ms=t)


def _dt(t: int) -> str:
    return datetime.fromtimestamp(t / 1000, UTC).isoformat()


def _reads(sub: SubscriberSpec, start: int) -> dict[str, Any]:
    view = new_view("S00000001", "8613800001234")
    view["systems"]["bss"] = {"status": {"v": sub.status, "reason": None, "t": 0, "id": "x"}}
    for name in ("seed_user", "star_level", "do_not_disturb", "timezone"):
        value = getattr(sub, name)
        if value is not None:
            view["profile"][name] = {"v": value, "t": 0, "id": "x"}
    if sub.porting_out:
        view["port_out"] = {"deadline": start + 86_400_000, "recipient": "other", "t": 0,
                            "id": "x"}
    audit = {"episodes": {f"rule-{i}|": {"since": 0, "fired_at": 1}
                          for i in range(sub.audit_findings)}} if sub.audit_findings else None
    reads: dict[str, Any] = {"unified-view": view, "audit": audit}
    if sub.foresee is not None:
        reads["foresee"] = {"scores": {m: {"p": p, "version": "test", "reasons": [],
                                           "at_ms": start, "above": p >= 0.5}
                                       for m, p in sub.foresee.items()}}
    return reads


def run_test(test: TestSpec, policy: Policy, start: int) -> Outcome:
    """Feed the history, then each request, through the step; compare the decisions."""
    reads = _reads(test.subscriber, start)
    step = ContactPolicy(policy, reads=tuple(reads))
    out = Outcome(test.name)
    state: dict[str, Any] | None = None
    sid, msisdn = "S00000001", "8613800001234"
    base = {"schema_version": 1, "subscriber_id": sid, "msisdn": msisdn}
    events: list[tuple[int, str, Any, str]] = []
    for i, h in enumerate(test.history):
        t = offset_ms(h.at, start)
        ev = {**base, "event_id": f"h{i}", "event_time": _dt(t)}
        if h.complaint is not None:
            events.append((t, "complaints", {**ev, "kind": "complaint",
                                             "complaint_id": h.complaint_id or f"CP{i}",
                                             "channel": "hotline", "category": "network.signal",
                                             "severity": h.complaint, "stage": h.stage}, ""))
        if h.dnd is not None:
            events.append((t, "do-not-disturb", {**ev, "kind": "do_not_disturb",
                                                 "listed": h.dnd}, ""))
        if h.result is not None:
            events.append((t, "contact-outcomes", {**ev, "kind": "contact_result",
                                                   "request_id": h.request_id or f"RQ{i}",
                                                   "result": h.result}, ""))
    for i, r in enumerate(test.requests):
        t = offset_ms(r.at, start)
        req = {**base, "event_id": f"r{i}", "event_time": _dt(t), "kind": "contact_request",
               "request_id": r.request_id or f"RQ-{i + 1}", "campaign_id": "CMP-TEST",
               "purpose": r.purpose, "channel": r.channel}
        if r.scheduled_for is not None:
            req["scheduled_for"] = _dt(offset_ms(r.scheduled_for, start))
        if r.timezone is not None:
            req["timezone"] = r.timezone
        events.append((t, "contact-requests", req, f"request {i + 1}"))
    # history at its own time, requests in file order after history at the same instant
    for t, topic, payload, label in sorted(events, key=lambda e: (e[0], e[1] == "contact-requests")):
        try:
            event = decode(topic, orjson.dumps(payload))
        except ValidationError as exc:
            out.failures.append(f"{label or topic}: invalid event: {exc.errors()[0]['msg']}")
            continue
        result = step.apply(state, event, _ctx(topic, t), reads)
        if result.changed:
            state = result.state
        if not isinstance(event, ContactRequest):
            continue
        spec = test.requests[int(label.split()[-1]) - 1]
        if spec.expect is None:
            continue
        if spec.expect.decision == "none":
            if result.outputs:
                out.failures.append(f"{label}: expected no decision (already decided), got "
                                    f"{result.outputs[0].value.decision}")
            continue
        if len(result.outputs) != 1:
            out.failures.append(f"{label}: expected one decision, got {len(result.outputs)}")
            continue
        d = result.outputs[0].value
        e = spec.expect
        if d.decision != e.decision or list(d.reasons) != list(e.reasons):
            out.failures.append(f"{label}: expected {e.decision} {e.reasons}, got "
                                f"{d.decision} {list(d.reasons)}")
        if e.exempted is not None and list(d.exempted) != list(e.exempted):
            out.failures.append(f"{label}: expected exempted {e.exempted}, got "
                                f"{list(d.exempted)}")
        if e.allowed_after != "unset":
            want = None if e.allowed_after is None else offset_ms(e.allowed_after, start)
            got = None if d.allowed_after is None else int(d.allowed_after.timestamp() * 1000)
            if want != got:
                out.failures.append(f"{label}: expected allowed_after {_iso(want)}, got "
                                    f"{_iso(got)}")
    return out


def packaged_tests() -> list[Path]:
    """The tests shipped with the packaged policy (``agents/rules/contact-tests/*.yaml``)."""
    from importlib import resources
    folder = resources.files("agents.rules").joinpath("contact-tests")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml"))
