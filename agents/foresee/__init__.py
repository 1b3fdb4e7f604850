"""Foresee: online propensity models (river) from streaming features (docs/foresee.md)."""
