"""Offers (``agents/rules/offers.yaml``) and the random control group that never gets one.

The control group is what makes uplift measurable (seed 003: 32.7% acceptance with the
model vs 11.5% without): a deterministic hash of the subscriber id and a salt, so every
worker, the screen pop and the evaluation agree on who is in it without sharing state.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from streams.errors import ConfigError

OFFERS_PATH = Path(__file__).resolve().parent.parent / "rules" / "offers.yaml"


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read offers {path}: {exc}") from None
    offers = data.get("offers") or []
    for o in offers:
        missing = [k for k in ("id", "name_zh", "name_en", "script") if not o.get(k)]
        if missing:
            raise ConfigError(f"{path}: offer {o.get('id')!r} lacks {missing}")
    return data


def load_offers(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The offers: dicts with ``id``, ``name_zh``, ``name_en``, ``script``."""
    return [dict(o) for o in _load(str(path or OFFERS_PATH)).get("offers") or []]


def control_settings(path: str | Path | None = None) -> tuple[float, str]:
    """(share, salt) of the control group as configured."""
    data = _load(str(path or OFFERS_PATH))
    return float(data.get("control_share", 0.1)), str(data.get("control_salt", "foresee"))


def in_control_group(subscriber_id: str, share: float = 0.1, salt: str = "foresee-offers-v1") -> bool:
    """True if ``subscriber_id`` is in the control group (never gets an offer).

    >>> in_control_group("S00000001", 0.0, "x"), in_control_group("S00000001", 1.0, "x")
    (False, True)
    """
    h = hashlib.blake2b(f"{salt}:{subscriber_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < share
