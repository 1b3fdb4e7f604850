"""Pipeline step ``foresee``: features, scores, delayed labels and the care list.

Per subscriber, on every input event:

1. **labels first**, on the state *before* the event: an outcome (a complaint opened, a
   low survey, a port-out...) turns the model's pending snapshots taken within its
   horizon before it into positive examples; an offer answer labels the features as they
   were just before it. The label's own event is therefore never in its features.
2. **features**: the event is folded into the feature state (``features.py``).
3. **scores**: every model scores the new feature vector with ``predict_proba_one``;
   crossing ``on`` (and not within ``cooldown`` of the last removal) adds the subscriber
   to the ``care-list`` with reasons and sends a risk hint; falling below ``off``
   removes them (hysteresis: no flapping around one threshold).
4. **snapshots**: at most one per ``snapshots.every``, kept until every model has a
   label for it; the step's event-time timer fires when the earliest horizon passes and
   the snapshots still waiting become negative examples.

Examples go to ``model-examples`` for the single learner; the models scored with come
from a :class:`~agents.foresee.models.ModelStore` that the worker keeps current from the
``models`` topic (or, in a replay or evaluation, a :class:`~agents.foresee.learner.Learner`
learning in process). Every score names the model version that made it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.core import EventContext, Output, Result, State
from agents.foresee import features as feats
from agents.foresee.catalog import Catalog, ModelSpec, default_catalog
from agents.foresee.models import ModelStore, predict, reasons, version_name
from agents.foresee.offers import control_settings, in_control_group
from schemas.common import mask_msisdn
from schemas.models import ModelExample
from schemas.outputs import AgentHint, CareEntry, HintKind
from schemas.registry import (
    AGENT_HINTS,
    CALL_EVENTS,
    CARE_LIST,
    COMPLAINTS,
    CONTACT_OUTCOMES,
    MODEL_EXAMPLES,
    SUBSCRIBER_STATE,
)

VIEW, AUDIT = "unified-view", "audit"
HINT_TTL = timedelta(days=7)
_TITLES = {"complaint": ("投诉风险", "complaint risk"),
           "dissatisfaction": ("不满意风险", "dissatisfaction risk"),
           "churn": ("离网风险", "churn risk")}


def _fp(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t / 1000, UTC)


def label_hits(spec: ModelSpec, catalog: Catalog, topic: str, event: Any, t: int) -> bool:
    """Does this event make ``spec``'s pending snapshots positive?"""
    kind = getattr(event, "kind", "")
    for rule in spec.labels:
        if rule.signal is not None:
            s = catalog.signals[rule.signal]
            if topic not in s.topics or kind not in s.kinds:
                continue
            if not feats._matches(s, event, t, None):
                continue
            if rule.below is not None:
                raw = feats._field(event, s.value) if s.value else None
                if raw is None:
                    continue
                v = s.value_map.get(raw) if s.value_map else float(raw)
                if v is None or v >= rule.below:
                    continue
            return True
        elif rule.topic == topic and rule.kind == kind and all(
                feats._field(event, k) in allowed for k, allowed in rule.where.items()):
            return True
    return False


class Foresee:
    """The ``foresee`` step (keyed by subscriber id; reads the unified view and the audit)."""

    name = "foresee"

    def __init__(self, catalog: Catalog | None = None, store: ModelStore | None = None,
                 *, reads: tuple[str, ...] = (VIEW, AUDIT),
                 on_example: Callable[[ModelExample], None] | None = None,
                 emit_examples: bool = True) -> None:
        self.catalog = catalog or default_catalog()
        self.store = store or ModelStore(self.catalog)
        self.reads = reads
        self.topics = frozenset({SUBSCRIBER_STATE, CALL_EVENTS, COMPLAINTS, CONTACT_OUTCOMES}
                                & (self.catalog.topics | {CONTACT_OUTCOMES, SUBSCRIBER_STATE}))
        #: called with every example as it is made (in-process learner, evaluation)
        self.on_example = on_example
        self.emit_examples = emit_examples
        self.horizon = {n: m.horizon_ms for n, m in self.catalog.models.items()
                        if m.offer_id is None}
        self.features_by_name = {f.name: f for f in self.catalog.features}
        self.model_features = {n: self.catalog.features_of(n) for n in self.catalog.models}
        self.control_share, self.control_salt = control_settings()
        self.offer_models = {m.offer_id: n for n, m in self.catalog.models.items()
                             if m.offer_id is not None}
        self.examples = 0
        self.dropped_snapshots = 0
        #: which feature catalog a snapshot's feature list follows
        self.fv = _fp(*self.catalog.feature_names)[:8]

    def key_of(self, event: Any) -> str | None:
        return getattr(event, "subscriber_id", None)

    # --- the event path -----------------------------------------------------------------
    def apply(self, state: State | None, event: Any, ctx: EventContext,
              reads: Mapping[str, State | None]) -> Result:
        t = ctx.event_ms
        topic = ctx.topic
        st = state if state is not None else {
            "f": feats.new_state(), "scores": {}, "snaps": [], "last_score_ms": 0}
        st["msisdn"] = getattr(event, "msisdn", st.get("msisdn", ""))
        if st.get("fv") != self.fv:   # another feature catalog: old snapshots unreadable
            self.dropped_snapshots += len(st["snaps"])
            st["snaps"] = []
            st["fv"] = self.fv
        sid = event.subscriber_id
        view, audit = reads.get(VIEW), reads.get(AUDIT)
        outputs: list[Output] = []
        labelled = self._labels(st, sid, topic, event, t, view, audit, outputs)
        moved = feats.update(st["f"], topic, event, t, self.catalog, view)
        if not moved and topic != SUBSCRIBER_STATE and not labelled:
            return Result(st, changed=state is None, wake_at_ms=self._wake(st))
        if moved or topic == SUBSCRIBER_STATE:
            if t - st["last_score_ms"] >= self.catalog.score_min_interval_ms or not st["scores"]:
                self._score(st, sid, t, view, audit, outputs)
            else:   # scored recently: the timer scores it when the interval is over
                st["dirty"] = True
        return Result(st, outputs, wake_at_ms=self._wake(st))

    def on_timer(self, state: State | None, key: str, now_ms: int, ctx: EventContext,
                 reads: Mapping[str, State | None]) -> Result:
        if state is None:
            return Result(None, changed=False)
        outputs: list[Output] = []
        keep = []
        for snap in state["snaps"]:
            still = []
            for m in snap["open"]:
                if snap["t"] + self.horizon[m] <= now_ms:
                    outputs.extend(self._example(key, m, snap, False, now_ms))
                else:
                    still.append(m)
            snap["open"] = still
            if still:
                keep.append(snap)
        state["snaps"] = keep
        interval = self.catalog.score_min_interval_ms
        if state.get("dirty") and now_ms >= state["last_score_ms"] + interval:
            self._score(state, key, now_ms, reads.get(VIEW), reads.get(AUDIT), outputs)
        return Result(state, outputs, wake_at_ms=self._wake(state))

    # --- pieces -------------------------------------------------------------------------
    def _wake(self, st: State) -> int | None:
        due = [s["t"] + self.horizon[m] for s in st["snaps"] for m in s["open"]]
        if st.get("dirty"):
            due.append(st["last_score_ms"] + self.catalog.score_min_interval_ms)
        return min(due) if due else None

    def _labels(self, st: State, sid: str, topic: str, event: Any, t: int,
                view: State | None, audit: State | None, outputs: list[Output]) -> bool:
        hit = False
        for name, spec in self.catalog.models.items():
            if spec.offer_id is not None or not label_hits(spec, self.catalog, topic, event, t):
                continue
            h = spec.horizon_ms
            for snap in st["snaps"]:
                if name in snap["open"] and snap["t"] <= t and t - snap["t"] <= h:
                    snap["open"].remove(name)
                    outputs.extend(self._example(sid, name, snap, True, t))
                    hit = True
            st["snaps"] = [s for s in st["snaps"] if s["open"]]
        if topic == CONTACT_OUTCOMES and getattr(event, "kind", "") == "offer":
            name = self.offer_models.get(event.offer_id)
            if name is not None:
                x = feats.vector(st["f"], t, self.catalog, view, audit)
                trained = self.store.get(name)
                snap = {"t": t, "x": {k: v for k, v in x.items() if v},
                        "p": {name: [predict(trained.estimator, self._x(name, x)),
                                     trained.version]}}
                outputs.extend(self._example(sid, name, snap, event.decision == "accepted", t))
                hit = True
        return hit

    def _x(self, model: str, x: dict[str, float],
           memo: dict[tuple[str, ...], dict[str, float]] | None = None) -> dict[str, float]:
        """``x`` without the model's excluded features (models sharing exclusions share
        one dict through ``memo``)."""
        names = self.model_features[model]
        if len(names) == len(x):
            return x
        if memo is not None and names in memo:
            return memo[names]
        out = {k: x[k] for k in names}
        if memo is not None:
            memo[names] = out
        return out

    def _example(self, sid: str, model: str, snap: dict[str, Any], label: bool,
                 t: int) -> list[Output]:
        p, version = snap["p"].get(model, [0.0, 0])
        if not isinstance(version, str):   # snapshots keep the version as its count
            version = version_name(model, int(version))
        x = snap["x"]
        if isinstance(x, list):            # ... and the features in catalog order
            x = dict(zip(self.catalog.feature_names, x, strict=True))
        ex = ModelExample(
            example_id=_fp(model, sid, snap["t"]), model=model, subscriber_id=sid,
            at_ms=snap["t"], labelled_at_ms=t,
            features={k: float(x.get(k, 0.0)) for k in self.model_features[model]},
            label=label, score=min(1.0, max(0.0, p)), version=version)
        self.examples += 1
        if self.on_example is not None:
            self.on_example(ex)
        return [Output(MODEL_EXAMPLES, model, ex)] if self.emit_examples else []

    def _score(self, st: State, sid: str, t: int, view: State | None, audit: State | None,
               outputs: list[Output]) -> None:
        x = feats.vector(st["f"], t, self.catalog, view, audit)
        st["last_score_ms"] = t
        st.pop("dirty", None)
        scores = st["scores"]
        ps: dict[str, list[Any]] = {}
        control = None
        memo: dict[tuple[str, ...], dict[str, float]] = {}
        for name, spec in self.catalog.models.items():
            trained = self.store.get(name)
            if spec.offer_id is not None and trained.n < self.catalog.min_examples:
                continue  # an offer model that learned nothing says nothing (and costs)
            xm = self._x(name, x, memo)
            p = predict(trained.estimator, xm)
            if spec.offer_id is None:
                ps[name] = [round(p, 6), trained.n]
            prev = scores.get(name) or {}
            above = bool(prev.get("above"))
            entry = {"p": round(p, 6), "version": trained.version, "at_ms": t,
                     "above": above, "reasons": prev.get("reasons", [])}
            for k in ("since_ms", "removed_ms"):
                if k in prev:
                    entry[k] = prev[k]
            if spec.offer_id is not None:
                if control is None:
                    control = in_control_group(sid, self.control_share, self.control_salt)
                entry["above"] = (not control) and p >= spec.on
                entry["reasons"] = reasons(trained.estimator, xm, self.features_by_name) \
                    if entry["above"] else []
                if control:
                    entry["control"] = True
            elif (not above and p >= spec.on and trained.n >= self.catalog.min_examples
                  and t - prev.get("removed_ms", -10**15) >= spec.cooldown_ms):
                entry["above"] = True
                entry["since_ms"] = t
                entry["reasons"] = reasons(trained.estimator, xm, self.features_by_name)
                outputs.extend(self._announce(st, sid, spec, entry, t, True))
            elif above and p < spec.off:
                entry["above"] = False
                entry["removed_ms"] = t
                outputs.extend(self._announce(st, sid, spec, entry, t, False))
                entry["reasons"] = []
            scores[name] = entry
        snaps = st["snaps"]
        if not snaps or t - snaps[-1]["t"] >= self.catalog.snapshot_every_ms:
            # compact: features as a list in catalog order (``fv`` says which catalog),
            # each model's score with the count of examples its version had learned
            snaps.append({"t": t, "x": [round(v, 4) for v in x.values()], "p": ps,
                          "open": list(self.horizon)})
            while len(snaps) > self.catalog.max_pending:
                snaps.pop(0)
                self.dropped_snapshots += 1

    def _announce(self, st: State, sid: str, spec: ModelSpec, entry: dict[str, Any], t: int,
                  added: bool) -> list[Output]:
        masked = mask_msisdn(st.get("msisdn") or "")
        since = entry.get("since_ms", t)
        at = _dt(t)
        care = CareEntry(
            care_id=_fp("care", sid, spec.name, since), subscriber_id=sid,
            msisdn_masked=masked, status="added" if added else "removed",
            score=min(1.0, max(0.0, entry["p"])), model=spec.name,
            model_version=entry["version"], reasons=list(entry["reasons"]),
            channel=spec.channel, decided_at=at)
        zh, en = _TITLES.get(spec.name, (spec.name, spec.name))
        cause = "; ".join(entry["reasons"]) or spec.meaning
        kinds = [HintKind.RISK]
        if spec.name == "churn":
            kinds.append(HintKind.RETENTION_TASK)
        out = [Output(CARE_LIST, sid, care)]
        for kind in kinds:
            out.append(Output(AGENT_HINTS, sid, AgentHint(
                hint_id=_fp("foresee", kind, sid, spec.name, since), sequence=1 if added else 2,
                subscriber_id=sid, msisdn_masked=masked, kind=kind, active=added,
                title=f"{zh} {entry['p']:.0%} / {en} {entry['p']:.0%}",
                cause=cause,
                script=("请关注客户的问题是否已解决，主动致歉并说明处理进度。"
                        if kind == HintKind.RISK else "客户有离网倾向，请按维挽流程主动挽留。"),
                progress="" if added else "风险已解除 / risk no longer high",
                source=f"foresee.{spec.name}", created_at=at,
                expires_at=at + HINT_TTL)))
        return out
