"""The contact policy: data an operator reads (``agents/rules/contact-policy.yaml``),
checked and compiled like the audit catalog, and a pure :meth:`Policy.decide`.

Each rule has a stable ``id``, the ``reason`` code it puts on a decision, a
``description`` an operator reads, the ``purposes`` (and optionally ``channels``) it
covers, a condition ``expr`` in the audit's expression language over the functions of
:mod:`agents.contact.functions`, an optional ``unless`` (an exemption: the rule held but
is lifted, and the decision lists it under ``exempted``), and a ``precedence``. Two rule
shapes carry their own test, because the policy can then say *when* the request would be
allowed: ``quiet_hours`` (a local-time window) and ``cap`` (at most ``max`` allowed
contacts per subscriber, or per subscriber and channel, in a rolling ``window``).

A request is suppressed when **any** rule applies; every rule is evaluated and every
reason that applies is listed (order never hides one), sorted by precedence (lower
first, then file order). Precedence therefore decides which reason is the *primary* one
(first in the list, the ``reason`` label of the decisions metric), never whether a
request passes. :func:`load_policy` raises :class:`~streams.errors.RuleError` naming
``file:line[:col]`` for every problem; a policy that loads never fails at run time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.audit.catalog import _at, _pydantic_msg, read_rule_file
from agents.audit.durations import parse_duration
from agents.audit.expr import Compiled, ExprError, compile_expr
from agents.audit.yamlmarks import Document, YamlProblem, compose_document, line_of
from agents.contact.functions import CHANNELS, PURPOSES, ContactEnv
from agents.contact.functions import CONTACT_FUNCTIONS as FUNCTIONS
from streams.errors import RuleError

Where = int | tuple[int, int] | None
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_OFFSET = re.compile(r"^([+-])(\d\d):(\d\d)$")
MINUTE_MS = 60_000
DAY_MS = 86_400_000


def zone(name: str) -> tzinfo:
    """An IANA zone (``Asia/Shanghai``) or a fixed offset (``+08:00``); raises ValueError."""
    m = _OFFSET.match(name)
    if m:
        sign, hh, mm = m.groups()
        minutes = (int(hh) * 60 + int(mm)) * (-1 if sign == "-" else 1)
        return timezone(timedelta(minutes=minutes))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as "
                         "Asia/Shanghai or an offset such as +08:00") from exc


class QuietHoursSpec(BaseModel):
    """``{start: "21:00", end: "08:00"}``: no contact from start to end, local time (the
    window may cross midnight)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: str = Field(pattern=_HHMM.pattern)
    end: str = Field(pattern=_HHMM.pattern)


class CapSpec(BaseModel):
    """``{per: subscriber, window: 7d, max: 2}``: allowed contacts in a rolling window."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per: Literal["subscriber", "channel"]
    window: str | int
    max: int = Field(ge=1, le=1000)

    _check_window = field_validator("window")(lambda cls, v: (parse_duration(v), v)[1])


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)
    reason: str = Field(pattern=r"^[a-z0-9_]+$", max_length=64)
    description: str = Field(min_length=1)
    precedence: int = Field(ge=0, le=1000)
    purposes: list[Literal["marketing", "service"]] = Field(min_length=1)
    channels: list[Literal[tuple(CHANNELS)]] | None = None  # type: ignore[valid-type]
    expr: str | None = None
    unless: str | None = None
    quiet_hours: QuietHoursSpec | None = None
    cap: CapSpec | None = None


class PolicySpec(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    policy_version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9:_.@/-]{0,63}$")
    timezone: str = "+08:00"
    #: how long a decided request id is remembered (a redelivery later is decided again)
    remember: str | int = "30d"
    rules: list[RuleSpec] = Field(min_length=1)

    _check_remember = field_validator("remember")(lambda cls, v: (parse_duration(v), v)[1])


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A compiled rule."""

    id: str
    reason: str
    description: str
    precedence: int
    order: int
    purposes: frozenset[str]
    channels: frozenset[str] | None
    test: Compiled | None
    unless: Compiled | None
    quiet: tuple[int, int] | None      # minutes after local midnight: start, end
    cap_per: str | None
    cap_window_ms: int
    cap_max: int
    line: int | None

    @property
    def timed(self) -> bool:
        """The rule can say when it stops applying (quiet hours, caps)."""
        return self.quiet is not None or self.cap_per is not None

    def covers(self, purpose: str, channel: str) -> bool:
        return purpose in self.purposes and (self.channels is None or channel in self.channels)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What the policy decided for one request (pure data; the step turns it into a
    ``contact-decisions`` record)."""

    decision: Literal["allow", "suppress"]
    reasons: list[str]
    policy_version: str
    allowed_after_ms: int | None = None
    exempted: list[str] = field(default_factory=list)
    #: the rule ids that applied, in the order of ``reasons``
    rules: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str:
        """The first reason (highest precedence), ``none`` when allowed."""
        return self.reasons[0] if self.reasons else "none"


def contact_time_ms(request: Any, now_ms: int) -> int:
    """When the contact would happen: ``scheduled_for`` if given, else ``now_ms``."""
    when = getattr(request, "scheduled_for", None)
    return int(when.timestamp() * 1000) if when is not None else now_ms


@dataclass(frozen=True)
class Policy:
    """A loaded policy; :meth:`decide` is pure (no I/O, no clock)."""

    source: str
    version: str
    rules: tuple[Rule, ...]
    tz: tzinfo = UTC
    remember_ms: int = 30 * DAY_MS

    @property
    def max_cap_window_ms(self) -> int:
        return max((r.cap_window_ms for r in self.rules if r.cap_per), default=0)

    def subscriber_zone(self, request: Any, view: Mapping[str, Any] | None) -> tzinfo:
        """The request's ``timezone``, else the view's profile ``timezone`` when a source
        system reports one, else the policy's default zone."""
        for name in (getattr(request, "timezone", None),
                     ((view or {}).get("profile", {}).get("timezone") or {}).get("v")):
            if name:
                try:
                    return zone(str(name))
                except ValueError:
                    continue
        return self.tz

    def decide(self, request: Any, reads: Mapping[str, dict[str, Any] | None],
               own_state: dict[str, Any] | None, now_ms: int) -> PolicyDecision:
        """Decide ``request`` at event time ``now_ms`` (see the module docstring).

        ``reads``: the other steps' state for the subscriber (``unified-view``, ``audit``,
        ``foresee``; a missing name means the step is not in the pipeline);
        ``own_state``: the contact-policy step's state (history of contacts, complaints,
        refusals, do-not-disturb entry), see :mod:`agents.contact.history`.
        """
        at = contact_time_ms(request, now_ms)
        purpose, channel = str(request.purpose), str(request.channel)
        tz = self.subscriber_zone(request, reads.get("unified-view"))
        env = ContactEnv(request, reads, own_state, at)
        applied: list[Rule] = []
        exempted: list[str] = []
        for rule in self.rules:
            if not rule.covers(purpose, channel):
                continue
            if rule.test is not None and not rule.test.fn(env):
                continue
            if rule.quiet is not None and not _in_quiet(rule.quiet, at, tz):
                continue
            if rule.cap_per is not None and _cap_free(rule, own_state, at, channel) is None:
                continue
            if rule.unless is not None and rule.unless.fn(env):
                if rule.reason not in exempted:
                    exempted.append(rule.reason)
                continue
            applied.append(rule)
        if not applied:
            return PolicyDecision("allow", [], self.version, None, exempted)
        applied.sort(key=lambda r: (r.precedence, r.order))
        reasons = list(dict.fromkeys(r.reason for r in applied))
        after = self._allowed_after(applied, request, reads, own_state, at, tz, channel)
        return PolicyDecision("suppress", reasons, self.version, after, exempted,
                              [r.id for r in applied])

    def _allowed_after(self, applied: list[Rule], request: Any,
                       reads: Mapping[str, dict[str, Any] | None],
                       own: dict[str, Any] | None, at: int, tz: tzinfo,
                       channel: str) -> int | None:
        """The earliest instant no timed rule applies, if only timed rules applied.

        Moving past one window may land in another (a cap that frees at 23:00 falls in the
        quiet hours), so the instant is pushed forward until no timed rule applies.
        """
        if any(not r.timed for r in applied):
            return None
        timed = [r for r in self.rules if r.timed and r.covers(str(request.purpose), channel)]
        t = at
        for _ in range(16):
            env = ContactEnv(request, reads, own, t)
            nxt = t
            for rule in timed:
                if rule.test is not None and not rule.test.fn(env):
                    continue
                if rule.unless is not None and rule.unless.fn(env):
                    continue
                if rule.quiet is not None and _in_quiet(rule.quiet, t, tz):
                    nxt = max(nxt, _quiet_end(rule.quiet, t, tz))
                elif rule.cap_per is not None:
                    free = _cap_free(rule, own, t, channel)
                    if free is not None:
                        nxt = max(nxt, free)
            if nxt == t:
                return t
            t = nxt
        return None


# --- quiet hours and caps --------------------------------------------------------------------
def _local_minute(t: int, tz: tzinfo) -> int:
    local = datetime.fromtimestamp(t / 1000, tz)
    return local.hour * 60 + local.minute


def _in_quiet(window: tuple[int, int], t: int, tz: tzinfo) -> bool:
    start, end = window
    m = _local_minute(t, tz)
    return start <= m < end if start < end else (m >= start or m < end)


def _quiet_end(window: tuple[int, int], t: int, tz: tzinfo) -> int:
    """The first instant after ``t`` at local ``end`` (the window's end), DST-aware."""
    end = window[1]
    local = datetime.fromtimestamp(t / 1000, tz)
    day = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if day <= local:
        day = (local + timedelta(days=1)).replace(hour=end // 60, minute=end % 60,
                                                  second=0, microsecond=0)
    # a wall time that does not exist (DST gap) normalises forward through UTC
    return int(day.astimezone(UTC).timestamp() * 1000)


def _cap_free(rule: Rule, own: dict[str, Any] | None, at: int, channel: str) -> int | None:
    """None when the cap leaves room at ``at``; else the instant it does again.

    Counts the allowed contacts (``own["contacts"]``: ``[t, channel, purpose, request_id]``)
    of the rule's purposes (and channel, for ``per: channel``) in ``(at - window, at]``,
    leaving out those a ``not_reached`` result removed.
    """
    window = rule.cap_window_ms
    times = sorted(c[0] for c in (own or {}).get("contacts", ())
                   if at - window < c[0] <= at and c[2] in rule.purposes
                   and (rule.cap_per == "subscriber" or c[1] == channel))
    if len(times) < rule.cap_max:
        return None
    return times[len(times) - rule.cap_max] + window


# --- loading ---------------------------------------------------------------------------------
def load_policy(path: str | Path | Any | None = None) -> Policy:
    """Read, validate and compile a policy file (default: the packaged one)."""
    return parse_policy(*read_rule_file(path, "contact-policy.yaml", "policy file"))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate and compile policy ``text``; errors name ``source``, the line and column."""
    try:
        doc = compose_document(text)
    except YamlProblem as exc:
        where = (exc.line, exc.col) if exc.line and exc.col else exc.line
        raise RuleError(f"{source}:{_at(where)}: {exc}") from None
    data = doc.data
    if not isinstance(data, dict):
        raise RuleError(f"{source}:1: a policy file is a mapping with 'version: 1', "
                        "'policy_version' and 'rules: [...]'")
    errors: list[tuple[Where, str]] = []
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            errors.append((line_of(doc.lines, _trim(loc)), f"{_where(data, loc)}: "
                           f"{_msg(err)}"))
        raise _error(source, errors) from None
    try:
        tz = zone(spec.timezone)
    except ValueError as exc:
        errors.append((line_of(doc.lines, ("timezone",)), f"field 'timezone': {exc}"))
        tz = UTC
    rules = _compile(spec, doc, errors)
    if errors:
        raise _error(source, errors)
    return Policy(source, spec.policy_version, tuple(rules), tz, parse_duration(spec.remember))


def _trim(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pydantic adds the literal's name to a location (``channels.0.literal[...]``)."""
    return tuple(p for p in loc if not (isinstance(p, str) and "[" in p))


def _msg(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field: remove it or check its spelling (see docs/contact-policy.md)"
    return _pydantic_msg(err)


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    loc = _trim(loc)
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        try:
            rid = data["rules"][loc[1]].get("id", f"#{loc[1] + 1}")
        except (KeyError, IndexError, TypeError, AttributeError):
            rid = f"#{loc[1] + 1}"
        rest = ".".join(str(p) for p in loc[2:])
        return f"rule {rid!r}" + (f" field {rest!r}" if rest else "")
    return "field " + ".".join(str(p) for p in loc) if loc else "document"


def _error(source: str, errors: list[tuple[Where, str]]) -> RuleError:
    lines = [f"{source}:{_at(where)}: {msg}" for where, msg in errors]
    err = RuleError("\n".join(lines))
    err.problems = lines  # type: ignore[attr-defined]
    return err


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _compile(spec: PolicySpec, doc: Document, errors: list[tuple[Where, str]]) -> list[Rule]:
    rules: list[Rule] = []
    first: dict[str, int | None] = {}
    for i, rs in enumerate(spec.rules):
        base = ("rules", i)
        n_before = len(errors)

        def fail(path: tuple[Any, ...], message: str, col: int | None = None,
                 base: tuple[Any, ...] = base, rid: str = rs.id) -> None:
            where: Where = line_of(doc.lines, (*base, *path))
            if col is not None:
                where = doc.position((*base, *path), col) or where
            errors.append((where, f"rule {rid!r}: {message}"))

        if rs.id in first:
            fail(("id",), f"duplicate rule id (first on line {first[rs.id]}): ids must be "
                          "unique; rename one")
            continue
        first[rs.id] = line_of(doc.lines, (*base, "id"))
        if rs.quiet_hours is not None and rs.cap is not None:
            fail(("cap",), "a rule has quiet_hours or cap, not both: split it in two rules")
        if rs.expr is None and rs.quiet_hours is None and rs.cap is None:
            fail(("expr",), "expr is required (unless the rule has quiet_hours or cap)")
        if len(set(rs.purposes)) != len(rs.purposes):
            fail(("purposes",), "list each purpose once")

        def expression(name: str, text: str | None) -> Compiled | None:
            if text is None:
                return None
            try:
                return compile_expr(text, None, FUNCTIONS)
            except ExprError as exc:
                fail((name,), f"{name}: {exc}", exc.col)
                return None

        test = expression("expr", rs.expr)
        unless = expression("unless", rs.unless)
        quiet = None
        if rs.quiet_hours is not None:
            quiet = (_minutes(rs.quiet_hours.start), _minutes(rs.quiet_hours.end))
            if quiet[0] == quiet[1]:
                fail(("quiet_hours",), "start and end are equal: the window would be empty")
        window = parse_duration(rs.cap.window) if rs.cap else 0
        if rs.cap is not None and window <= 0:
            fail(("cap", "window"), "the window must be longer than 0")
        if len(errors) > n_before:
            continue
        rules.append(Rule(
            id=rs.id, reason=rs.reason, description=" ".join(rs.description.split()),
            precedence=rs.precedence, order=i, purposes=frozenset(rs.purposes),
            channels=frozenset(rs.channels) if rs.channels is not None else None,
            test=test, unless=unless, quiet=quiet,
            cap_per=rs.cap.per if rs.cap else None, cap_window_ms=window,
            cap_max=rs.cap.max if rs.cap else 0, line=line_of(doc.lines, base)))
    return rules


__all__ = ["PURPOSES", "Policy", "PolicyDecision", "Rule", "contact_time_ms", "load_policy",
           "parse_policy", "zone"]
