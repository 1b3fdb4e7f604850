"""``model-examples`` and ``models``: how one learner learns from every partition.

Workers publish labelled examples (the features as they were at prediction time, the
score then, and the outcome) keyed by model name; one learner consumes them, learns, and
publishes versioned snapshots of each model to the compacted ``models`` topic (keyed by
model name), which every worker reads and hot-swaps.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from schemas.common import SCHEMA_VERSION, Ident, OutboundModel, SchemaVersion, SubscriberId


class ModelExample(OutboundModel):
    """One labelled example. ``example_id`` is stable: a redelivered example is the same
    example (the learner learns each id once)."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    example_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    model: Ident
    subscriber_id: SubscriberId
    #: event time of the snapshot the features were taken at (epoch ms)
    at_ms: int
    #: event time the label was decided (the outcome, or the horizon passing)
    labelled_at_ms: int
    features: dict[str, float]
    label: bool
    #: the score the worker gave at ``at_ms`` and the model version that gave it
    #: (progressive validation: scored before it was learned)
    score: float = Field(ge=0.0, le=1.0)
    version: str


class ModelSnapshot(OutboundModel):
    """A version of one model: the pickled river estimator and its training figures."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    model: Ident
    version: str
    estimator: str
    blob_b64: str
    examples: int = Field(ge=0)
    positives: int = Field(ge=0)
    auc: float | None = None
    logloss: float | None = None
    created_at: AwareDatetime
