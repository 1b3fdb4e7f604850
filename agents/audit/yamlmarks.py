"""Line numbers for YAML documents, so every catalog error names ``file:line``.

PyYAML's composer keeps a mark (line, column) on every node. :func:`compose_with_lines`
composes the document once, maps each path (``("groups", 0, "rules", 3, "expr")``) to the
1-based line of its value, and reports duplicate mapping keys, which ``yaml.safe_load``
would silently resolve to the last one. :func:`compose_document` also keeps the scalar
nodes, so an error at a character of a value (a rule expression's column) is reported at
the file's own line and column, even inside a folded ``>-`` block or a quoted string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


class YamlProblem(ValueError):
    """The text is not a usable YAML document; ``line`` and ``col`` are 1-based (None if
    unknown)."""

    def __init__(self, message: str, line: int | None, col: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


@dataclass
class Document:
    """A composed YAML document: its data, the line of every path and its scalar nodes.

    The nodes let an error *inside* a value (a column of a rule expression) be placed at
    the file's own line and column, whatever the scalar's style (see :meth:`position`).
    """

    text: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    scalars: dict[Path, yaml.ScalarNode] = field(default_factory=dict)

    def position(self, path: Path, offset: int) -> tuple[int, int] | None:
        """1-based ``(line, column)`` in the file of character ``offset`` of the scalar at
        ``path`` (None if ``path`` is not a scalar)."""
        node = self.scalars.get(tuple(path))
        return None if node is None else scalar_position(self.text, node, offset)


def compose_document(text: str) -> Document:
    """Compose ``text`` once: data, lines, scalar nodes; raises :class:`YamlProblem`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise _problem(exc, text) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}", None) from None
    doc = Document(text, data)
    if node is not None:
        _walk(node, (), doc)
    return doc


def _problem(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem:
    """The line a person must fix: where the problem was found, except for a quoted
    string never closed: YAML quotes may span lines, so the parser stops wherever the next
    quote is (often lines later); the string that swallowed line breaks is named instead."""
    problem, context = exc.problem_mark, exc.context_mark
    mark = problem or context
    if context is not None and exc.context and "quoted scalar" in exc.context:
        mark = context
    where = ""
    if exc.context and context is not None and mark is not context:
        where = f" (while {exc.context.removeprefix('while ')} on line {context.line + 1})"
    elif exc.context:
        where = f" ({exc.context})"
    runaway = _runaway_quote(text, mark)
    if runaway is not None and mark is not None:
        where += (f"; the quoted string opened on line {runaway.line + 1} runs to line "
                  f"{mark.line + 1}: is its closing quote missing?")
        mark = runaway
    return YamlProblem(f"invalid YAML: {exc.problem or 'unreadable'}{where}; check the "
                       "indentation and quote values that contain ': ' or start with a "
                       "special character", mark.line + 1 if mark else None,
                       mark.column + 1 if mark else None)


def _runaway_quote(text: str, stop: Any) -> Any:
    """Start mark of a quoted scalar that spans lines and ends on ``stop``'s line (the
    parser failed right after it), if any: a legitimate multi-line string elsewhere is
    not blamed."""
    if stop is None:
        return None
    found = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if token.start_mark.index >= stop.index:
                break
            if isinstance(token, yaml.ScalarToken) and token.style in ("'", '"') \
                    and token.end_mark.line > token.start_mark.line \
                    and token.end_mark.line == stop.line:
                found = token.start_mark
    except yaml.YAMLError:
        pass
    return found


def compose_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """``(data, lines)``: the document as Python data and the line of every path.

    >>> data, lines = compose_with_lines("a:\\n  - x: 1\\n    y: 2\\n")
    >>> data, lines[("a", 0, "y")]
    ({'a': [{'x': 1, 'y': 2}]}, 3)
    """
    doc = compose_document(text)
    return doc.data, doc.lines


def scalar_position(text: str, node: yaml.ScalarNode, offset: int) -> tuple[int, int]:
    """1-based ``(line, column)`` in ``text`` of character ``offset`` of ``node``'s value.

    The value is the source with indentation, quotes and the block header removed and
    line breaks folded into spaces (``>``, plain and quoted scalars) or kept (``|``), so
    walking both in step and skipping what the value lacks finds the character. Escapes
    of double-quoted strings can make it land a little late, never on another scalar.

    >>> src = "expr: >-\\n  status('bss') == 'active'\\n  and balance() <\\n"
    >>> node = yaml.compose(src).value[0][1]
    >>> node.value[30:]
    'balance() <'
    >>> scalar_position(src, node, 30)
    (3, 7)
    """
    start, end = node.start_mark.index, node.end_mark.index
    line, col = node.start_mark.line, node.start_mark.column
    i = start
    if node.style in ("|", ">"):     # skip the header line ('>-', '|+2', a comment...)
        while i < end and text[i] != "\n":
            i += 1
    elif node.style in ("'", '"'):
        i += 1
    # (line, col) of text[i]: recount from the node's start
    for ch in text[start:i]:
        line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
    value = node.value
    for k, want in enumerate(value[: offset + 1]):
        while i < end:
            ch = text[i]
            matched = ch == want or (want == " " and ch == "\n")
            if matched and k == offset:
                return line + 1, col + 1
            i += 1
            line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
            if matched:
                break
    return line + 1, col + 1


def _walk(node: yaml.Node, path: Path, doc: Document) -> None:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        doc.scalars[path] = node
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            line = key.start_mark.line + 1
            if name in seen:
                raise YamlProblem(f"duplicate key {name!r} (first on line {seen[name]}): "
                                  "YAML would silently keep only the last one; remove one",
                                  line)
            seen[name] = line
            _walk(value, (*path, name), doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _walk(value, (*path, i), doc)


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """Line of ``path`` or of its nearest ancestor present in the document."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get(())
