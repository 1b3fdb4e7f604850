"""The rule expression language: a small, safe subset of Python expressions.

Expressions are parsed with :mod:`ast` and every node is checked against a whitelist
(boolean operators, comparisons, ``in``, ``not``, ``+ - *``, constants, ``item.<field>``,
``product(...).<field>`` and calls of the functions in :data:`agents.audit.facts.FUNCTIONS`).
The rule's text is never executed: the checked tree is translated once, at load time, into
the source of one Python function that only calls those functions and null-safe helpers
(see :class:`_Compiler`), and anything else (unknown names or functions, attributes starting with
``_``, subscripts, lambdas, comprehensions...) is a load error that says what is allowed.

Null (``null``/``None``) never raises: an attribute of null is null, ordering comparisons
with null are false, ``x in null`` is false, arithmetic with null is null. A rule over
facts a system never reported is therefore simply not true.

>>> from agents.audit.facts import Env
>>> c = compile_expr("status('bss') == 'active' and status('hss') in ('suspended', 'closed')")
>>> sorted(k for k, s in c.deps if s == 'hss')
['activated', 'closed', 'opened', 'resumed', 'suspended']
>>> view = {"systems": {"bss": {"status": {"v": "active", "t": 1}},
...                     "hss": {"status": {"v": "suspended", "t": 2}}}}
>>> bool(c.fn(Env(view)))
True
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.audit.durations import parse_duration
from agents.audit.facts import FUNCTIONS, Dep, Domain, Env, Function
from agents.audit.items import ITEM_KINDS, PRODUCT_DOMAINS, PRODUCT_FIELDS

Fn = Callable[[Env], Any]

ALLOWED = ("and, or, not, comparisons (== != < <= > >= in, not in, is null), + - *, "
           "constants (strings, numbers, true/false/null), item.<field>, product(id).<field> "
           "and calls of: " + ", ".join([*FUNCTIONS, "duration"]))


def _allowed(table: Mapping[str, Function]) -> str:
    return ALLOWED.split("and calls of:")[0] + "and calls of: " + ", ".join([*table, "duration"])


class ExprError(ValueError):
    """An expression that cannot be compiled.

    ``col`` is the 0-based character offset in the expression *as given* (line breaks
    included), so the catalog can turn it into the file's line and column even for a
    folded multi-line ``expr: >-``; None when the whole expression is at fault.
    """

    def __init__(self, message: str, col: int | None = None) -> None:
        super().__init__(message)
        self.col = col


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled expression: call ``fn(env)``.

    ``deps`` are the ``(event kind, system or None)`` pairs that can change its value
    through the functions it calls; ``item_kinds`` are the event kinds that change one item
    of an ``each`` rule (the event names the item, so only that item is re-evaluated).
    """

    source: str
    fn: Fn
    deps: frozenset[Dep]
    item_kinds: frozenset[str]
    functions: frozenset[str]


class _Const:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Code(str):
    """Python source of a checked sub-expression, over ``env`` and the compiler's names.

    ``domain`` is set when the sub-expression's values are enumerated (``status('bss')``,
    ``item.order``), so comparisons with a literal can be checked at load time.
    """

    domain: Domain | None = None


def _typed(code: str, domain: Domain | None) -> _Code:
    out = _Code(code)
    if domain is not None:
        out.domain = domain
    return out


def _lt(a: Any, b: Any) -> bool:
    try:
        return a is not None and b is not None and a < b
    except TypeError:
        return False


def _le(a: Any, b: Any) -> bool:
    try:
        return a is not None and b is not None and a <= b
    except TypeError:
        return False


def _gt(a: Any, b: Any) -> bool:
    return _lt(b, a)


def _ge(a: Any, b: Any) -> bool:
    return _le(b, a)


def _in(a: Any, b: Any) -> bool:
    try:
        return b is not None and a in b
    except TypeError:
        return False


def _not_in(a: Any, b: Any) -> bool:
    return not _in(a, b)


def _arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def null_safe(x: Any, y: Any) -> Any:
        if x is None or y is None:
            return None
        try:
            return op(x, y)
        except TypeError:
            return None
    return null_safe


def _neg(v: Any) -> Any:
    return -v if isinstance(v, int | float) else None


def _pos(v: Any) -> Any:
    return v if isinstance(v, int | float) else None


#: Comparisons written as Python operators (their semantics are already null-safe) ...
_INFIX: dict[type, str] = {ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not"}
#: ... and the others as calls of the helpers above (ordering and ``in`` with null is false).
_HELPERS: dict[str, Any] = {
    "_lt": _lt, "_le": _le, "_gt": _gt, "_ge": _ge, "_in": _in, "_not_in": _not_in,
    "_add": _arith(operator.add), "_sub": _arith(operator.sub), "_mul": _arith(operator.mul),
    "_neg": _neg, "_pos": _pos,
}
_CALLED: dict[type, str] = {ast.Lt: "_lt", ast.LtE: "_le", ast.Gt: "_gt", ast.GtE: "_ge",
                            ast.In: "_in", ast.NotIn: "_not_in"}
_ARITH: dict[type, str] = {ast.Add: "_add", ast.Sub: "_sub", ast.Mult: "_mul"}
_NAMES = {"true": True, "false": False, "null": None}


def _compare(op: ast.cmpop, a: str, b: str) -> _Code:
    infix = _INFIX.get(type(op))
    return _Code(f"({a} {infix} {b})" if infix else f"{_CALLED[type(op)]}({a}, {b})")


class _Compiler:
    """Checks the tree node by node and writes the equivalent Python source.

    Only this class writes that source, from whitelisted nodes: constants are ``repr`` of
    str/int/bool/None or names bound to the value, functions are names bound to the
    implementations in :data:`FUNCTIONS`, and nothing of the rule's text is copied into it.
    One function per expression removes the call per tree node that nested closures cost
    (the audit evaluates several rules per ``subscriber-state`` event).
    """

    def __init__(self, each: str | None, text: str = "",
                 functions: Mapping[str, Function] | None = None) -> None:
        self.each = ITEM_KINDS[each] if each else None
        self.table: Mapping[str, Function] = FUNCTIONS if functions is None else functions
        self.text = text
        self.deps: set[Dep] = set()
        self.item_kinds: set[str] = set()
        self.functions: set[str] = set()
        self.names: dict[str, Any] = dict(_HELPERS)
        self.temps = 0

    def fail(self, node: ast.AST, message: str) -> ExprError:
        return ExprError(message, self.col(node))

    def col(self, node: ast.AST) -> int | None:
        """Character offset of ``node`` in the text (``ast`` counts UTF-8 bytes)."""
        offset = getattr(node, "col_offset", None)
        if offset is None:
            return None
        return len(self.text.encode()[:offset].decode("utf-8", "ignore"))

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or type(node).__name__

    def bind(self, value: Any, prefix: str = "_k") -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def code(self, x: _Const | _Code) -> _Code:
        if isinstance(x, _Code):
            return x
        v = x.value
        if v is None or type(v) in (bool, int, str):
            return _Code(repr(v))
        return _Code(self.bind(v))

    def build(self, body: _Const | _Code, source: str) -> Fn:
        text = f"lambda env: {self.code(body)}"
        return eval(compile(text, f"<rule expression {source!r}>", "eval"),  # noqa: S307
                    {"__builtins__": {}, **self.names})

    def visit(self, node: ast.AST) -> _Const | _Code:
        method = getattr(self, "v_" + type(node).__name__, None)
        if method is None:
            allowed = ALLOWED if self.table is FUNCTIONS else _allowed(self.table)
            raise self.fail(node, f"{type(node).__name__} is not allowed in rule expressions; "
                                  f"allowed: {allowed}")
        return method(node)

    # --- leaves -------------------------------------------------------------------------
    def v_Constant(self, node: ast.Constant) -> _Const:
        if node.value is not None and not isinstance(node.value, str | int | float | bool):
            raise self.fail(node, f"constant {node.value!r} is not allowed: use strings, "
                                  "numbers, true, false or null")
        return _Const(node.value)

    def v_Name(self, node: ast.Name) -> _Const:
        if node.id in _NAMES:
            return _Const(_NAMES[node.id])
        if node.id == "item":
            raise self.fail(node, "use a field of the item, e.g. item.id"
                            if self.each else "'item' needs 'each: product|charge|grant'")
        raise self.fail(node, f"unknown name {node.id!r}: names are true, false, null and "
                              "item (in rules with each); call functions with ()")

    def v_Tuple(self, node: ast.Tuple | ast.List | ast.Set) -> _Const | _Code:
        parts = [self.visit(e) for e in node.elts]
        if all(isinstance(p, _Const) for p in parts):
            values = tuple(p.value for p in parts)  # type: ignore[union-attr]
            try:
                return _Const(frozenset(values))
            except TypeError:
                return _Const(values)
        # (status('hss'), status('bss')): a literal 'in' it must be a status
        domains = {p.domain for p in parts if isinstance(p, _Code)}
        only = next(iter(domains)) if len(domains) == 1 and len(parts) == len(
            [p for p in parts if isinstance(p, _Code)]) else None
        many = Domain(only.what, only.values, many=True) if only and not only.many else None
        return _typed("(" + "".join(f"{self.code(p)}, " for p in parts) + ")", many)

    v_List = v_Tuple
    v_Set = v_Tuple

    # --- operators ----------------------------------------------------------------------
    def v_BoolOp(self, node: ast.BoolOp) -> _Code:
        op = " and " if isinstance(node.op, ast.And) else " or "
        return _Code("(" + op.join(self.code(self.visit(v)) for v in node.values) + ")")

    def v_UnaryOp(self, node: ast.UnaryOp) -> _Const | _Code:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            if isinstance(operand, _Const):
                return _Const(not operand.value)
            return _Code(f"(not {operand})")
        if isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            if isinstance(operand, _Const) and isinstance(operand.value, int | float):
                return _Const(sign * operand.value)
            return _Code(f"{'_neg' if sign < 0 else '_pos'}({self.code(operand)})")
        raise self.fail(node, "only not, - and + are allowed as unary operators")

    def v_BinOp(self, node: ast.BinOp) -> _Code:
        helper = _ARITH.get(type(node.op))
        if helper is None:
            raise self.fail(node, "only + - * are allowed as arithmetic operators")
        a, b = self.code(self.visit(node.left)), self.code(self.visit(node.right))
        return _Code(f"{helper}({a}, {b})")

    def v_Compare(self, node: ast.Compare) -> _Code:
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot) \
                    and not (isinstance(right, ast.Constant) and right.value in (None, True, False)) \
                    and not (isinstance(right, ast.Name) and right.id in _NAMES):
                raise self.fail(node, "'is' compares only with null, true or false")
        nodes = [node.left, *node.comparators]
        visited = [self.visit(n) for n in nodes]
        for i, op in enumerate(node.ops):
            self.check_literal(op, nodes[i], visited[i], nodes[i + 1], visited[i + 1])
        terms = [self.code(v) for v in visited]
        if len(node.ops) == 1:
            return _compare(node.ops[0], terms[0], terms[1])
        # a chain (a < b < c): every middle term is evaluated once, as Python does
        parts = []
        left = terms[0]
        for i, op in enumerate(node.ops):
            right = terms[i + 1]
            if i + 1 < len(node.ops):
                self.temps += 1
                temp = _Code(f"_t{self.temps}")
                parts.append(_compare(op, left, _Code(f"({temp} := {right})")))
                left = temp
            else:
                parts.append(_compare(op, left, right))
        return _Code("(" + " and ".join(parts) + ")")

    def check_literal(self, op: ast.cmpop, left: ast.AST, a: _Const | _Code,
                      right: ast.AST, b: _Const | _Code) -> None:
        """A literal compared with an enumerated term must be one of its values.

        ``status('bss') == 'actve'`` is never true and ``!= 'actve'`` always: either way
        the rule is dead or always on, and nothing at run time would say so.
        """
        if isinstance(op, ast.Eq | ast.NotEq):
            for term, term_node, lit, lit_node in ((a, left, b, right), (b, right, a, left)):
                if isinstance(term, _Code) and term.domain and not term.domain.many \
                        and isinstance(lit, _Const):
                    self.check_values(term.domain, term_node, lit_node, (lit.value,))
        elif isinstance(op, ast.In | ast.NotIn):
            if isinstance(a, _Code) and a.domain and not a.domain.many \
                    and isinstance(b, _Const) and isinstance(b.value, frozenset | tuple):
                self.check_values(a.domain, left, right, tuple(b.value))
            elif isinstance(b, _Code) and b.domain and b.domain.many and isinstance(a, _Const):
                self.check_values(b.domain, right, left, (a.value,))

    def check_values(self, domain: Domain, term: ast.AST, at: ast.AST,
                     values: tuple[Any, ...]) -> None:
        bad = sorted({repr(v) for v in values
                      if isinstance(v, str | int | float) and v not in domain.values})
        if not bad:
            return
        for elt in getattr(at, "elts", ()):    # point at the misspelt member of a tuple
            if isinstance(elt, ast.Constant) and repr(elt.value) in bad:
                at = elt
                break
        never = "never contains" if domain.many else "is never"
        raise ExprError(f"{self.segment(term)} {never} {' or '.join(bad)}; allowed values "
                        f"({domain.what}): {', '.join(domain.values)} (a value that never "
                        "occurs leaves the rule dead or always true: check the spelling)",
                        self.col(at))

    # --- item fields and functions ------------------------------------------------------
    def v_Attribute(self, node: ast.Attribute) -> _Code:
        attr = node.attr
        if attr.startswith("_"):
            raise self.fail(node, f"attribute {attr!r} is not allowed: names starting with '_' "
                                  "are private")
        base = node.value
        if isinstance(base, ast.Name) and base.id == "item":
            if self.each is None:
                raise self.fail(node, "'item' needs 'each: product|charge|grant' on the rule")
            getter = self.each.fields.get(attr)
            if getter is None:
                raise self.fail(node, f"unknown field item.{attr} for each: {self.each.name}; "
                                      f"fields: {', '.join(self.each.fields)}")
            self.item_kinds.update(self.each.kinds)
            return _typed(f"{self.bind(getter, '_item_')}(env, env.item, env.item_id)",
                          self.each.domains.get(attr))
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) \
                and base.func.id == "product":
            self._call(base)  # validates the call and records its dependencies
            pgetter = PRODUCT_FIELDS.get(attr)
            if pgetter is None:
                raise self.fail(node, f"unknown field product(...).{attr}; "
                                      f"fields: {', '.join(PRODUCT_FIELDS)}")

            def product_field(env: Env, key: Any) -> Any:
                raw = env.view["products"].get(key) if key is not None else None
                return None if raw is None else pgetter(env, raw, key)
            arg = self.code(self.visit(base.args[0]))
            return _typed(f"{self.bind(product_field, '_product_')}(env, {arg})",
                          PRODUCT_DOMAINS.get(attr))
        raise self.fail(node, "attribute access is only allowed on item and product(...)")

    def v_Call(self, node: ast.Call) -> _Const | _Code:
        return self._call(node)

    def _call(self, node: ast.Call) -> _Const | _Code:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only the listed functions can be called, by name")
        name = node.func.id
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, f"{name}(): pass arguments by position only")
        if name == "duration":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant):
                raise self.fail(node, "duration() takes one constant, e.g. duration('10m')")
            try:
                return _Const(parse_duration(node.args[0].value))
            except ValueError as exc:
                raise self.fail(node, str(exc)) from None
        spec = self.table.get(name)
        if spec is None:
            raise self.fail(node, f"unknown function {name!r}; functions: "
                                  f"{', '.join([*self.table, 'duration'])}")
        low, high = spec.arity
        if not low <= len(node.args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise self.fail(node, f"{name}() takes {want} argument(s), got {len(node.args)}")
        args = [self.visit(a) for a in node.args]
        consts = [a.value if isinstance(a, _Const) else None for a in args]
        for index, allowed in spec.checks:
            value = consts[index]
            if isinstance(args[index], _Const) and value not in allowed:
                raise self.fail(node, f"{name}(): {value!r} is not one of {', '.join(allowed)}")
        self.deps.update(spec.deps(consts))
        self.functions.add(name)
        fn = f"_f_{name}"
        self.names[fn] = spec.impl
        return _typed(f"{fn}(" + ", ".join(["env", *(self.code(a) for a in args)]) + ")",
                      spec.domain(consts) if spec.domain else None)


def compile_expr(source: str, each: str | None = None,
                 functions: Mapping[str, Function] | None = None) -> Compiled:
    """Check and compile ``source``; raises :class:`ExprError` naming what is wrong.

    ``functions`` replaces the audit's function table (:data:`FUNCTIONS`) for another
    environment over the same language: the contact policy compiles its conditions with its
    own table (:mod:`agents.contact.functions`), whose functions take an
    :class:`~agents.audit.facts.Env` subclass.

    >>> try:
    ...     compile_expr("item.order == 'ordered'")
    ... except ExprError as exc:
    ...     print(exc)
    'item' needs 'each: product|charge|grant' on the rule
    """
    joined = " ".join(source.split("\n"))   # same length: offsets stay offsets in source
    text = joined.strip()
    lead = len(joined) - len(joined.lstrip())
    if not text:
        raise ExprError("the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        # offset 0/None: Python only found out at the end (``status('bss') ==``)
        col = exc.offset - 1 if exc.offset else len(text) - 1
        msg = exc.msg if exc.offset else f"{exc.msg}: the expression ends too early"
        raise ExprError(f"syntax error: {msg}", lead + min(col, len(text) - 1)) from None
    c = _Compiler(each, text, functions)
    try:
        body = c.visit(tree.body)
    except ExprError as exc:
        if exc.col is not None:
            exc.col += lead
        raise
    return Compiled(source, c.build(body, text), frozenset(c.deps), frozenset(c.item_kinds),
                    frozenset(c.functions))
