"""Unit tests for audit rules, in the manner of ``promtool test rules``: ``foresight rules test``.

A rule catalog is code an operator's engineers change; ``foresight rules check`` proves it
loads, but only a test proves a rule *fires* for the fault it was written for and stays
silent for the benign look-alike (a system that catches up within the grace period, a
charge refunded at once). A test file names the catalog, gives ``subscriber-state``
reports at offsets from a start time, and at chosen ``eval_time`` instants lists the alerts
(and optionally the agent hints) that must be active then, no more and no fewer::

    rule_files: [../audit.yaml]          # optional: default the packaged catalog
    tests:
      - name: "bss-active-hss-barred: barred for good"
        reports:
          - {at: 0s, system: bss, kind: activated}
          - {at: 0s, system: hss, kind: activated}
          - {at: 1m, system: hss, kind: suspended, reason: fraud}
        expect:
          - eval_time: 5m
            alerts: []                   # still in its grace period
          - eval_time: 7m
            alerts:
              - {rule: bss-active-hss-barred, severity: warning, starts_at: 1m}

The reports go through :class:`agents.audit.testing.AuditHarness`, which drives the
unified view and the audit exactly like the runtime (timers, event-time clock), so a test
needs no Kafka. See docs/audit.md ("Testing rules") for every field.
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.audit.catalog import Catalog, load_catalog
from agents.audit.durations import format_duration, parse_duration
from agents.audit.facts import iso as _iso
from agents.audit.testing import AuditHarness
from agents.audit.yamlmarks import YamlProblem, compose_document, line_of
from agents.unified_view import ms
from schemas.outputs import AgentHint, Alert
from schemas.registry import SUBSCRIBER_STATE, decode
from schemas.subscriber_state import SubscriberStateEvent
from streams.errors import RuleError

DEFAULT_START = "2026-11-26T00:00:00Z"
DEFAULT_SUBSCRIBER = "S00000001"
DEFAULT_MSISDN = "8613800001234"
DEFAULT_LATENESS = "2s"

#: event kind -> its model, to reject fields the kind does not have (the inbound schema
#: ignores unknown fields, so a misspelt optional field would silently vanish)
EVENT_MODELS: dict[str, type[BaseModel]] = {
    typing.get_args(m.model_fields["kind"].annotation)[0]: m
    for m in typing.get_args(typing.get_args(SubscriberStateEvent)[0])
}
#: fields every report carries, filled in by the runner
_ENVELOPE = {"schema_version", "event_id", "event_time", "subscriber_id", "msisdn", "kind",
             "system"}
#: time fields of events, which also accept offsets such as ``1h``
_TIME_FIELDS = {"due_by", "deadline"}

Instant = str | int | datetime


def _check_instant(value: Any) -> Any:
    """An offset (``0s``, ``1m``, ``5m30s``) or an absolute time with a zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone: add Z or +08:00")
        return value
    if isinstance(value, str) and not re.match(r"^\d{4}-", value):
        parse_duration(value)
        return value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither an offset such as 5m30s nor an ISO time"
                             ) from None
        if when.tzinfo is None:
            raise ValueError(f"{value} has no time zone: add Z or +08:00")
        return value
    parse_duration(value)          # 0 is fine, other bare numbers are ambiguous
    return value


def _one_catalog(files: list[str] | None) -> list[str] | None:
    if files is not None and len(files) != 1:
        raise ValueError("name exactly one catalog (the audit loads one rules file)")
    return files


def _instant_ms(value: Instant, start_ms: int) -> int:
    if isinstance(value, datetime):
        return ms(value)
    if isinstance(value, str) and re.match(r"^\d{4}-", value):
        return ms(datetime.fromisoformat(value))
    return start_ms + parse_duration(value)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportSpec(BaseModel):
    """One ``subscriber-state`` report; fields other than these are the event's own."""

    model_config = ConfigDict(extra="allow", frozen=True)
    at: Instant
    arrives: Instant | None = None
    system: str
    kind: str
    subscriber: str | None = None
    msisdn: str | None = None
    id: str | None = None

    _at = field_validator("at", "arrives")(lambda cls, v: v if v is None else _check_instant(v))


class AlertSpec(_Spec):
    """An alert that must be firing at ``eval_time``."""

    rule: str
    status: Literal["firing"] = "firing"
    severity: Literal["info", "warning", "critical"]
    item: str = ""
    subscriber: str | None = None
    starts_at: Instant | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    _at = field_validator("starts_at")(lambda cls, v: v if v is None else _check_instant(v))


class HintSpec(_Spec):
    """An agent hint that must be active at ``eval_time``; texts are substrings."""

    rule: str
    subscriber: str | None = None
    title: str | None = None
    cause: str | None = None
    script: str | None = None
    progress: str | None = None


class EvalSpec(_Spec):
    """What must be active at one instant: ``alerts: []`` asserts there is none."""

    eval_time: Instant
    alerts: list[AlertSpec] | None = None
    hints: list[HintSpec] | None = None

    _at = field_validator("eval_time")(lambda cls, v: _check_instant(v))


class TestSpec(_Spec):
    """One test. ``never`` lists rules that must send nothing at all during it: not even
    an alert resolved at once, which no ``eval_time`` would see (a benign look-alike must
    never page anyone)."""

    name: str = Field(min_length=1)
    start: Instant | None = None
    subscriber: str = DEFAULT_SUBSCRIBER
    msisdn: str = DEFAULT_MSISDN
    use: list[str] = Field(default_factory=list)
    reports: list[ReportSpec] = Field(default_factory=list)
    expect: list[EvalSpec] = Field(min_length=1)
    never: list[str] = Field(default_factory=list)

    _at = field_validator("start")(lambda cls, v: v if v is None else _check_instant(v))


class TestFileSpec(_Spec):
    rule_files: list[str] | None = None
    start: Instant = DEFAULT_START
    lateness: str | int = DEFAULT_LATENESS
    fixtures: dict[str, list[ReportSpec]] = Field(default_factory=dict)
    tests: list[TestSpec] = Field(min_length=1)

    _at = field_validator("start")(lambda cls, v: _check_instant(v))
    _files = field_validator("rule_files")(lambda cls, v: _one_catalog(v))
    _late = field_validator("lateness")(lambda cls, v: (parse_duration(v), v)[1])


# --- loading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Report:
    """A report ready to send: when it arrives at the audit, and the event."""

    arrives_ms: int
    order: int
    event: Any


@dataclass(frozen=True)
class Case:
    """One test, loaded: its reports in arrival order and its evaluations by time."""

    index: int
    name: str
    start_ms: int
    subscriber: str
    reports: tuple[Report, ...]
    evals: tuple[tuple[int, str, EvalSpec], ...]   # (instant, as written, spec)
    never: tuple[str, ...] = ()


@dataclass(frozen=True)
class TestFile:
    path: str
    catalog: Catalog
    lateness_ms: int
    cases: tuple[Case, ...]


def load_test_file(path: str | Path) -> TestFile:
    """Read and validate a test file and its catalog; :class:`RuleError` names the line."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"{source}: cannot read the test file: {exc.strerror}") from None
    try:
        doc = compose_document(text)
    except YamlProblem as exc:
        raise RuleError(f"{source}:{exc.line or '?'}: {exc}") from None
    if not isinstance(doc.data, dict):
        raise RuleError(f"{source}:1: a rule test file is a mapping with 'tests: [...]' "
                        "(see docs/audit.md, Testing rules)")
    errors: list[str] = []

    def fail(loc: tuple[Any, ...], message: str) -> None:
        errors.append(f"{source}:{line_of(doc.lines, loc) or '?'}: {message}")

    try:
        spec = TestFileSpec.model_validate(doc.data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            fail(loc, f"{_dotted(loc)}: {_message(err)}")
        raise RuleError("\n".join(errors)) from None
    catalog = _catalog(spec, Path(path), fail)
    file_start = _instant_ms(spec.start, 0)
    cases = []
    for i, test in enumerate(spec.tests):
        base: tuple[Any, ...] = ("tests", i)
        start = _instant_ms(test.start, 0) if test.start is not None else file_start
        reports: list[tuple[tuple[Any, ...], ReportSpec]] = []
        for u, name in enumerate(test.use):
            if name not in spec.fixtures:
                fail((*base, "use", u), f"test {i + 1}: unknown fixture {name!r}; fixtures: "
                                        f"{', '.join(spec.fixtures) or 'none'}")
                continue
            reports += [(("fixtures", name, j), r) for j, r in enumerate(spec.fixtures[name])]
        reports += [((*base, "reports", j), r) for j, r in enumerate(test.reports)]
        built = []
        for order, (loc, r) in enumerate(reports):
            event = _event(r, test, start, f"t{i + 1:03d}-r{order:03d}", loc, fail)
            if event is not None:
                arrives = _instant_ms(r.arrives if r.arrives is not None else r.at, start)
                built.append(Report(arrives, order, event))
        built.sort(key=lambda rep: (rep.arrives_ms, rep.order))
        evals = []
        for e, ev in enumerate(test.expect):
            if ev.alerts is None and ev.hints is None:
                fail((*base, "expect", e), f"test {i + 1}: eval_time {ev.eval_time} expects "
                                           "nothing: give alerts (alerts: [] for none) or hints")
            for a, alert in enumerate(ev.alerts or ()):
                if catalog is not None and catalog.get(alert.rule) is None:
                    fail((*base, "expect", e, "alerts", a, "rule"),
                         f"test {i + 1}: unknown rule {alert.rule!r} (not in {catalog.source})")
            for h, hint in enumerate(ev.hints or ()):
                if catalog is not None and catalog.get(hint.rule) is None:
                    fail((*base, "expect", e, "hints", h, "rule"),
                         f"test {i + 1}: unknown rule {hint.rule!r} (not in {catalog.source})")
            evals.append((_instant_ms(ev.eval_time, start), _show(ev.eval_time), ev))
        evals.sort(key=lambda x: x[0])
        for n, rule in enumerate(test.never):
            if catalog is not None and catalog.get(rule) is None:
                fail((*base, "never", n),
                     f"test {i + 1}: unknown rule {rule!r} (not in {catalog.source})")
        cases.append(Case(i + 1, test.name, start, test.subscriber, tuple(built), tuple(evals),
                          tuple(test.never)))
    if errors or catalog is None:   # a fixture's problem once, not once per test using it
        raise RuleError("\n".join(dict.fromkeys(errors)))
    return TestFile(source, catalog, parse_duration(spec.lateness), tuple(cases))


def _catalog(spec: TestFileSpec, path: Path, fail: Any) -> Catalog | None:
    if spec.rule_files is None:
        return load_catalog()
    target = path.parent / spec.rule_files[0]
    try:
        return load_catalog(target)
    except RuleError as exc:
        fail(("rule_files", 0), f"rule_files: {target} does not load:\n{exc}")
        return None


def _event(r: ReportSpec, test: TestSpec, start: int, event_id: str, loc: tuple[Any, ...],
           fail: Any) -> Any:
    model = EVENT_MODELS.get(r.kind)
    if model is None:
        fail((*loc, "kind"), f"unknown report kind {r.kind!r}; kinds: {', '.join(EVENT_MODELS)}")
        return None
    extra = dict(r.model_extra or {})
    known = set(model.model_fields) - _ENVELOPE
    for name in sorted(set(extra) - known):
        fail((*loc, name), f"{r.kind} reports have no field {name!r}; fields: "
                           f"{', '.join(sorted(known)) or 'none'}")
    for name in _TIME_FIELDS & set(extra):
        try:
            extra[name] = _iso(_instant_ms(_check_instant(extra[name]), start))
        except ValueError as exc:
            fail((*loc, name), f"{name}: {exc}")
            return None
    t = _instant_ms(r.at, start)
    raw = {**extra, "schema_version": 1, "event_id": r.id or event_id, "kind": r.kind,
           "system": r.system, "subscriber_id": r.subscriber or test.subscriber,
           "msisdn": r.msisdn or test.msisdn, "event_time": _iso(t)}
    try:
        return decode(SUBSCRIBER_STATE, orjson.dumps(raw))
    except ValidationError as exc:
        for err in exc.errors():
            name = next((p for p in err["loc"] if isinstance(p, str) and p != r.kind), None)
            fail((*loc, name) if name in extra else loc,
                 f"{r.kind} report: {'.'.join(str(p) for p in err['loc'][1:]) or 'event'}: "
                 f"{_message(err)}")
        return None
    except orjson.JSONEncodeError as exc:
        fail(loc, f"{r.kind} report: {exc}")
        return None


def _show(value: Instant) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "document"


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        return "is required"
    if err["type"] == "extra_forbidden":
        return "unknown field: remove it or check its spelling (see docs/audit.md, Testing rules)"
    return msg


# --- running ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Failure:
    """One evaluation whose active alerts or hints differ from the expected ones."""

    path: str
    index: int
    name: str
    eval_time: str
    message: str

    def __str__(self) -> str:
        return (f"{self.path}: test {self.index} ({self.name}) at eval_time {self.eval_time}: "
                f"{self.message}")


@dataclass
class FileResult:
    path: str
    tests: int = 0
    evaluations: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def failed_tests(self) -> int:
        return len({f.index for f in self.failures})


def run_test_file(path: str | Path, select: re.Pattern[str] | None = None) -> FileResult:
    """Load and run every test of ``path`` (only names matching ``select`` if given)."""
    tf = load_test_file(path)
    result = FileResult(tf.path)
    for case in tf.cases:
        if select is not None and not select.search(case.name):
            continue
        result.tests += 1
        result.evaluations += len(case.evals)
        result.failures += run_case(tf, case)
    return result


def harness(catalog: Catalog, lateness_ms: int) -> AuditHarness:
    """An :class:`AuditHarness` with the allowed lateness, if the harness takes one."""
    if "lateness_ms" in inspect.signature(AuditHarness.__init__).parameters:
        return AuditHarness(catalog, lateness_ms=lateness_ms)  # type: ignore[call-arg]
    return AuditHarness(catalog)


def run_case(tf: TestFile, case: Case) -> list[Failure]:
    h = harness(tf.catalog, tf.lateness_ms)
    pending = list(case.reports)
    failures = []
    for at, shown, spec in case.evals:
        while pending and pending[0].arrives_ms <= at:
            h.send(pending.pop(0).event)
        h.advance_to(at)
        for what, problem in (("alerts", _compare_alerts(h, spec, case)),
                              ("hints", _compare_hints(h, spec, case))):
            if problem:
                failures.append(Failure(tf.path, case.index, case.name, shown,
                                        f"{what}: {problem}"))
    if case.never:
        sent = [_got_alert(a, case, [], []) + f" {a.status}" for a in h.alerts()
                if a.rule_id in case.never]
        sent += [f"{x.source.removeprefix('audit:')} hint active={str(x.active).lower()}"
                 for x in h.hints() if x.source.removeprefix("audit:") in case.never]
        if sent:
            failures.append(Failure(
                tf.path, case.index, case.name, case.evals[-1][1],
                f"never: expected nothing sent by {', '.join(case.never)}, got "
                f"[{', '.join(sent)}]"))
    return failures


def active_alerts(h: AuditHarness) -> list[Alert]:
    """The latest record of every fingerprint, if it is firing (resolved ones have left)."""
    latest: dict[str, Alert] = {}
    for a in h.alerts():
        cur = latest.get(a.fingerprint)
        if cur is None or a.sequence >= cur.sequence:
            latest[a.fingerprint] = a
    return [a for a in latest.values() if a.status == "firing"]


def active_hints(h: AuditHarness) -> list[AgentHint]:
    latest: dict[str, AgentHint] = {}
    for x in h.hints():
        cur = latest.get(x.hint_id)
        if cur is None or x.sequence >= cur.sequence:
            latest[x.hint_id] = x
    return [x for x in latest.values() if x.active]


def _alert_ok(want: AlertSpec, got: Alert, case: Case) -> bool:
    return (got.rule_id == want.rule and got.severity == want.severity
            and got.labels.get("item", "") == want.item
            and got.subscriber_id == (want.subscriber or case.subscriber)
            and (want.starts_at is None
                 or ms(got.starts_at) == _instant_ms(want.starts_at, case.start_ms))
            and all(got.labels.get(k) == v for k, v in want.labels.items())
            and all(v in got.annotations.get(k, "") for k, v in want.annotations.items()))


def _hint_ok(want: HintSpec, got: AgentHint, case: Case) -> bool:
    return (got.source == f"audit:{want.rule}"
            and got.subscriber_id == (want.subscriber or case.subscriber)
            and all(text in getattr(got, name) for name in ("title", "cause", "script", "progress")
                    if (text := getattr(want, name)) is not None))


def _compare_alerts(h: AuditHarness, spec: EvalSpec, case: Case) -> str | None:
    if spec.alerts is None:
        return None
    got = active_alerts(h)
    if _matched(spec.alerts, got, lambda w, g: _alert_ok(w, g, case)):
        return None
    labels = sorted({k for w in spec.alerts for k in w.labels})
    keys = sorted({k for w in spec.alerts for k in w.annotations})
    return (f"expected [{', '.join(_want_alert(w) for w in spec.alerts)}], "
            f"got [{', '.join(_got_alert(g, case, labels, keys) for g in got)}]")


def _compare_hints(h: AuditHarness, spec: EvalSpec, case: Case) -> str | None:
    if spec.hints is None:
        return None
    got = active_hints(h)
    if _matched(spec.hints, got, lambda w, g: _hint_ok(w, g, case)):
        return None
    names = [n for n in ("title", "cause", "script", "progress")
             if any(getattr(w, n) is not None for w in spec.hints)] or ["title"]
    return (f"expected [{', '.join(_want_hint(w) for w in spec.hints)}], "
            f"got [{', '.join(_got_hint(g, names) for g in got)}]")


def _matched(wants: list[Any], gots: list[Any], ok: Any) -> bool:
    """A one-to-one match of expected and actual records (bipartite matching: a loose
    expectation must not take the record a stricter one needs)."""
    if len(wants) != len(gots):
        return False
    owner: dict[int, int] = {}

    def assign(w: int, seen: set[int]) -> bool:
        for g in range(len(gots)):
            if g not in seen and ok(wants[w], gots[g]):
                seen.add(g)
                if g not in owner or assign(owner[g], seen):
                    owner[g] = w
                    return True
        return False

    return all(assign(w, set()) for w in range(len(wants)))


def _fields(pairs: list[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={orjson.dumps(v).decode()}" for k, v in pairs)


def _want_alert(w: AlertSpec) -> str:
    pairs: list[tuple[str, Any]] = [("severity", w.severity), ("item", w.item)]
    if w.subscriber:
        pairs.append(("subscriber", w.subscriber))
    if w.starts_at is not None:
        pairs.append(("starts_at", _show(w.starts_at)))
    pairs += [(f"labels.{k}", v) for k, v in w.labels.items()]
    pairs += [(f"annotations.{k}~", v) for k, v in w.annotations.items()]
    return f"{w.rule}{{{_fields(pairs)}}}"


def _got_alert(g: Alert, case: Case, labels: list[str], keys: list[str]) -> str:
    """The actual alert, with the fields the expectations name (to compare by eye)."""
    offset = ms(g.starts_at) - case.start_ms
    pairs: list[tuple[str, Any]] = [("severity", g.severity), ("item", g.labels.get("item", ""))]
    if g.subscriber_id != case.subscriber:
        pairs.append(("subscriber", g.subscriber_id))
    pairs.append(("starts_at", format_duration(offset) if offset >= 0 else g.starts_at.isoformat()))
    pairs += [(f"labels.{k}", g.labels.get(k, "")) for k in labels]
    pairs += [(f"annotations.{k}", g.annotations.get(k, "")) for k in keys]
    return f"{g.rule_id}{{{_fields(pairs)}}}"


def _want_hint(w: HintSpec) -> str:
    pairs: list[tuple[str, Any]] = [(f"{n}~", v) for n in ("title", "cause", "script", "progress")
                                    if (v := getattr(w, n)) is not None]
    if w.subscriber:
        pairs.insert(0, ("subscriber", w.subscriber))
    return f"{w.rule}{{{_fields(pairs)}}}"


def _got_hint(g: AgentHint, names: list[str]) -> str:
    rule = g.source.removeprefix("audit:")
    return f"{rule}{{{_fields([(n, getattr(g, n)) for n in names])}}}"


def packaged_tests() -> list[Path]:
    """The tests shipped with the packaged catalog (``agents/rules/tests/*.yaml``)."""
    folder = resources.files("agents.rules").joinpath("tests")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml"))
