"""Line numbers for YAML documents, so every catalog error names ``file:line``.

PyYAML's composer keeps a mark (line, column) on every node. :func:`compose_with_lines`
composes the document once, maps each path (``("groups", 0, "rules", 3, "expr")``) to the
1-based line of its value, and reports duplicate mapping keys, which ``yaml.safe_load``
would silently resolve to the last one.
"""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]


class YamlProblem(ValueError):
    """The text is not a usable YAML document; ``line`` is 1-based (None if unknown)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def compose_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """``(data, lines)``: the document as Python data and the line of every path.

    >>> data, lines = compose_with_lines("a:\\n  - x: 1\\n    y: 2\\n")
    >>> data, lines[("a", 0, "y")]
    ({'a': [{'x': 1, 'y': 2}]}, 3)
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlProblem(f"invalid YAML: {problem}; check the indentation and quote values "
                          "that contain ': ' or start with a special character",
                          mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}", None) from None
    lines: dict[Path, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    lines[path] = node.start_mark.line + 1
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
            _walk(value, (*path, name), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _walk(value, (*path, i), lines)


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """Line of ``path`` or of its nearest ancestor present in the document."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get(())
