"""Foresee: the feature catalog, the pure feature updater, delayed labels (the label's own
event never in its features), hysteresis, the learner and determinism."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agents.core import EventContext
from agents.foresee import features as feats
from agents.foresee.catalog import DAY_MS, load_catalog, parse_catalog
from agents.foresee.learner import Learner, roc_auc
from agents.foresee.models import ModelStore, Trained
from agents.foresee.offers import in_control_group, load_offers
from agents.foresee.step import Foresee
from agents.foresee.view import scores_of
from schemas.models import ModelExample
from schemas.registry import decode
from streams.errors import ConfigError
from tests.unit.helpers import event

CAT = load_catalog()
SID = "S00000001"


def _decode(topic: str, ev: dict[str, Any]) -> Any:
    return decode(topic, orjson.dumps(ev))


def _ms(ev: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(ev["event_time"]).timestamp() * 1000)


class Harness:
    """Feeds events to one Foresee step (no reads), firing its timer in event time."""

    def __init__(self, store: ModelStore | None = None, catalog: Any = CAT) -> None:
        self.examples: list[ModelExample] = []
        self.step = Foresee(catalog, store, reads=(), on_example=self.examples.append)
        self.state: dict[str, Any] | None = None
        self.wake: int | None = None
        self.outputs: list[Any] = []

    def send(self, topic: str, ev: dict[str, Any]) -> None:
        t = _ms(ev)
        if self.wake is not None and self.wake <= t:
            self.advance(t)
        ctx = EventContext(topic, 0, 0, t, datetime.now(UTC), event_ms=t)
        r = self.step.apply(self.state, _decode(topic, ev), ctx, {})
        self.state, self.wake = r.state, r.wake_at_ms
        self.outputs += r.outputs

    def advance(self, t: int) -> None:
        while self.wake is not None and self.wake <= t:
            ctx = EventContext("timer", 0, 0, self.wake, datetime.now(UTC), event_ms=self.wake)
            r = self.step.on_timer(self.state, SID, self.wake, ctx, {})
            self.state, self.wake = r.state, r.wake_at_ms
            self.outputs += r.outputs

    def vector(self, t: int) -> dict[str, float]:
        return feats.vector(self.state["f"], t, CAT)


def _call(at: float, **kw: Any) -> dict[str, Any]:
    return event("call-events", "network_call", sid=SID, at=at, **kw)


# --- the catalog ---------------------------------------------------------------------
def test_every_feature_is_documented_and_the_models_are_the_issues() -> None:
    for f in CAT.features:
        assert f.meaning and f.topics and f.window and f.unit, f.name
    assert {"complaint", "dissatisfaction", "churn"} <= set(CAT.models)
    assert {f"offer:{o['id']}" for o in load_offers()} <= set(CAT.models)
    assert CAT.models["complaint"].horizon_ms == 14 * DAY_MS
    assert CAT.models["churn"].horizon_ms == 30 * DAY_MS
    assert len(CAT.features) >= 31   # seed 000's quality-state model has 31


def test_a_bad_catalog_names_the_entry() -> None:
    data = {"signals": {"x": {"topic": "call-events", "kind": "network_call"}},
            "features": [{"name": "f", "meaning": "m", "topics": ["call-events"],
                          "window": "7d", "unit": "calls", "sum": "nope"}]}
    with pytest.raises(ConfigError, match="feature 'f': unknown signal 'nope'"):
        parse_catalog(data)
    data["features"][0]["sum"] = "x"
    data["models"] = {"m": {"label": {"signal": "x"}, "estimator": "svm"}}
    with pytest.raises(ConfigError, match="model 'm': estimator must be one of"):
        parse_catalog(data)


def test_an_operator_adds_a_feature_without_code() -> None:
    data = {"signals": {"night_drops": {"topic": "call-events", "kind": "network_call",
                                        "band": "night", "where": {"result": "dropped"}}},
            "features": [{"name": "night_drops_7d", "meaning": "dropped calls at night",
                          "topics": ["call-events"], "window": "7d", "unit": "calls",
                          "sum": "night_drops"}]}
    cat = parse_catalog(data)
    fs = feats.new_state()
    ev = _decode("call-events", _call(3600 * 17, result="dropped"))  # 02:00 China time
    assert feats.update(fs, "call-events", ev, _ms(_call(3600 * 17)), cat) == ["night_drops"]
    assert feats.vector(fs, _ms(_call(3600 * 18)), cat) == {"night_drops_7d": 1.0}


# --- features ------------------------------------------------------------------------
def test_call_features_ratios_repeats_and_windows() -> None:
    h = Harness()
    h.send("call-events", _call(0, result="dropped"))
    h.send("call-events", _call(60, result="answered"))
    h.send("call-events", _call(60, result="answered"))     # same event id: a duplicate
    h.send("call-events", _call(120, peer_number="12315", direction="mo", result="answered"))
    for i, day in enumerate((0, 2, 20)):
        h.send("call-events", event("call-events", "hotline_call", sid=SID,
                                    at=day * 86400 + 300 + i, stage="incoming"))
    now = _ms(_call(21 * 86400))
    x = h.vector(_ms(_call(3 * 86400)))
    assert x["calls_7d"] == 3 and x["dropped_7d"] == 1
    assert x["dropped_ratio_30d"] == pytest.approx(1 / 3, abs=1e-3)
    assert x["regulator_calls_30d"] == 1
    assert x["hotline_7d"] == 2 and x["hotline_repeat_30d"] == 1   # the 2nd within 7 days
    x = h.vector(now)
    assert x["dropped_7d"] == 0 and x["dropped_ratio_30d"] > 0     # out of the week, in the month
    assert x["hotline_repeat_30d"] == 1                            # day 20 is not a repeat


# --- delayed labels: the label's own event is never in its features --------------------
def _history(h: Harness) -> None:
    h.send("call-events", _call(0, result="dropped"))
    for i in range(3):
        h.send("call-events", event("call-events", "hotline_call", sid=SID, at=3600 + i * 600,
                                    stage="incoming"))


@pytest.mark.parametrize(("model", "topic", "label_event", "moved"), [
    ("complaint", "complaints",
     lambda at: event("complaints", "complaint", sid=SID, at=at, stage="opened",
                      type="complaint"), "complaints_30d"),
    ("dissatisfaction", "contact-outcomes",
     lambda at: event("contact-outcomes", "survey", sid=SID, at=at, score=2), "low_survey"),
    ("churn", "subscriber-state",
     lambda at: event("subscriber-state", "port_out_requested", sid=SID, at=at), None),
])
def test_positive_examples_hold_the_features_before_the_label(model, topic, label_event,
                                                              moved) -> None:
    h = Harness()
    _history(h)
    day1 = _call(86400, result="answered")
    h.send("call-events", day1)               # the day's snapshot, with the history
    before = h.vector(_ms(day1))
    at = 2 * 86400 - 60
    h.send(topic, label_event(at))
    pos = [e for e in h.examples if e.model == model and e.label]
    assert len(pos) == 2, f"{model}: both snapshots in the horizon become positive"
    ex = max(pos, key=lambda e: e.at_ms)
    assert ex.at_ms == _ms(day1) < _ms(label_event(at)) == ex.labelled_at_ms
    assert before["hotline_7d"] == 3
    for name in CAT.features_of(model):
        assert ex.features[name] == pytest.approx(before.get(name, 0.0), abs=1e-3), name
    assert not set(ex.features) & CAT.models[model].exclude
    if moved is not None:   # the label's event did move the features, after the example
        assert h.vector(_ms(label_event(at)))[moved] != ex.features[moved]
        assert ex.features[moved] == pytest.approx(
            CAT.features[CAT.feature_names.index(moved)].default, abs=1e-3)


def test_offer_answers_label_the_features_just_before() -> None:
    h = Harness()
    _history(h)
    ev = event("contact-outcomes", "offer", sid=SID, at=86400, offer_id="data-30g",
               decision="accepted")
    before = h.vector(_ms(ev))
    h.send("contact-outcomes", ev)
    (ex,) = [e for e in h.examples if e.model == "offer:data-30g"]
    assert ex.label is True and ex.features["hotline_7d"] == before["hotline_7d"] == 3


def test_negatives_when_the_horizon_passes() -> None:
    h = Harness()
    _history(h)
    h.send("call-events", _call(31 * 86400))   # event time moves past every horizon
    negs = {e.model for e in h.examples if not e.label}
    assert negs == {"complaint", "dissatisfaction", "churn"}
    assert not any(e.label for e in h.examples)
    for e in h.examples:
        assert e.labelled_at_ms - e.at_ms >= CAT.models[e.model].horizon_ms


# --- scores, hysteresis, care list ---------------------------------------------------
class _Fixed:
    def __init__(self) -> None:
        self.p = 0.0

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        return {True: self.p, False: 1 - self.p}


def test_hysteresis_and_cooldown_no_flapping() -> None:
    store = ModelStore(CAT)
    fixed = _Fixed()
    store.models["complaint"] = Trained("complaint", fixed, "complaint@v000001000", n=1000)
    h = Harness(store)
    care = lambda: [o.value for o in h.outputs if o.topic == "care-list"  # noqa: E731
                    and o.value.model == "complaint"]
    seq = [0.2, 0.55, 0.45, 0.6, 0.35, 0.25, 0.7, 0.1]
    for i, p in enumerate(seq):
        fixed.p = p
        h.send("call-events", _call(i * 3600))
    statuses = [c.status for c in care()]
    # up at 0.55, stays through 0.45/0.6/0.35 (off is 0.3), down at 0.25; 0.7 within the
    # 3-day cooldown adds nobody
    assert statuses == ["added", "removed"]
    assert care()[0].model_version == "complaint@v000001000"
    assert care()[0].reasons and care()[0].msisdn_masked.endswith(h.state["msisdn"][-4:])
    hints = [o.value for o in h.outputs if o.topic == "agent-hints"]
    assert {x.kind for x in hints} >= {"risk"}
    s = scores_of(h.state)["complaint"]
    assert s["version"] == "complaint@v000001000" and s["above"] is False and s["p"] == 0.1
    fixed.p = 0.8
    h.send("call-events", _call(5 * 86400))
    assert [c.status for c in care()] == ["added", "removed", "added"]


def test_control_group_is_deterministic_and_about_its_share() -> None:
    ids = [f"S{i:08d}" for i in range(5000)]
    inside = [s for s in ids if in_control_group(s, 0.1, "salt")]
    assert 400 < len(inside) < 600
    assert inside == [s for s in ids if in_control_group(s, 0.1, "salt")]


# --- learner and determinism ---------------------------------------------------------
def test_learner_learns_each_example_once_and_versions_grow() -> None:
    learner = Learner(CAT)
    ex = ModelExample(example_id="0123456789abcdef", model="complaint", subscriber_id=SID,
                      at_ms=0, labelled_at_ms=1, features={"hotline_7d": 3.0}, label=True,
                      score=0.5, version="complaint@v000000000")
    assert learner.learn(ex) and not learner.learn(ex)
    assert learner.store.get("complaint").version == "complaint@v000000001"
    (snap,) = learner.snapshots()
    assert snap.model == "complaint" and snap.examples == 1
    assert Trained.loads(snap.blob_b64).predict_proba_one({"hotline_7d": 3.0})
    assert learner.snapshots() == []   # nothing new learned


def test_roc_auc() -> None:
    assert roc_auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5


def _replay_models() -> bytes:
    from agents.foresee.evaluation import replay, simulate
    recs = simulate(60, 20, 5, 7.0, 0.3, 0.05)
    run = replay(recs, load_catalog(), with_audit=False)
    return pickle.dumps({n: (t.version, t.estimator) for n, t in
                         sorted(run.learner.store.models.items())})


def test_a_replay_twice_gives_identical_models() -> None:
    a, b = _replay_models(), _replay_models()
    assert a == b
    versions = pickle.loads(a)
    assert versions["complaint"][0] != "complaint@v000000000"   # it did learn


def test_a_restart_mid_run_changes_no_figure() -> None:
    """A worker restarted halfway restores its tables and timers from the stores
    (changelogs) and goes on: the same examples and figures, up to noise (a timer due
    during the restart fires at the next event instead, so some snapshots are taken at
    another instant, a few examples are learned in another order and later scores move
    in the 5th decimal)."""
    from agents.foresee.evaluation import figures, replay, simulate
    recs = simulate(60, 20, 6, 7.0, 0.3, 0.05)
    cat = load_catalog()
    plain = replay(recs, cat, with_audit=False)
    # at a batch boundary (500 events), so both runs commit at the same points
    restarted = replay(recs, cat, with_audit=False, restart_after=plain.events // 1000 * 500)
    a = {e.example_id: e for e in plain.examples}
    b = {e.example_id: e for e in restarted.examples}
    assert len(a) > 100
    assert abs(len(a) - len(b)) <= 0.02 * len(a)
    assert len(set(a) & set(b)) >= 0.9 * max(len(a), len(b))
    assert all(a[k].label == b[k].label for k in set(a) & set(b))
    fa, fb = figures(plain, cat, 60, warmup_days=0), figures(restarted, cat, 60, warmup_days=0)
    for model in ("complaint", "dissatisfaction"):
        for what in ("auc", "logloss"):
            if fa[model][what] is not None:
                assert abs(fa[model][what] - fb[model][what]) < 0.01, (model, what)
    assert abs(len(plain.care) - len(restarted.care)) <= 0.02 * len(plain.care) + 1


def test_evaluate_on_a_recorded_history(tmp_path: Any) -> None:
    """``--events FILE``: a ``simulate --record`` file (broken records included) is
    scored with labels from its own events."""
    from agents.foresee.evaluation import evaluate, read_jsonl, simulate
    from streams.simulator.records import record_line
    path = tmp_path / "history.jsonl"
    recs = simulate(60, 20, 8, 7.0, 0.3, 0.05)
    with path.open("wb") as fh:
        for topic, key, value, ts in recs:
            fh.write(record_line(topic, key, value, ts))
        fh.write(record_line("complaints", SID, b"not json", recs[-1][3]))
    back = read_jsonl(str(path))
    assert len(back) == len(recs) + 1
    result = evaluate(back, subscribers=60)
    assert result["models"]["complaint"]["examples_all"] > 100
    assert {t["target"] for t in result["targets"]} >= {"complaint median lead time >= 2 days"}


@pytest.mark.parametrize("kind", ["arf", "hat"])
def test_the_tree_options_learn_and_are_seeded(kind: str) -> None:
    from agents.foresee.models import make_estimator
    runs = []
    for _ in range(2):
        m = make_estimator(kind)
        for i in range(300):
            m.learn_one({"hotline_7d": float(i % 5), "dropped_7d": float(i % 3)}, i % 5 >= 3)
        runs.append(m.predict_proba_one({"hotline_7d": 4.0, "dropped_7d": 0.0}))
    assert runs[0] == runs[1] and runs[0].get(True, 0.0) > 0.5
