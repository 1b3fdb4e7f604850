"""Annotation templates: a fixed, documented set of ``{placeholders}``.

Annotations are what people read: the technician's summary and fix guidance, the script
the agent reads to the customer, the expected resolution. They are ``str.format``-style
templates, but they are never passed to ``str.format``: the loader splits them into
literal text and placeholder names (rejecting ``{x.attr}``, ``{x[0]}``, ``!r`` and format
specs, which would let a rule file reach into Python objects) and rendering only joins
strings. The subscriber's number is only ever available masked (``{msisdn}``, last four
digits kept: :func:`schemas.common.mask_msisdn`).

The placeholders and their values, captured from the view when an episode opens, are in
:mod:`agents.audit.placeholders` (re-exported here).

Not every fact is known: billing may never have reported a balance. Its value is None
then, and a template says what to do instead of printing a made-up ``0.00``: an optional
segment ``[，当前欠费{arrears}元]`` is shown only when every placeholder in it is known,
``[{a}|{b}|text]`` shows the first alternative whose placeholders are known. An unknown
placeholder outside a segment reads ``unknown`` in a technician's text; in a customer's
text (the hint) its clause is left out. Spaces that YAML folding puts inside Chinese text
are removed when the template is compiled (:func:`fold_spaces`).

>>> t = Template.parse("{product} not provisioned on {platform} for {since_ago}", "product")
>>> t.render({"product": "vas-news", "platform": "vas", "since_ago": "12m"})
'vas-news not provisioned on vas for 12m'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from string import Formatter

# Re-exported: callers import the values side from here too.
from agents.audit.placeholders import (  # noqa: F401
    LIVE,
    PLACEHOLDERS,
    TIMES,
    UNKNOWN,
    Placeholder,
    capture,
    local_time,
    render_values,
)

#: Annotations that become the agent's hint (Chinese, read to customers); every other
#: annotation goes on the technicians' alert (English).
HINT_ANNOTATIONS = frozenset({"title", "cause", "script", "progress", "resolved"})
#: Annotations rendered when the episode ends: the only ones that may use ``{ended}``.
RESOLVED_ANNOTATIONS = frozenset({"resolved", "resolved_summary"})


class TemplateError(ValueError):
    """A template uses an unknown placeholder or a construct templates do not allow."""


# --- spaces left by YAML folding ---------------------------------------------------------
#: Full-width and CJK punctuation (、。，：；！？（）【】《》 ...): no space belongs next to it.
_WIDE_PUNCT = "\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
#: CJK characters (ideographs, kana, hangul, full-width letters and digits) and punctuation.
_CJK = ("\u2e80-\u2fff\u3040-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f"
        "\uff10-\uff19\uff21-\uff3a\uff41-\uff5a" + _WIDE_PUNCT)
#: What CJK text is written against without a space: digits and template syntax.
_GLUE = "0-9{}\\[\\]|"
_FOLDED = re.compile(
    rf"(?<=[{_WIDE_PUNCT}]) (?=\S)|(?<=\S) (?=[{_WIDE_PUNCT}])"
    rf"|(?<=[{_CJK}]) (?=[{_CJK}{_GLUE}])|(?<=[{_CJK}{_GLUE}]) (?=[{_CJK}])")


def fold_spaces(text: str) -> str:
    """``text`` without the single spaces YAML folding (``>-``) put inside CJK text.

    A folded block joins its lines with one space, which Chinese does not use. A single
    ASCII space goes when a neighbour is full-width punctuation, or when one neighbour is a
    CJK character and the other is CJK, a digit or template syntax (``{ } [ ] |``). Spaces
    between Latin words, numbers and placeholders stay, and so does a space between CJK and a
    Latin word (``插拔 SIM卡``, ``the 复机 order``): English texts quote Chinese terms.

    >>> fold_spaces("已停机， 一般在充值后 几分钟内恢复 {balance} 元")
    '已停机，一般在充值后几分钟内恢复{balance}元'
    >>> fold_spaces("Trigger the resume (复机) order, 不明扣费; 插拔 SIM卡")
    'Trigger the resume (复机) order, 不明扣费; 插拔 SIM卡'
    """
    return _FOLDED.sub("", text)


# --- parsing ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Slot:
    """A placeholder in a parsed template."""

    name: str


@dataclass(frozen=True, slots=True)
class Segment:
    """``[a|b]``: the first alternative whose placeholders are all known, else nothing."""

    alternatives: tuple[tuple[str | Slot, ...], ...]


Part = str | Slot | Segment
_SENTINEL = "\x00"   # marks an unknown value while the clauses around it are cut
_CLAUSE = re.compile(r"([，。；！？\n]|[.,;!?](?=\s|$))")


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split ``text`` into ``("text", s)``, ``("open", "")``, ``("alt", "")``, ``("close", "")``.

    Placeholders (``{...}``) are kept whole in the text, so a bracket inside one is left to
    the placeholder check; ``[[`` and ``]]`` are literal brackets.
    """
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    inside = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        two = text[i:i + 2]
        if c == "{" and two != "{{":
            j = text.find("}", i)
            j = n - 1 if j < 0 else j
            buf.append(text[i:j + 1])
            i = j + 1
            continue
        if two in ("{{", "}}"):
            buf.append(two)
            i += 2
            continue
        if two in ("[[", "]]"):
            buf.append(c)
            i += 2
            continue
        if c in "[]" or (c == "|" and inside):
            if c == "[" and inside:
                raise TemplateError("optional segments cannot be nested; write a literal "
                                    "'[' as '[['")
            if c == "]" and not inside:
                raise TemplateError("']' without an opening '[': write a literal ']' as ']]'")
            out.append(("text", "".join(buf)))
            buf = []
            out.append(({"[": "open", "]": "close", "|": "alt"}[c], ""))
            inside = c != "]" and (c == "[" or inside)
            i += 1
            continue
        buf.append(c)
        i += 1
    if inside:
        raise TemplateError("optional segment '[' is not closed: add ']' (a literal '[' is "
                            "written '[[')")
    out.append(("text", "".join(buf)))
    return out


def _placeholders(text: str, each: str | None, resolved: bool) -> list[str | Slot]:
    """Literal text and placeholders of ``text`` (the ``str.format`` syntax, checked)."""
    parts: list[str | Slot] = []
    try:
        parsed = list(Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"{exc}; write literal braces as {{{{ and }}}}") from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field is None:
            continue
        if spec or conversion:
            raise TemplateError(f"placeholder {{{field}}} must not have a format or "
                                "conversion: write just {name}")
        ph = PLACEHOLDERS.get(field)
        if ph is None:
            raise TemplateError(f"unknown placeholder {{{field}}}; known: "
                                + ", ".join(sorted(PLACEHOLDERS)))
        if ph.kinds is not None and each not in ph.kinds:
            raise TemplateError(f"placeholder {{{field}}} needs 'each: "
                                f"{' or '.join(ph.kinds)}' on the rule")
        if field == "ended" and not resolved:
            raise TemplateError("placeholder {ended} is only known in the "
                                + " and ".join(repr(a) for a in sorted(RESOLVED_ANNOTATIONS))
                                + " annotations")
        parts.append(Slot(field))
    return parts


def _segment(alternatives: list[list[str | Slot]]) -> Segment:
    shown = ["".join(p if isinstance(p, str) else f"{{{p.name}}}" for p in alt)
             for alt in alternatives]
    if not any(isinstance(p, Slot) for alt in alternatives for p in alt):
        raise TemplateError(f"optional segment [{'|'.join(shown)}] has no placeholder, so it "
                            "is always shown: write literal brackets as [[ and ]]")
    for alt, text in zip(alternatives[:-1], shown, strict=False):
        if not any(isinstance(p, Slot) for p in alt):
            raise TemplateError(f"in [{'|'.join(shown)}], the alternatives after {text!r} "
                                "are never used (it has no placeholder, so it is always known)")
    return Segment(tuple(tuple(alt) for alt in alternatives))


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text, placeholders and optional segments."""

    parts: tuple[Part, ...]

    @property
    def fields(self) -> frozenset[str]:
        out: set[str] = set()
        for p in self.parts:
            if isinstance(p, Slot):
                out.add(p.name)
            elif isinstance(p, Segment):
                out.update(q.name for alt in p.alternatives for q in alt if isinstance(q, Slot))
        return frozenset(out)

    @classmethod
    def parse(cls, text: str, each: str | None, *, resolved: bool = False) -> Template:
        """Normalise folded spaces, then split ``text``; raises :class:`TemplateError`
        naming the bad placeholder or bracket."""
        parts: list[Part] = []
        alternatives: list[list[str | Slot]] | None = None
        for kind, chunk in _tokens(fold_spaces(text)):
            if kind == "text":
                pieces = _placeholders(chunk, each, resolved)
                if alternatives is None:
                    parts.extend(pieces)
                else:
                    alternatives[-1].extend(pieces)
            elif kind == "open":
                alternatives = [[]]
            elif kind == "alt":
                alternatives.append([])  # type: ignore[union-attr]
            else:
                parts.append(_segment(alternatives))  # type: ignore[arg-type]
                alternatives = None
        return cls(tuple(parts))

    def render(self, values: Mapping[str, str | None], unknown: str | None = UNKNOWN) -> str:
        """The text for ``values`` (a value of None, or a missing one, is unknown).

        An optional segment shows its first alternative whose placeholders are all known,
        or nothing. An unknown placeholder outside a segment reads ``unknown`` (technicians'
        texts), or, with ``unknown=None`` (customers' texts), its clause is left out: the
        text between the punctuation marks around it.

        >>> t = Template.parse("号码已停机[，当前欠费{arrears}元]。", None)
        >>> t.render({"arrears": "23.00"}), t.render({"arrears": None})
        ('号码已停机，当前欠费23.00元。', '号码已停机。')
        >>> t = Template.parse("您好，您的余额为{balance}元，请尽快充值。", None)
        >>> t.render({}, unknown=None), t.render({}, unknown="?")
        ('您好，请尽快充值。', '您好，您的余额为?元，请尽快充值。')
        """
        out: list[str] = []
        cut = False
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, Slot):
                v = values.get(p.name)
                if v is None:
                    cut = cut or unknown is None
                    out.append(_SENTINEL if unknown is None else unknown)
                else:
                    out.append(v)
            else:
                for alt in p.alternatives:
                    if all(values.get(q.name) is not None for q in alt if isinstance(q, Slot)):
                        out.extend(q if isinstance(q, str) else values[q.name]  # type: ignore[misc]
                                   for q in alt)
                        break
        text = "".join(out)
        return _drop_clauses(text) if cut else text


def _drop_clauses(text: str) -> str:
    """``text`` without the clauses holding the unknown-value sentinel; the last clause kept
    ends with the punctuation the text ended with."""
    pieces = _CLAUSE.split(text)
    clauses = [(pieces[i], pieces[i + 1] if i + 1 < len(pieces) else "")
               for i in range(0, len(pieces), 2)]
    if len(clauses) > 1 and clauses[-1] == ("", ""):
        clauses.pop()
    kept = [i for i, (c, _) in enumerate(clauses) if _SENTINEL not in c]
    if not kept:
        return ""
    last = clauses[-1][1]
    body = [clauses[i][0] + clauses[i][1] for i in kept[:-1]]
    body.append(clauses[kept[-1]][0].lstrip() + last if len(kept) == 1
                else clauses[kept[-1]][0] + last)
    return "".join(body).lstrip()
