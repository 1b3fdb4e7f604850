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
from datetime import UTC, datetime
from typing import Any

from agents.audit.catalog import Catalog, Rule
from agents.audit.durations import format_duration
from agents.audit.facts import expand
from agents.audit.templates import local_time, render_values
from agents.core import Output, State
from schemas.outputs import AgentHint, Alert, HintKind
from schemas.registry import AGENT_HINTS, ALERTS

SEP = "|"
DEFAULT_RESOLVED = "已处理完毕，{ended} 起已恢复正常 (fixed at {ended})"


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


class Emitter:
    """Builds the records of one episode update (kept apart from the lifecycle logic)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def values(self, rule: Rule | None, ep: Mapping[str, Any], item: str, t: int,
               ended: int | None) -> dict[str, str]:
        off = self.catalog.offset_min
        since = ep["since"]
        vals = render_values(ep.get("vars", {}), off)
        vals.update(rule=rule.id if rule else "", item=item, severity=ep.get("severity", ""),
                    since=local_time(since, off), since_ago=format_duration(t - since),
                    ended=local_time(ended, off))
        vals["for"] = format_duration(rule.for_ms) if rule else ""
        return vals

    def emit(self, rule: Rule | None, rule_id: str, sid: str, item: str, ep: Mapping[str, Any],
             t: int, now: datetime, *, ended: int | None = None,
             hint: bool = True) -> list[Output]:
        """Alert and/or hint for the episode's current ``sequence`` (resolved if ``ended``)."""
        notify = ep.get("notify", ())
        fp = fingerprint(rule_id, sid, item, ep["since"])
        vals = self.values(rule, ep, item, t, ended)
        notes = ({n: tpl.render(vals) for n, tpl in rule.annotations.items() if n != "resolved"}
                 if rule else {"summary": f"rule {rule_id} was removed from the catalog"})
        out: list[Output] = []
        severity = ep["severity"]
        if "technician" in notify:
            labels = {**(rule.labels if rule else {}), "rule": rule_id, "severity": severity}
            if item:
                labels["item"] = item
            out.append(Output(ALERTS, fp, Alert(
                fingerprint=fp, sequence=ep["sequence"],
                status="resolved" if ended is not None else "firing", rule_id=rule_id,
                severity=severity, subscriber_id=sid, msisdn_masked=vals.get("msisdn", ""),
                systems=list(rule.systems) if rule else [], labels=labels, annotations=notes,
                starts_at=_dt(ep["since"]), ends_at=_dt(ended) if ended is not None else None,
                detected_at=now, evidence={k: expand(v) for k, v in ep.get("evidence", {}).items()})))
        if "agent" in notify and hint:
            if ended is not None:
                tpl = rule.annotations.get("resolved") if rule else None
                progress = tpl.render(vals) if tpl else DEFAULT_RESOLVED.format(
                    ended=vals["ended"])
            else:
                progress = notes.get("resolution", "")
            out.append(Output(AGENT_HINTS, sid, AgentHint(
                hint_id=fp, sequence=ep["sequence"], subscriber_id=sid,
                msisdn_masked=vals.get("msisdn", ""), kind=HintKind.SERVICE_REMINDER,
                active=ended is None, title=notes.get("title") or notes["summary"],
                cause=notes.get("cause") or (rule.description if rule else ""),
                script=notes.get("script", ""), progress=progress, source=f"audit:{rule_id}",
                created_at=now)))
        return out
