"""Read the Foresee step's state from other steps (contact policy, screen pop).

The state holds ``"scores": {MODEL: {"p", "version", "reasons", "at_ms", "above"}}`` with
MODEL ``complaint``, ``dissatisfaction``, ``churn`` or ``offer:<id>``.
"""

from __future__ import annotations

from typing import Any


def scores_of(state: dict[str, Any] | None) -> dict[str, Any]:
    """The latest score per model (empty when the subscriber was never scored).

    >>> scores_of(None), scores_of({"scores": {"churn": {"p": 0.7}}})["churn"]["p"]
    ({}, 0.7)
    """
    if not state:
        return {}
    return state.get("scores") or {}
