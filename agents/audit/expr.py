"""The rule expression language: a small, safe subset of Python expressions.

Expressions are parsed with :mod:`ast` and every node is checked against a whitelist
(boolean operators, comparisons, ``in``, ``not``, ``+ - *``, constants, ``item.<field>``,
``product(...).<field>`` and calls of the functions in :data:`agents.audit.facts.FUNCTIONS`).
Nothing is ever handed to ``eval``: the checked tree is compiled once, at load time, into
nested closures, and anything else (unknown names or functions, attributes starting with
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.audit.durations import parse_duration
from agents.audit.facts import FUNCTIONS, Dep, Env
from agents.audit.items import ITEM_KINDS, PRODUCT_FIELDS

Fn = Callable[[Env], Any]

ALLOWED = ("and, or, not, comparisons (== != < <= > >= in, not in, is null), + - *, "
           "constants (strings, numbers, true/false/null), item.<field>, product(id).<field> "
           "and calls of: " + ", ".join([*FUNCTIONS, "duration"]))


class ExprError(ValueError):
    """An expression that cannot be compiled; ``col`` is the 0-based offset in the text."""

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


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: _lt, ast.LtE: _le, ast.Gt: _gt,
    ast.GtE: _ge, ast.In: _in, ast.NotIn: _not_in, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
}
_NAMES = {"true": True, "false": False, "null": None}


def _fn(x: _Const | Fn) -> Fn:
    if isinstance(x, _Const):
        value = x.value
        return lambda env: value
    return x


class _Compiler:
    def __init__(self, each: str | None) -> None:
        self.each = ITEM_KINDS[each] if each else None
        self.deps: set[Dep] = set()
        self.item_kinds: set[str] = set()
        self.functions: set[str] = set()

    def fail(self, node: ast.AST, message: str) -> ExprError:
        return ExprError(message, getattr(node, "col_offset", None))

    def visit(self, node: ast.AST) -> _Const | Fn:
        method = getattr(self, "v_" + type(node).__name__, None)
        if method is None:
            raise self.fail(node, f"{type(node).__name__} is not allowed in rule expressions; "
                                  f"allowed: {ALLOWED}")
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

    def v_Tuple(self, node: ast.Tuple | ast.List | ast.Set) -> _Const | Fn:
        parts = [self.visit(e) for e in node.elts]
        if all(isinstance(p, _Const) for p in parts):
            values = tuple(p.value for p in parts)  # type: ignore[union-attr]
            try:
                return _Const(frozenset(values))
            except TypeError:
                return _Const(values)
        fns = [_fn(p) for p in parts]
        return lambda env: tuple(f(env) for f in fns)

    v_List = v_Tuple
    v_Set = v_Tuple

    # --- operators ----------------------------------------------------------------------
    def v_BoolOp(self, node: ast.BoolOp) -> Fn:
        fns = [_fn(self.visit(v)) for v in node.values]
        if isinstance(node.op, ast.And):
            if len(fns) == 2:
                a, b = fns
                return lambda env: a(env) and b(env)
            if len(fns) == 3:
                a, b, c = fns
                return lambda env: a(env) and b(env) and c(env)

            def all_of(env: Env) -> Any:
                v: Any = True
                for f in fns:
                    v = f(env)
                    if not v:
                        return v
                return v
            return all_of
        if len(fns) == 2:
            a, b = fns
            return lambda env: a(env) or b(env)

        def any_of(env: Env) -> Any:
            v: Any = False
            for f in fns:
                v = f(env)
                if v:
                    return v
            return v
        return any_of

    def v_UnaryOp(self, node: ast.UnaryOp) -> _Const | Fn:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            if isinstance(operand, _Const):
                return _Const(not operand.value)
            return lambda env: not operand(env)
        if isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            if isinstance(operand, _Const) and isinstance(operand.value, int | float):
                return _Const(sign * operand.value)
            f = _fn(operand)

            def negate(env: Env) -> Any:
                v = f(env)
                return sign * v if isinstance(v, int | float) else None
            return negate
        raise self.fail(node, "only not, - and + are allowed as unary operators")

    def v_BinOp(self, node: ast.BinOp) -> Fn:
        op = _ARITH.get(type(node.op))
        if op is None:
            raise self.fail(node, "only + - * are allowed as arithmetic operators")
        a, b = _fn(self.visit(node.left)), _fn(self.visit(node.right))

        def arith(env: Env) -> Any:
            x, y = a(env), b(env)
            if x is None or y is None:
                return None
            try:
                return op(x, y)
            except TypeError:
                return None
        return arith

    def v_Compare(self, node: ast.Compare) -> Fn:
        ops = []
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot) \
                    and not (isinstance(right, ast.Constant) and right.value in (None, True, False)) \
                    and not (isinstance(right, ast.Name) and right.id in _NAMES):
                raise self.fail(node, "'is' compares only with null, true or false")
            ops.append(_COMPARE[type(op)])
        terms = [self.visit(node.left), *(self.visit(c) for c in node.comparators)]
        if len(ops) == 1:
            cmp = ops[0]
            left, right = terms
            if isinstance(right, _Const):
                a, c = _fn(left), right.value
                fused = getattr(a, "fused", None)
                if fused is not None and cmp in (operator.eq, operator.ne):
                    impl, c0 = fused
                    if cmp is operator.eq:
                        return lambda env: impl(env, c0) == c
                    return lambda env: impl(env, c0) != c
                if cmp is operator.eq:
                    return lambda env: a(env) == c
                if cmp is operator.ne:
                    return lambda env: a(env) != c
                return lambda env: cmp(a(env), c)
            if isinstance(left, _Const):
                c, b = left.value, right
                return lambda env: cmp(c, b(env))
            a, b = left, right
            return lambda env: cmp(a(env), b(env))
        fns = [_fn(t) for t in terms]

        def chain(env: Env) -> bool:
            x = fns[0](env)
            for cmp, f in zip(ops, fns[1:], strict=True):
                y = f(env)
                if not cmp(x, y):
                    return False
                x = y
            return True
        return chain

    # --- item fields and functions ------------------------------------------------------
    def v_Attribute(self, node: ast.Attribute) -> Fn:
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
            return lambda env: getter(env, env.item, env.item_id)  # type: ignore[arg-type]
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) \
                and base.func.id == "product":
            self._call(base)  # validates the call and records its dependencies
            pgetter = PRODUCT_FIELDS.get(attr)
            if pgetter is None:
                raise self.fail(node, f"unknown field product(...).{attr}; "
                                      f"fields: {', '.join(PRODUCT_FIELDS)}")
            arg = _fn(self.visit(base.args[0]))

            def product_field(env: Env) -> Any:
                key = arg(env)
                raw = env.view["products"].get(key) if key is not None else None
                return None if raw is None else pgetter(env, raw, key)
            return product_field
        raise self.fail(node, "attribute access is only allowed on item and product(...)")

    def v_Call(self, node: ast.Call) -> _Const | Fn:
        return self._call(node)

    def _call(self, node: ast.Call) -> _Const | Fn:
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
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise self.fail(node, f"unknown function {name!r}; functions: "
                                  f"{', '.join([*FUNCTIONS, 'duration'])}")
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
        impl = spec.impl
        if not args:
            return impl  # already a function of the environment
        fns = [_fn(a) for a in args]
        if len(args) == 1:
            if isinstance(args[0], _Const):
                c = args[0].value

                def call_const(env: Env) -> Any:
                    return impl(env, c)
                call_const.fused = (impl, c)  # type: ignore[attr-defined]
                return call_const
            a = fns[0]
            return lambda env: impl(env, a(env))
        if len(args) == 2:
            if all(isinstance(a, _Const) for a in args):
                c0, c1 = consts
                return lambda env: impl(env, c0, c1)
            if isinstance(args[0], _Const):
                c0, b = consts[0], fns[1]
                return lambda env: impl(env, c0, b(env))
            a, b = fns
            return lambda env: impl(env, a(env), b(env))
        return lambda env: impl(env, *(f(env) for f in fns))


def compile_expr(source: str, each: str | None = None) -> Compiled:
    """Check and compile ``source``; raises :class:`ExprError` naming what is wrong.

    >>> try:
    ...     compile_expr("item.order == 'ordered'")
    ... except ExprError as exc:
    ...     print(exc)
    'item' needs 'each: product|charge|grant' on the rule
    """
    text = " ".join(source.split("\n")).strip()
    if not text:
        raise ExprError("the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"syntax error: {exc.msg}", (exc.offset or 1) - 1) from None
    c = _Compiler(each)
    body = c.visit(tree.body)
    return Compiled(source, _fn(body), frozenset(c.deps), frozenset(c.item_kinds),
                    frozenset(c.functions))
