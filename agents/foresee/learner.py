"""The learner: one place where every model learns from every partition's examples.

Pure (no Kafka): :class:`Learner` takes :class:`~schemas.models.ModelExample` records in
order, learns each once (``example_id``), keeps progressive-validation figures (the score
the worker gave *before* the model learned the example) and makes
:class:`~schemas.models.ModelSnapshot` versions. ``foresight models learn`` runs it on the
``model-examples`` topic (``agents/foresee/learn_command.py``); the evaluation and the
tests run it in process.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime
from typing import Any

from agents.foresee.catalog import Catalog
from agents.foresee.models import ModelStore, Trained, version_name
from schemas.models import ModelExample, ModelSnapshot

WINDOW = 5000      # examples the rolling AUC / log loss are computed over
SEEN_IDS = 200_000


def roc_auc(scores: list[float], labels: list[bool]) -> float | None:
    """Exact ROC AUC (ties count half); None without both classes.

    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if not pos or not neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        r = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = r
        i = j + 1
    rsum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rsum - pos * (pos + 1) / 2) / (pos * neg)


def log_loss(scores: list[float], labels: list[bool]) -> float | None:
    if not scores:
        return None
    eps = 1e-7
    return -sum(math.log(min(1 - eps, max(eps, p if y else 1 - p)))
                for p, y in zip(scores, labels, strict=True)) / len(scores)


class Learner:
    """Learns examples into a :class:`ModelStore` and snapshots versions."""

    def __init__(self, catalog: Catalog, store: ModelStore | None = None) -> None:
        self.catalog = catalog
        self.store = store or ModelStore(catalog)
        self.recent: dict[str, deque[tuple[float, bool]]] = {
            n: deque(maxlen=WINDOW) for n in catalog.models}
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.dirty: set[str] = set()
        self.duplicates = 0
        self.unknown = 0

    def learn(self, ex: ModelExample) -> bool:
        """Learn one example (False: a duplicate or a model this catalog lacks)."""
        if ex.model not in self.catalog.models:
            self.unknown += 1
            return False
        if ex.example_id in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(ex.example_id)
        self._seen_order.append(ex.example_id)
        if len(self._seen_order) > SEEN_IDS:
            self._seen.discard(self._seen_order.popleft())
        trained = self.store.get(ex.model)
        trained.estimator.learn_one(dict(ex.features), bool(ex.label))
        trained.n += 1
        trained.positives += int(ex.label)
        trained.version = version_name(ex.model, trained.n)
        self.recent[ex.model].append((ex.score, bool(ex.label)))
        self.dirty.add(ex.model)
        return True

    def figures(self, model: str) -> tuple[float | None, float | None]:
        """(AUC, log loss) of the scores workers gave before learning, last ``WINDOW``."""
        pairs = self.recent[model]
        s = [p for p, _ in pairs]
        y = [lab for _, lab in pairs]
        return roc_auc(s, y), log_loss(s, y)

    def snapshots(self, now: datetime | None = None, *, all_models: bool = False
                  ) -> list[ModelSnapshot]:
        """A snapshot of every model that learned since the last call (or all)."""
        names = sorted(self.catalog.models if all_models else self.dirty)
        self.dirty = set()
        now = now or datetime.now(UTC)
        out = []
        for name in names:
            t = self.store.get(name)
            auc, ll = self.figures(name)
            t.auc, t.logloss = auc, ll
            out.append(ModelSnapshot(model=name, version=t.version,
                                     estimator=self.catalog.models[name].estimator,
                                     blob_b64=t.dumps(), examples=t.n, positives=t.positives,
                                     auc=auc, logloss=ll, created_at=now))
        return out


def trained_from(snapshot: ModelSnapshot) -> Trained:
    """A :class:`Trained` model from a published snapshot (what a worker swaps in)."""
    return Trained(snapshot.model, Trained.loads(snapshot.blob_b64), snapshot.version,
                   n=snapshot.examples, positives=snapshot.positives, auc=snapshot.auc,
                   logloss=snapshot.logloss,
                   created_ms=int(snapshot.created_at.timestamp() * 1000))


def restore(learner: Learner, snapshots: list[Any]) -> int:
    """Load the newest published version of each model into ``learner`` (restart)."""
    n = 0
    for snap in snapshots:
        if learner.store.offer(trained_from(snap)):
            n += 1
    return n
