"""Episodes and what they emit: fingerprints, alerts for technicians, hints for agents.

An episode is one rule holding for one subscriber (and item), from ``since`` until it
clears. Its fingerprint hashes ``rule | subscriber | item | since``, so it is the same
after a redelivery, a rebalance or a restart, and a new episode of the same fault (after
the old one resolved) gets a new one. Episodes are plain dicts in the step's state:

* pending: ``{"since", "due", "vars", "evidence"}`` (condition true, grace running);
* firing: ``{"since", "fired_at", "severity", "step", "sequence", "notify", "vars",
  "evidence"}`` (``step`` = escalations applied, ``sequence`` = last update sent).

>>> fingerprint("bss-active-hss-barred", "S00000001", "", 1_795_654_800_000)
'af3ce3eecf64bd2b'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.audit.catalog import Catalog, Rule
from agents.audit.durations import format_duration
from agents.audit.facts import expand
from agents.audit.templates import HINT_ANNOTATIONS, Template, local_time, render_values
from agents.core import Output, State
from schemas.outputs import AgentHint, Alert, HintKind
from schemas.registry import AGENT_HINTS, ALERTS

SEP = "|"
#: Default resolved texts, one per language: the hint's (Chinese, read to customers) and the
#: alert's (English, for technicians). A rule's ``resolved`` / ``resolved_summary`` wins.
DEFAULT_RESOLVED = Template.parse("问题已处理完毕，已于{ended}恢复正常。", None, resolved=True)
DEFAULT_RESOLVED_SUMMARY = Template.parse("Cleared at {ended} after {since_ago}.", None,
                                          resolved=True)
#: A hint's title when the rule has no ``title`` annotation, by kind.
DEFAULT_TITLE = {HintKind.KNOWN_FAULT: "已知故障处理中", HintKind.SERVICE_REMINDER: "服务提醒"}
#: How long a hint stays on agents' screens after the instant it is about (event time, so a
#: replay writes the same expiry as the live run), unless a newer record of
#: the same hint replaces it first. An open finding's hint is replaced when it is fixed (the
#: resolved record), so its expiry only bounds a hint whose resolution never came (a lost
#: subscriber, a rule changed under it); a closed one is worth showing for the customer's
#: next call about it, not longer. FORESIGHT_AUDIT_HINT_TTL_S / _RESOLVED_HINT_TTL_S.
HINT_TTL = timedelta(days=7)
RESOLVED_HINT_TTL = timedelta(days=1)


def episode_key(rule_id: str, item: str) -> str:
    return f"{rule_id}{SEP}{item}"


def split_key(key: str) -> tuple[str, str]:
    rule_id, _, item = key.partition(SEP)
    return rule_id, item


def fingerprint(rule_id: str, subscriber_id: str, item: str, since: int) -> str:
    """16 hex characters identifying one episode, stable across redeliveries and restarts."""
    raw = f"{rule_id}{SEP}{subscriber_id}{SEP}{item}{SEP}{since}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def open_episodes(state: State | None) -> dict[str, int]:
    """Firing episodes per rule id in one subscriber's audit state (for gauges).

    >>> open_episodes({"episodes": {"a|": {"fired_at": 1}, "b|x": {"due": 5}, "a|y": {"fired_at": 2}}})
    {'a': 2}
    """
    out: dict[str, int] = {}
    for key, ep in (state or {}).get("episodes", {}).items():
        if "fired_at" in ep:
            rule_id = split_key(key)[0]
            out[rule_id] = out.get(rule_id, 0) + 1
    return out


def pending_episodes(state: State | None) -> dict[str, int]:
    """Episodes still in their grace period, per rule id."""
    out: dict[str, int] = {}
    for key, ep in (state or {}).get("episodes", {}).items():
        if "fired_at" not in ep:
            rule_id = split_key(key)[0]
            out[rule_id] = out.get(rule_id, 0) + 1
    return out


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t / 1000, UTC)


def hint_kind(technician: bool) -> HintKind:
    """What an audit hint is: a finding technicians are also told about is a known fault
    being fixed (the agent tells the customer it is in hand); an agent-only rule is a
    service reminder (the agent tells the customer what to do)."""
    return HintKind.KNOWN_FAULT if technician else HintKind.SERVICE_REMINDER


class Emitter:
    """Builds the records of one episode update (kept apart from the lifecycle logic).

    Annotations go to their audience: ``title``, ``cause``, ``script``, ``progress`` and
    ``resolved`` make the agent's hint (Chinese, rendered with unknown clauses left out);
    every other annotation goes on the technicians' alert (English, unknowns read
    ``unknown``), ``resolved_summary`` only once the episode has ended.
    """

    def __init__(self, catalog: Catalog, *, hint_ttl: timedelta = HINT_TTL,
                 resolved_hint_ttl: timedelta = RESOLVED_HINT_TTL) -> None:
        self.catalog = catalog
        self.hint_ttl = hint_ttl
        self.resolved_hint_ttl = resolved_hint_ttl

    def values(self, rule: Rule | None, ep: Mapping[str, Any], item: str, t: int,
               ended: int | None) -> dict[str, str | None]:
        """Placeholder values of one rendering (None: unknown)."""
        off = self.catalog.offset_min
        since = ep["since"]
        vals = render_values(ep.get("vars", {}), off)
        vals.update(rule=rule.id if rule else "", item=item, severity=ep.get("severity", ""),
                    since=local_time(since, off), since_ago=format_duration(t - since),
                    ended=local_time(ended, off) if ended is not None else None)
        vals["for"] = format_duration(rule.for_ms) if rule else ""
        return vals

    def emit(self, rule: Rule | None, rule_id: str, sid: str, item: str, ep: Mapping[str, Any],
             t: int, now: datetime, *, ended: int | None = None,
             hint: bool = True, decided: int | None = None) -> list[Output]:
        """Alert and/or hint for the episode's current ``sequence`` (resolved if ``ended``).

        ``decided`` is the partition's event-time clock when the update was decided (the
        alert's ``decided_at``): ``decided - since`` is the time to detect in event time,
        the same in a live run, a replay and an accelerated simulation.
        """
        notify = ep.get("notify", ())
        fp = fingerprint(rule_id, sid, item, ep["since"])
        vals = self.values(rule, ep, item, t, ended)
        msisdn = vals.get("msisdn") or ""
        notes: Mapping[str, Template] = rule.annotations if rule else {}
        out: list[Output] = []
        severity = ep["severity"]
        if "technician" in notify:
            annotations = ({n: tpl.render(vals) for n, tpl in notes.items()
                            if n not in HINT_ANNOTATIONS and n != "resolved_summary"}
                           if rule else {"summary": f"rule {rule_id} was removed from the catalog"})
            if ended is not None:
                annotations["resolved_summary"] = (notes.get("resolved_summary")
                                                   or DEFAULT_RESOLVED_SUMMARY).render(vals)
            labels = {**(rule.labels if rule else {}), "rule": rule_id, "severity": severity}
            if item:
                labels["item"] = item
            out.append(Output(ALERTS, fp, Alert(
                fingerprint=fp, sequence=ep["sequence"],
                status="resolved" if ended is not None else "firing", rule_id=rule_id,
                severity=severity, subscriber_id=sid, msisdn_masked=msisdn,
                systems=list(rule.systems) if rule else [], labels=labels,
                annotations=annotations, starts_at=_dt(ep["since"]),
                ends_at=_dt(ended) if ended is not None else None, detected_at=now,
                decided_at=_dt(decided) if decided is not None else None,
                evidence={k: expand(v) for k, v in ep.get("evidence", {}).items()})))
        if "agent" in notify and hint:
            kind = hint_kind("technician" in notify)

            def text(name: str) -> str:
                tpl = notes.get(name)
                return tpl.render(vals, unknown=None) if tpl else ""

            if ended is not None:
                progress = (text("resolved")
                            or DEFAULT_RESOLVED.render(vals, unknown=None))
                expires = _dt(t) + self.resolved_hint_ttl
            else:
                # 'resolution' was the hint's progress before 'progress' existed
                progress = text("progress") or (text("resolution") if "progress" not in notes
                                                 else "")
                expires = _dt(t) + self.hint_ttl
            out.append(Output(AGENT_HINTS, sid, AgentHint(
                hint_id=fp, sequence=ep["sequence"], subscriber_id=sid, msisdn_masked=msisdn,
                kind=kind, active=ended is None, title=text("title") or DEFAULT_TITLE[kind],
                cause=text("cause"), script=text("script"), progress=progress,
                source=f"audit:{rule_id}", created_at=now, expires_at=expires)))
        return out
