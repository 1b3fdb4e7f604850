"""The audit rule catalog: YAML shaped like Prometheus alerting rules, checked and compiled.

A catalog is data an operator's engineers review like code: ``version: 1``, optional
``timezone`` and display ``names``, and ``groups`` of rules, each with an ``expr`` over the
unified view, a grace period (``for``), a severity with optional escalations, who is told
(``notify``), labels and annotation templates. :func:`load_catalog` validates everything
at once and raises :class:`~streams.errors.RuleError` listing every problem as
``file:line: what is wrong and what to write instead``; a catalog that loads is compiled
(expressions into closures, templates into parts) and never fails at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.audit.durations import parse_duration
from agents.audit.expr import Compiled, ExprError, compile_expr
from agents.audit.facts import Dep
from agents.audit.templates import LIVE, RESOLVED_ANNOTATIONS, Template, TemplateError
from agents.audit.yamlmarks import Document, YamlProblem, compose_document, line_of
from streams.errors import RuleError

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
RESERVED_LABELS = frozenset({"rule", "severity", "item"})
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OFFSET = re.compile(r"^([+-])(\d\d):(\d\d)$")
#: Where a problem is: a line, a (line, column), or unknown.
Where = int | tuple[int, int] | None


def _duration(value: Any) -> int:
    return parse_duration(value)


class EscalationSpec(BaseModel):
    """``{after: 2h, severity: critical}``: the severity once the condition held that long."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    after: str | int
    severity: Severity

    _check_after = field_validator("after")(lambda cls, v: (_duration(v), v)[1])


class RuleSpec(BaseModel):
    """One rule as written in the file (see docs/audit.md for every field)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)
    description: str = ""
    each: Literal["product", "charge", "grant"] | None = None
    expr: str = Field(min_length=1)
    since: str | None = None
    for_: str | int = Field(alias="for")
    lateness: str | int | None = None
    settle: str | int | None = None
    severity: Severity
    escalate: list[EscalationSpec] = Field(default_factory=list)
    notify: list[Literal["technician", "agent"]] = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str]

    _check_for = field_validator("for_")(lambda cls, v: (_duration(v), v)[1])
    _check_late = field_validator("lateness", "settle")(
        lambda cls, v: v if v is None else (_duration(v), v)[1])


class GroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    rules: list[RuleSpec] = Field(min_length=1)


class CatalogSpec(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    timezone: str = Field(default="+00:00", pattern=_OFFSET.pattern)
    names: dict[str, str] = Field(default_factory=dict)
    groups: list[GroupSpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A compiled rule, ready for the audit step."""

    id: str
    group: str
    description: str
    each: str | None
    test: Compiled
    since: Compiled | None
    for_ms: int
    severity: str
    escalate: tuple[tuple[int, str], ...]
    technician: bool
    agent: bool
    labels: dict[str, str]
    systems: tuple[str, ...]
    annotations: dict[str, Template]
    capture: tuple[str, ...]
    line: int | None
    #: the rule's own allowed lateness and hint settle time (None: the worker's lateness)
    lateness_ms: int | None = None
    settle_ms: int | None = None

    @property
    def deps(self) -> frozenset[Dep]:
        return self.test.deps

    def severity_after(self, held_ms: int) -> str:
        """Severity once the condition has held ``held_ms`` (escalations applied)."""
        sev = self.severity
        for after, s in self.escalate:
            if held_ms >= after:
                sev = s
        return sev

    def next_escalation(self, since: int, now: int) -> int | None:
        """The instant of the next escalation after ``now``, if any."""
        for after, _ in self.escalate:
            if since + after > now:
                return since + after
        return None


@dataclass(frozen=True)
class Catalog:
    """Every rule of a file, with the display names and the local UTC offset (minutes)."""

    source: str
    rules: tuple[Rule, ...]
    names: dict[str, str] = field(default_factory=dict)
    offset_min: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {r.id: r for r in self.rules})

    def get(self, rule_id: str) -> Rule | None:
        return self.by_id.get(rule_id)  # type: ignore[attr-defined]


def default_catalog_path() -> Any:
    """The catalog shipped with Foresight (``agents/rules/audit.yaml``)."""
    return resources.files("agents.rules").joinpath("audit.yaml")


def read_rule_file(path: str | Path | Any | None, packaged: str,
                   what: str = "rules file") -> tuple[str, str]:
    """``(text, source)`` of a rules-as-data file: ``path``, or the packaged
    ``agents/rules/<packaged>`` when None; ``source`` is the name errors give."""
    target = resources.files("agents.rules").joinpath(packaged) if path is None else path
    source = str(path) if path is not None else f"agents/rules/{packaged}"
    try:
        text = target.read_text(encoding="utf-8") if hasattr(target, "read_text") \
            else Path(target).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"{source}: cannot read the {what}: {exc.strerror}") from exc
    return text, source


def load_catalog(path: str | Path | Any | None = None) -> Catalog:
    """Read, validate and compile a catalog file (default: the packaged one)."""
    return parse_catalog(*read_rule_file(path, "audit.yaml"))


def parse_catalog(text: str, source: str = "<rules>") -> Catalog:
    """Validate and compile catalog ``text``; errors name ``source`` and the line."""
    try:
        doc = compose_document(text)
    except YamlProblem as exc:
        where = (exc.line, exc.col) if exc.line and exc.col else exc.line
        raise RuleError(f"{source}:{_at(where)}: {exc}") from None
    data, lines = doc.data, doc.lines
    if not isinstance(data, dict):
        raise RuleError(f"{source}:1: a rules file is a mapping with 'version: 1' and "
                        "'groups: [...]'")
    errors: list[tuple[Where, str]] = []
    try:
        spec = CatalogSpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            errors.append((line_of(lines, loc), f"{_where(data, loc)}: {_pydantic_msg(err)}"))
        raise _error(source, errors) from None
    rules = _compile(spec, doc, errors)
    if errors:
        raise _error(source, errors)
    sign, hh, mm = _OFFSET.match(spec.timezone).groups()  # type: ignore[union-attr]
    offset = (int(hh) * 60 + int(mm)) * (-1 if sign == "-" else 1)
    return Catalog(source, tuple(rules), dict(spec.names), offset)


def _at(where: Where) -> str:
    """``12`` or ``12:7`` (line:column, as compilers print it, so editors jump there)."""
    if isinstance(where, tuple):
        return f"{where[0]}:{where[1]}"
    return str(where or "?")


def _error(source: str, errors: list[tuple[Where, str]]) -> RuleError:
    lines = [f"{source}:{_at(where)}: {msg}" for where, msg in errors]
    err = RuleError("\n".join(lines))
    err.problems = lines  # type: ignore[attr-defined]
    return err


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    """``rule 'x' field 'for'`` for a pydantic location inside the document."""
    if len(loc) >= 4 and loc[0] == "groups" and loc[2] == "rules":
        try:
            rid = data["groups"][loc[1]]["rules"][loc[3]].get("id", f"#{loc[3] + 1}")
        except (KeyError, IndexError, TypeError, AttributeError):
            rid = f"#{loc[3]}"
        rest = ".".join(str(p) for p in loc[4:])
        return f"rule {rid!r}" + (f" field {rest!r}" if rest else "")
    return "field " + ".".join(str(p) for p in loc) if loc else "document"


def _pydantic_msg(err: dict[str, Any]) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        return "is required"
    if err["type"] == "extra_forbidden":
        return "unknown field: remove it or check its spelling (see docs/audit.md)"
    return msg


def _compile(spec: CatalogSpec, doc: Document, errors: list[tuple[Where, str]]) -> list[Rule]:
    lines = doc.lines
    rules: list[Rule] = []
    first: dict[str, int | None] = {}
    for g, group in enumerate(spec.groups):
        for r, rs in enumerate(group.rules):
            base = ("groups", g, "rules", r)

            def fail(path: tuple[Any, ...], message: str, rid: str = rs.id,
                     base: tuple[Any, ...] = base, col: int | None = None) -> None:
                """``col``: a character offset in the value at ``path`` (an expression's
                column), reported as the file's line:column."""
                where: Where = line_of(lines, (*base, *path))
                if col is not None:
                    where = doc.position((*base, *path), col) or where
                errors.append((where, f"rule {rid!r}: {message}"))

            if rs.id in first:
                fail(("id",), f"duplicate rule id (first on line {first[rs.id]}): ids must be "
                              "unique across the file; rename one")
                continue
            first[rs.id] = line_of(lines, (*base, "id"))
            rule = _compile_rule(group.name, rs, fail, line_of(lines, base))
            if rule is not None:
                rules.append(rule)
    return rules


_WHY = {
    "summary": "it is the one line everyone reads",
    "guidance": "technicians need fix guidance with notify: technician",
    "script": "the agent reads it to the customer with notify: agent",
}


def _compile_rule(group: str, rs: RuleSpec, fail: Any, line: int | None) -> Rule | None:
    n = 0

    def bad(path: tuple[Any, ...], message: str, col: int | None = None) -> None:
        nonlocal n
        n += 1
        fail(path, message, col=col)

    def expression(name: str, text: str) -> Compiled | None:
        try:
            return compile_expr(text, rs.each)
        except ExprError as exc:
            bad((name,), f"{name}: {exc}", exc.col)
            return None

    test = expression("expr", rs.expr)
    since = expression("since", rs.since) if rs.since is not None else None
    escalate: list[tuple[int, str]] = []
    for i, e in enumerate(rs.escalate):
        after = parse_duration(e.after)
        if after <= 0 or (escalate and after <= escalate[-1][0]):
            bad(("escalate", i, "after"), "escalations need 'after' > 0, in increasing order")
        escalate.append((after, e.severity))
    if len(set(rs.notify)) != len(rs.notify):
        bad(("notify",), "notify lists technician and/or agent, each once")
    for name in rs.labels:
        if not _LABEL.match(name):
            bad(("labels", name), f"label name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
        elif name in RESERVED_LABELS:
            bad(("labels", name), f"label {name!r} is set by the audit itself; remove it")
    if "category" not in rs.labels:
        bad(("labels",), "labels need a 'category' (dashboards group alerts by it)")
    needed = {"summary"} | ({"guidance"} if "technician" in rs.notify else set()) \
        | ({"script"} if "agent" in rs.notify else set())
    for name in sorted(needed - set(rs.annotations)):
        bad(("annotations",), f"annotation {name!r} is required: {_WHY[name]}")
    annotations: dict[str, Template] = {}
    for name, text in rs.annotations.items():
        try:
            annotations[name] = Template.parse(text, rs.each,
                                               resolved=name in RESOLVED_ANNOTATIONS)
        except TemplateError as exc:
            bad(("annotations", name), f"annotation {name!r}: {exc}")
    if n or test is None:
        return None
    capture = frozenset().union(*(t.fields for t in annotations.values())) - LIVE
    systems = tuple(s.strip() for s in rs.labels.get("systems", "").split(",") if s.strip())
    return Rule(
        id=rs.id, group=group, description=rs.description, each=rs.each, test=test,
        since=since, for_ms=parse_duration(rs.for_), severity=rs.severity,
        escalate=tuple(escalate), technician="technician" in rs.notify,
        agent="agent" in rs.notify, labels=dict(rs.labels), systems=systems,
        annotations=annotations, capture=tuple(sorted(capture | {"msisdn"})), line=line,
        lateness_ms=None if rs.lateness is None else parse_duration(rs.lateness),
        settle_ms=None if rs.settle is None else parse_duration(rs.settle))
