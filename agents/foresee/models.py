"""River estimators for the propensity models, their snapshots and their explanations.

A model is a river estimator chosen in the catalog (``logistic``: StandardScaler |
LogisticRegression, the default, ~10 us to score; ``arf``: adaptive random forest, seeded;
``hat``: Hoeffding adaptive tree, seeded). Seeds are fixed so a replay of the same
examples gives the same model, byte for byte (river's forests draw from their own
``random.Random(seed)``; nothing here reads the global random or the clock).

:class:`ModelStore` holds the model each worker scores with; the learner publishes new
versions and workers swap them in (:meth:`ModelStore.offer`), so every score names the
version that made it.
"""

from __future__ import annotations

import base64
import math
import pickle
import threading
from dataclasses import dataclass, field
from typing import Any

from river import compose, forest, linear_model, optim, preprocessing, tree

from agents.foresee.catalog import Catalog, Feature

SEED = 42


def make_estimator(kind: str, pos_weight: float = 1.0, learning_rate: float = 0.0005,
                   prior: float = 0.5) -> Any:
    """A fresh river estimator of ``kind`` (``logistic``, ``arf`` or ``hat``);
    ``pos_weight`` weighs positives in the logistic loss, ``learning_rate`` is the SGD
    step of the logistic model, ``prior`` the share of positives it starts from (its
    intercept: an untrained model scores everyone at the prior, not at 0.5, so it puts
    nobody on the care list while it has not learned)."""
    if kind == "arf":
        return forest.ARFClassifier(n_models=10, seed=SEED)
    if kind == "hat":
        return tree.HoeffdingAdaptiveTreeClassifier(seed=SEED)
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        # the step is per model (catalog ``learning_rate``). Complaints: a small one,
        # labels arrive in bursts (a complaint makes two weeks of positives at once,
        # negatives come a horizon later), which a large step chases; measured
        # (progressive AUC, 400 subscribers, 90 simulated days): SGD 0.02: 0.63, Adam
        # 0.001: 0.76, SGD 0.001: 0.787, SGD 0.0005: 0.790, SGD 0.0002: 0.780. Churn,
        # with ~3x fewer examples and rarer positives, learns better with a large one:
        # SGD 0.0005: 0.61, 0.005: 0.65, 0.02: 0.71, 0.05: 0.71, 0.1: 0.67.
        linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate),
                                        intercept_init=math.log(prior / (1 - prior)),
                                        loss=optim.losses.Log(weight_pos=pos_weight)))


@dataclass
class Trained:
    """One model version: the estimator and what it learned from."""

    name: str
    estimator: Any
    version: str
    n: int = 0          # examples learned
    positives: int = 0
    auc: float | None = None
    logloss: float | None = None
    created_ms: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        """The estimator, pickled and base64'd (what goes on the ``models`` topic)."""
        return base64.b64encode(pickle.dumps(self.estimator, protocol=5)).decode()

    @staticmethod
    def loads(blob: str) -> Any:
        # Only Foresight's own learner writes the ``models`` topic (ACLs: docs/security.md)
        return pickle.loads(base64.b64decode(blob))  # noqa: S301


def version_name(name: str, n: int) -> str:
    """``complaint@v000123`` from the number of examples learned: sortable and stable."""
    return f"{name}@v{n:09d}"


def fresh(name: str, kind: str, pos_weight: float = 1.0, learning_rate: float = 0.0005,
          prior: float = 0.5) -> Trained:
    return Trained(name, make_estimator(kind, pos_weight, learning_rate, prior),
                   version_name(name, 0))


def predict(estimator: Any, x: dict[str, float]) -> float:
    """P(positive) for ``x`` (0.5-ish for an untrained logistic model)."""
    proba = estimator.predict_proba_one(x)
    return float(proba.get(True, 0.0)) if proba else 0.0


def contributions(estimator: Any, x: dict[str, float]) -> dict[str, float]:
    """Each feature's push on the log-odds (linear models: weight x scaled value).

    For trees and forests (no such decomposition) the scaled-free fallback ranks the
    features by their value, which still names what stands out for the agent.
    """
    if isinstance(estimator, compose.Pipeline):
        steps = list(estimator.steps.values())
        scaler, lr = steps[0], steps[-1]
        if isinstance(lr, linear_model.LogisticRegression):
            z = scaler.transform_one(x) if isinstance(scaler, preprocessing.StandardScaler) else x
            w = lr.weights
            return {k: w.get(k, 0.0) * v for k, v in z.items()}
    return {k: v for k, v in x.items() if v}


def reasons(estimator: Any, x: dict[str, float], features: dict[str, Feature],
            top: int = 3) -> list[str]:
    """The top reasons in plain words: features that pushed the score up the most and
    have a reason text in the catalog, largest push first."""
    contrib = contributions(estimator, x)
    ranked = sorted(((c, k) for k, c in contrib.items() if c > 0 and x.get(k)),
                    key=lambda ck: (-ck[0], ck[1]))
    out = []
    for _c, k in ranked:
        f = features.get(k)
        if f is None or not f.reason:
            continue
        out.append(f.reason.format(value=x[k]))
        if len(out) >= top:
            break
    return out


class ModelStore:
    """The newest version of every model a worker scores with (thread-safe swaps).

    Starts with untrained models (version ``@v000000000``) and keeps whatever the
    learner publishes that is newer; a version older than the one held is ignored, so a
    replay of the compacted ``models`` topic cannot roll a worker back.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self.models: dict[str, Trained] = {
            name: fresh(name, spec.estimator, spec.pos_weight, spec.learning_rate, spec.prior)
            for name, spec in catalog.models.items()}
        self.swaps = 0

    def get(self, name: str) -> Trained:
        return self.models[name]

    def offer(self, trained: Trained) -> bool:
        """Swap ``trained`` in if it is newer than the held version; True if it was."""
        with self._lock:
            cur = self.models.get(trained.name)
            if cur is not None and cur.version >= trained.version:
                return False
            if trained.name not in self.catalog.models:
                return False
            self.models[trained.name] = trained
            self.swaps += 1
            return True
