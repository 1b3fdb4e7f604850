"""What contact-policy conditions can read: the request, the subscriber's view, the other
steps' state and the policy step's own history.

The conditions are written in the audit's expression language (:mod:`agents.audit.expr`,
the same safe, null-safe subset of Python); this module only supplies another function
table over an :class:`~agents.audit.facts.Env` subclass that also carries the request.
The audit's view functions (``status``, ``reason``, ``profile``, ``port_out_deadline``,
``plan``) are reused as they are, over the unified view of the same subscriber.

A function whose source is absent returns null, and a comparison with null is false: a
rule over the propensity models reads ``propensity('complaint') >= 0.6`` and simply does
not apply while no ``foresee`` step runs in the pipeline (docs/contact-policy.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.audit.facts import FUNCTIONS, Domain, Env, Function
from agents.foresee.view import scores_of as _scores_of
from agents.unified_view import new_view
from schemas.contacts import ContactChannel, ContactPurpose

DAY_MS = 86_400_000
PURPOSES = tuple(p.value for p in ContactPurpose)
CHANNELS = tuple(c.value for c in ContactChannel)
PURPOSE_DOMAIN = Domain("purpose", PURPOSES)
CHANNEL_DOMAIN = Domain("channel", CHANNELS)
#: ``days_since_complaint(level)``: ``any`` complaint, ``escalated`` (escalated or
#: regulator) or ``regulator`` only
COMPLAINT_LEVELS = ("any", "escalated", "regulator")
#: the propensity models of the Foresee step (issue 19) a rule may read
MODELS = ("complaint", "dissatisfaction", "churn")
#: steps whose state the policy reads, by name
VIEW, AUDIT, FORESEE = "unified-view", "audit", "foresee"
_EMPTY_VIEW = new_view("", "")



class ContactEnv(Env):
    """One evaluation of the policy for one request at one instant.

    ``at_ms`` is the instant the contact would happen (``scheduled_for``, else the request's
    event time): ages and windows are measured from it. ``reads`` holds the other steps'
    state for the subscriber; a step missing from it is not in the pipeline.
    """

    __slots__ = ("at_ms", "own", "reads", "request")

    def __init__(self, request: Any, reads: Mapping[str, dict[str, Any] | None],
                 own: dict[str, Any] | None, at_ms: int) -> None:
        view = reads.get(VIEW)
        super().__init__(view if view is not None else _EMPTY_VIEW)
        self.request = request
        self.reads = reads
        self.own = own or {}
        self.at_ms = at_ms


def _days(env: ContactEnv, t: int | None) -> float | None:
    return None if t is None else max(0.0, (env.at_ms - t) / DAY_MS)


def f_purpose(env: ContactEnv) -> str:
    return str(env.request.purpose)


def f_channel(env: ContactEnv) -> str:
    return str(env.request.channel)


def f_campaign(env: ContactEnv) -> str:
    return str(env.request.campaign_id)


def f_requester(env: ContactEnv) -> str:
    return str(env.request.requester)


def f_do_not_disturb(env: ContactEnv) -> bool:
    """On the operator's do-not-disturb list (topic ``do-not-disturb``, the latest entry
    wins), or, when the list never named the subscriber, the CRM profile's flag."""
    dnd = env.own.get("dnd")
    if dnd is not None:
        return bool(dnd["v"])
    slot = env.view["profile"].get("do_not_disturb")
    return bool(slot and slot["v"])


def f_days_since_complaint(env: ContactEnv, level: str) -> float | None:
    """Days from the latest complaint of at least ``level`` to the contact (null: none).

    For ``escalated`` and ``regulator`` the clock starts when the complaint reached that
    severity (an update may escalate it), for ``any`` when it was opened.
    """
    key = {"any": "t", "escalated": "esc", "regulator": "reg"}[level]
    latest = None
    for c in env.own.get("complaints", {}).values():
        t = c.get(key)
        if t is not None and t <= env.at_ms and (latest is None or t > latest):
            latest = t
    return _days(env, latest)


def f_open_complaints(env: ContactEnv) -> int:
    """Complaints opened and not yet resolved or closed."""
    return sum(1 for c in env.own.get("complaints", {}).values() if c.get("open"))


def f_days_since_refusal(env: ContactEnv) -> float | None:
    """Days since the subscriber last refused a contact (``contact-outcomes``)."""
    refusals = [t for t in env.own.get("refusals", ()) if t <= env.at_ms]
    return _days(env, max(refusals)) if refusals else None


def f_audit_findings(env: ContactEnv) -> int | None:
    """Audit episodes open for the subscriber: firing, or past their grace period (null
    when no audit step runs)."""
    if AUDIT not in env.reads:
        return None
    state = env.reads[AUDIT]
    if not state:
        return 0
    n = 0
    for ep in state.get("episodes", {}).values():
        if "fired_at" in ep or ep.get("due", env.at_ms + 1) <= env.at_ms:
            n += 1
    return n


def f_fault_work_orders(env: ContactEnv) -> int | None:
    """Open fault work orders on the subscriber's line or home cell: always null for now.

    No step produces work orders keyed by subscriber yet (the network and broadband step of
    DESIGN.md is not built); the rule that reads this is present and never applies.
    """
    return None


def f_propensity(env: ContactEnv, model: str) -> float | None:
    """The Foresee step's latest probability for ``model`` (null: no foresee step, or no
    score for this subscriber yet)."""
    if FORESEE not in env.reads:
        return None
    score = _scores_of(env.reads[FORESEE]).get(model)
    return None if score is None else score.get("p")


def f_propensity_above(env: ContactEnv, model: str) -> bool | None:
    """Whether the Foresee step itself judged ``model`` above its threshold."""
    if FORESEE not in env.reads:
        return None
    score = _scores_of(env.reads[FORESEE]).get(model)
    return None if score is None else bool(score.get("above"))


def _none(consts: list[Any]) -> set[Any]:
    return set()


CONTACT_FUNCTIONS: dict[str, Function] = {
    # the request
    "purpose": Function(f_purpose, (0, 0), _none, "the request's purpose: marketing or service",
                        domain=lambda c: PURPOSE_DOMAIN),
    "channel": Function(f_channel, (0, 0), _none, "the request's channel",
                        domain=lambda c: CHANNEL_DOMAIN),
    "campaign": Function(f_campaign, (0, 0), _none, "the request's campaign id"),
    "requester": Function(f_requester, (0, 0), _none, "the system that asked"),
    # the unified view (the audit's own functions)
    **{name: FUNCTIONS[name] for name in ("status", "reason", "profile", "port_out_deadline",
                                          "plan", "max", "min")},
    # the policy's own history
    "do_not_disturb": Function(f_do_not_disturb, (0, 0), _none,
                               "on the do-not-disturb list (topic, else CRM profile flag)"),
    "days_since_complaint": Function(f_days_since_complaint, (1, 1), _none,
                                     "days since the latest complaint of a level (null: none)",
                                     ((0, COMPLAINT_LEVELS),)),
    "open_complaints": Function(f_open_complaints, (0, 0), _none, "complaints not yet resolved"),
    "days_since_refusal": Function(f_days_since_refusal, (0, 0), _none,
                                   "days since the subscriber refused a contact (null: never)"),
    # the other steps
    "audit_findings": Function(f_audit_findings, (0, 0), _none,
                               "open audit episodes (null: no audit step)"),
    "fault_work_orders": Function(f_fault_work_orders, (0, 0), _none,
                                  "open fault work orders (null: no step produces them yet)"),
    "propensity": Function(f_propensity, (1, 1), _none,
                           "Foresee probability of a model (null: no foresee step or score)",
                           ((0, MODELS),)),
    "propensity_above": Function(f_propensity_above, (1, 1), _none,
                                 "Foresee's own above-threshold flag of a model",
                                 ((0, MODELS),)),
}
