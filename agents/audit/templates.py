"""Annotation templates: a fixed, documented set of ``{placeholders}``.

Annotations are what people read: the technician's summary and fix guidance, the script
the agent reads to the customer, the expected resolution. They are ``str.format``-style
templates, but they are never passed to ``str.format``: the loader splits them into
literal text and placeholder names (rejecting ``{x.attr}``, ``{x[0]}``, ``!r`` and format
specs, which would let a rule file reach into Python objects) and rendering only joins
strings. The subscriber's number is only ever available masked (``{msisdn}``, last four
digits kept: :func:`schemas.common.mask_msisdn`).

Values are captured from the view when an episode opens (so a technician sees the facts
that made the rule true, even if the alert fires on a timer later); ``since``,
``since_ago``, ``severity`` and ``ended`` are filled in when the text is rendered.

Not every fact is known: billing may never have reported a balance. A getter returns None
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from string import Formatter
from typing import Any

from agents.audit.facts import Env, f_monthly_fee, money
from agents.audit.items import ITEM_KINDS
from schemas.common import mask_msisdn

_EMPTY: dict[str, Any] = {}
#: Placeholders filled at render time rather than captured when the episode opens.
LIVE = frozenset({"since", "since_ago", "severity", "ended"})
#: Placeholders holding an instant: captured as epoch ms, shown in local time when rendered.
TIMES = frozenset({"topup_time", "deadline", "activated_at", "order_time", "charge_time",
                   "due_by"})


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One placeholder: what it shows and which ``each`` kinds offer it (None: every rule)."""

    doc: str
    kinds: tuple[str, ...] | None = None


PLACEHOLDERS: dict[str, Placeholder] = {
    "subscriber": Placeholder("subscriber id"),
    "msisdn": Placeholder("phone number, masked but its last four digits"),
    "rule": Placeholder("rule id"),
    "item": Placeholder("item id (product, charge or grant id; empty without each)"),
    "severity": Placeholder("current severity"),
    "for": Placeholder("the rule's grace period, e.g. 10m"),
    "since": Placeholder("local time the condition started"),
    "since_ago": Placeholder("how long the condition has held, e.g. 1h20m"),
    "ended": Placeholder("local time the condition cleared (only in the 'resolved' and "
                         "'resolved_summary' annotations)"),
    "bss_status": Placeholder("status BSS last reported"),
    "hss_status": Placeholder("status HSS last reported"),
    "billing_status": Placeholder("status billing last reported"),
    "bss_reason": Placeholder("reason of the BSS suspension (unknown unless suspended)"),
    "hss_reason": Placeholder("reason of the HSS suspension (unknown unless suspended)"),
    "plan": Placeholder("BSS plan id"),
    "plan_networks": Placeholder("generations of the BSS plan, e.g. 4g,5g"),
    "signing": Placeholder("generations HSS signing allows"),
    "balance": Placeholder("billing balance in currency units"),
    "arrears": Placeholder("amount owed: known only while the balance is negative"),
    "monthly_fee": Placeholder("last plan charge plus ordered products' fees"),
    "topup_amount": Placeholder("amount of the last top-up"),
    "topup_time": Placeholder("local time of the last top-up"),
    "deadline": Placeholder("local time of the port-out deadline"),
    "activated_at": Placeholder("local time BSS activated the line"),
    "product": Placeholder("product id (of the item, or the charged item)", ("product", "charge")),
    "product_name": Placeholder("display name from the catalog's names", ("product", "charge")),
    "platform": Placeholder("platform that provisions the product", ("product", "charge")),
    "order_time": Placeholder("local time of the product's last order or cancellation",
                              ("product", "charge")),
    "fee": Placeholder("the product's monthly fee", ("product",)),
    "amount": Placeholder("amount charged or granted", ("charge", "grant")),
    "charge_time": Placeholder("local time of the charge", ("charge",)),
    "due_by": Placeholder("local time the grant was due", ("grant",)),
}


#: Annotations that become the agent's hint (Chinese, read to customers); every other
#: annotation goes on the technicians' alert (English).
HINT_ANNOTATIONS = frozenset({"title", "cause", "script", "progress", "resolved"})
#: Annotations rendered when the episode ends: the only ones that may use ``{ended}``.
RESOLVED_ANNOTATIONS = frozenset({"resolved", "resolved_summary"})
#: What an unknown placeholder outside an optional segment reads in a technician's text.
UNKNOWN = "unknown"


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


def local_time(t: int | None, offset_min: int) -> str:
    """``YYYY-MM-DD HH:MM`` at the catalog's UTC offset (what customers and agents read).

    >>> local_time(1_795_654_800_000, 480)
    '2026-11-26 09:00'
    """
    if t is None:
        return ""
    dt = datetime.fromtimestamp(t / 1000, UTC) + timedelta(minutes=offset_min)
    return dt.strftime("%Y-%m-%d %H:%M")


def _sys(view: dict[str, Any], system: str, name: str) -> dict[str, Any]:
    return view["systems"].get(system, _EMPTY).get(name) or _EMPTY


class _Cap:
    """What the getters below read: the view, the episode's item and its product."""

    __slots__ = ("item_id", "names", "product", "product_id", "raw", "view")

    def __init__(self, view: dict[str, Any], each: str | None, item_id: str,
                 names: dict[str, str]) -> None:
        raw = ITEM_KINDS[each].find(view, item_id) if each else None
        self.raw = raw = raw or _EMPTY
        self.view = view
        self.item_id = item_id
        self.names = names
        self.product_id = (item_id if each == "product"
                           else raw.get("item") if each == "charge" else None)
        self.product = view["products"].get(self.product_id, _EMPTY) if self.product_id \
            else _EMPTY


def _money(cents: int | None) -> str | None:
    return None if cents is None else money(cents)


def _arrears(view: dict[str, Any]) -> str | None:
    """What is owed: known only while billing's last balance is negative."""
    balance = _sys(view, "billing", "balance").get("v")
    return money(-balance) if balance is not None and balance < 0 else None


def _joined(slot: dict[str, Any], name: str) -> str | None:
    return ",".join(slot[name]) if name in slot else None


# Module-level getters (built once, not per capture: capture runs on every episode opened).
# Instants stay numbers here; render_values formats them when (and if) a text is rendered.
# A getter returns None for a fact the view does not know: the template then shows an
# alternative or leaves the clause out, never a made-up value such as 0.00.
_GETTERS: dict[str, Callable[[_Cap], Any]] = {
    "subscriber": lambda c: c.view["subscriber_id"],
    "msisdn": lambda c: mask_msisdn(c.view["msisdn"]),
    "item": lambda c: c.item_id,
    "bss_status": lambda c: _sys(c.view, "bss", "status").get("v"),
    "hss_status": lambda c: _sys(c.view, "hss", "status").get("v"),
    "billing_status": lambda c: _sys(c.view, "billing", "status").get("v"),
    "bss_reason": lambda c: _sys(c.view, "bss", "status").get("reason"),
    "hss_reason": lambda c: _sys(c.view, "hss", "status").get("reason"),
    "plan": lambda c: _sys(c.view, "bss", "plan").get("v"),
    "plan_networks": lambda c: _joined(_sys(c.view, "bss", "plan"), "networks"),
    "signing": lambda c: _joined(_sys(c.view, "hss", "signing"), "v"),
    "balance": lambda c: _money(_sys(c.view, "billing", "balance").get("v")),
    "arrears": lambda c: _arrears(c.view),
    "monthly_fee": lambda c: _monthly_fee(c.view),
    "topup_amount": lambda c: _money(_sys(c.view, "billing", "topup").get("v")),
    "topup_time": lambda c: _sys(c.view, "billing", "topup").get("t"),
    "deadline": lambda c: (c.view.get("port_out") or _EMPTY).get("deadline"),
    "activated_at": lambda c: _sys(c.view, "bss", "activated").get("t"),
    "product": lambda c: c.product_id,
    "product_name": lambda c: c.names.get(c.product_id or "", c.product_id),
    "platform": lambda c: c.product.get("platform"),
    "order_time": lambda c: (c.product.get("order") or _EMPTY).get("t"),
    "fee": lambda c: _money(c.product.get("fee")),
    "amount": lambda c: _money(c.raw.get("amount")),
    "charge_time": lambda c: c.raw.get("t"),
    "due_by": lambda c: c.raw.get("due_by"),
}


def capture(view: dict[str, Any], each: str | None, item_id: str,
            fields: tuple[str, ...], names: dict[str, str], offset_min: int) -> dict[str, Any]:
    """Values of ``fields`` (minus the live ones) from the view as it is now (None: unknown)."""
    c = _Cap(view, each, item_id, names)
    out: dict[str, Any] = {}
    for f in fields:
        g = _GETTERS.get(f)
        if g is not None:
            v = g(c)
            out[f] = v if v is None or f in TIMES else str(v)
    return out


def render_values(captured: dict[str, Any], offset_min: int) -> dict[str, str | None]:
    """Captured values as text: instants in local time, unknown values None.

    ``"unknown"`` is what episodes captured before unknown values were kept as None
    (state written by an older version) held for a fact the view did not know.
    """
    return {k: None if v is None or v == UNKNOWN
            else local_time(v, offset_min) if k in TIMES else v for k, v in captured.items()}


def _monthly_fee(view: dict[str, Any]) -> str | None:
    return _money(f_monthly_fee(Env(view)))
