"""The contact-policy step's own state for one subscriber: what the policy remembers.

A plain JSON dict, changelogged by the runtime like every step's state, so caps and
complaint windows survive a restart::

    {"contacts":   [[t_ms, channel, purpose, request_id], ...],  # allowed, counted by caps
     "decided":    {request_id: t_ms, ...},                     # idempotency under redelivery
     "complaints": {complaint_id: {"t", "esc", "reg", "end", "open"}},  # opened, escalated,
                                                                   # regulator, ended times
     "refusals":   [t_ms, ...],
     "dnd":        {"v": bool, "t": t_ms, "id": event_id} | absent}

Everything is bounded: contacts older than the longest cap window, decided ids older than
the policy's ``remember`` (and at most :data:`MAX_DECIDED`), complaints older than
:data:`COMPLAINT_DAYS` and at most :data:`MAX_COMPLAINTS`, the last :data:`MAX_REFUSALS`
refusals.
"""

from __future__ import annotations

from typing import Any

DAY_MS = 86_400_000
MAX_DECIDED = 500
MAX_CONTACTS = 200
MAX_COMPLAINTS = 50
COMPLAINT_DAYS = 400
MAX_REFUSALS = 20


def new_state() -> dict[str, Any]:
    return {"contacts": [], "decided": {}, "complaints": {}, "refusals": []}


def remember_decision(state: dict[str, Any], request_id: str, t: int, remember_ms: int) -> None:
    decided: dict[str, int] = state.setdefault("decided", {})
    decided[request_id] = t
    if len(decided) > MAX_DECIDED or any(v < t - remember_ms for v in decided.values()):
        keep = sorted(((v, k) for k, v in decided.items() if v >= t - remember_ms),
                      reverse=True)[:MAX_DECIDED]
        state["decided"] = {k: v for v, k in keep}


def count_contact(state: dict[str, Any], at: int, channel: str, purpose: str,
                  request_id: str, window_ms: int) -> None:
    contacts: list[list[Any]] = state.setdefault("contacts", [])
    contacts.append([at, channel, purpose, request_id])
    contacts.sort(key=lambda c: c[0])
    latest = contacts[-1][0]
    state["contacts"] = [c for c in contacts if c[0] > latest - window_ms][-MAX_CONTACTS:]


def uncount_contact(state: dict[str, Any], request_id: str) -> bool:
    """A contact that never reached the subscriber did not disturb them: cap room back."""
    contacts = state.get("contacts", [])
    kept = [c for c in contacts if c[3] != request_id]
    state["contacts"] = kept
    return len(kept) != len(contacts)


def note_complaint(state: dict[str, Any], complaint_id: str, severity: str, stage: str,
                   t: int) -> None:
    """Fold one complaint lifecycle step (or a contact that ended in a complaint)."""
    complaints: dict[str, dict[str, Any]] = state.setdefault("complaints", {})
    c = complaints.setdefault(complaint_id, {"t": t, "esc": None, "reg": None, "open": True})
    c["t"] = min(c["t"], t)
    if severity in ("escalated", "regulator") and (c["esc"] is None or t < c["esc"]):
        c["esc"] = t
    if severity == "regulator" and (c["reg"] is None or t < c["reg"]):
        c["reg"] = t
    if stage in ("resolved", "closed"):
        c["end"] = max(c.get("end") or t, t)
    # open until resolved or closed, whatever order the lifecycle steps arrive in
    c["open"] = c.get("end") is None
    horizon = t - COMPLAINT_DAYS * DAY_MS
    keep = sorted(((v["t"], k) for k, v in complaints.items() if v["t"] >= horizon),
                  reverse=True)[:MAX_COMPLAINTS]
    state["complaints"] = {k: complaints[k] for _, k in keep}


def note_refusal(state: dict[str, Any], t: int) -> None:
    refusals: list[int] = state.setdefault("refusals", [])
    refusals.append(t)
    refusals.sort()
    del refusals[:-MAX_REFUSALS]


def note_dnd(state: dict[str, Any], listed: bool, t: int, event_id: str) -> bool:
    """The latest do-not-disturb entry by event time wins (ties by event id)."""
    cur = state.get("dnd")
    if cur is not None and (t, event_id) < (cur["t"], cur["id"]):
        return False
    state["dnd"] = {"v": listed, "t": t, "id": event_id}
    return True
