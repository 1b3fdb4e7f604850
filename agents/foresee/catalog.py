"""The Foresee catalog: signals, features and models as data (``agents/rules/foresee.yaml``).

Why data: an operator adds a feature (or a dialled number, or changes a model's horizon)
without touching the runtime, and the catalog is also the documentation an analyst reads
(``foresight models features``). Loading checks every entry and names the wrong one, so a
bad file stops a worker at start instead of scoring with half a catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from streams.errors import ConfigError

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "rules" / "foresee.yaml"
DAY_MS = 86_400_000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
FEATURE_KINDS = ("sum", "ratio", "vs_average", "days_since", "last", "last_below", "view",
                 "product", "audit")
#: Facts of the unified view a ``view`` feature may name (computed in ``features.py``).
VIEW_FACTS = ("balance_yuan", "arrears_yuan", "tenure_days", "star_level", "seed_user",
              "products_held", "plan_5g")
ESTIMATORS = ("logistic", "arf", "hat")


def duration_ms(text: Any, what: str) -> int:
    """``"14d"`` -> milliseconds (``s``, ``m``, ``h``, ``d``)."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ConfigError(f"{what}: {text!r} is not a duration like 30s, 15m, 6h or 14d")
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])


def _listify(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    return tuple(str(x) for x in (v if isinstance(v, list) else [v]))


@dataclass(frozen=True)
class Signal:
    """An event matcher; matching events are counted (or summed) in daily buckets."""

    name: str
    topics: tuple[str, ...]
    kinds: tuple[str, ...]
    where: dict[str, tuple[str, ...]]
    where_any: dict[str, tuple[str, ...]]
    band: str | None = None
    dest: str | None = None
    peer_in: frozenset[str] = frozenset()
    home_cell: bool = False
    amount: str | None = None
    scale: float = 1.0
    value: str | None = None
    value_map: dict[str, float] = field(default_factory=dict)
    repeat_within_ms: int = 0
    keep_days: int = 1   # set from the longest window that uses it


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str
    topics: tuple[str, ...]
    window: str
    unit: str
    kind: str
    arg: Any
    window_days: int = 0
    cap: float = 365.0
    default: float = 0.0
    reason: str = ""
    #: ``audit`` features: rules not counted (reminders to the customer, not faults)
    skip_rules: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LabelRule:
    """One way an event makes a model's pending snapshots positive."""

    signal: str | None = None
    below: float | None = None
    topic: str | None = None
    kind: str | None = None
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    meaning: str
    labels: tuple[LabelRule, ...]
    horizon_ms: int
    exclude: frozenset[str]
    estimator: str
    on: float
    off: float
    cooldown_ms: int
    channel: str
    #: ``offer:<id>``: labelled at once by the offer answer, not by a horizon
    offer_id: str | None = None
    #: weight of a positive in the logistic loss (rare outcomes)
    pos_weight: float = 1.0
    #: SGD step of the logistic model
    learning_rate: float = 0.0005
    #: share of positives an untrained model starts from (its intercept)
    prior: float = 0.5


@dataclass(frozen=True)
class Catalog:
    signals: dict[str, Signal]
    features: tuple[Feature, ...]
    models: dict[str, ModelSpec]
    snapshot_every_ms: int
    max_pending: int
    score_min_interval_ms: int
    numbers: dict[str, frozenset[str]]
    path: str = ""
    #: no care-list entry from a model that learned fewer examples (warm-up)
    min_examples: int = 200

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def features_of(self, model: str) -> tuple[str, ...]:
        """The features ``model`` is given (the catalog's, minus its exclusions)."""
        ex = self.models[model].exclude
        return tuple(n for n in self.feature_names if n not in ex)

    @property
    def topics(self) -> frozenset[str]:
        out: set[str] = set()
        for s in self.signals.values():
            out.update(s.topics)
        return frozenset(out)

    @property
    def max_horizon_ms(self) -> int:
        return max((m.horizon_ms for m in self.models.values()), default=DAY_MS)


def _where(raw: Any, what: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: where must be a mapping of field: value or [values]")
    return {str(k): _listify(v) for k, v in raw.items()}


def _signal(name: str, raw: Any, numbers: dict[str, frozenset[str]]) -> Signal:
    what = f"signal {name!r}"
    if not isinstance(raw, dict) or "topic" not in raw or "kind" not in raw:
        raise ConfigError(f"{what}: needs at least topic and kind")
    known = {"topic", "kind", "where", "where_any", "band", "dest", "peer_in", "home_cell",
             "amount", "scale", "value", "map", "repeat_within_days"}
    extra = set(raw) - known
    if extra:
        raise ConfigError(f"{what}: unknown keys {sorted(extra)}; known: {sorted(known)}")
    band = raw.get("band")
    if band not in (None, "day", "evening", "night"):
        raise ConfigError(f"{what}: band must be day, evening or night")
    dest = raw.get("dest")
    if dest not in (None, "domestic", "international"):
        raise ConfigError(f"{what}: dest must be domestic or international")
    peer = raw.get("peer_in")
    if peer is not None and peer not in numbers:
        raise ConfigError(f"{what}: peer_in {peer!r} is not a list under numbers: {sorted(numbers)}")
    return Signal(
        name=name, topics=_listify(raw["topic"]), kinds=_listify(raw["kind"]),
        where=_where(raw.get("where"), what), where_any=_where(raw.get("where_any"), what),
        band=band, dest=dest, peer_in=numbers.get(peer, frozenset()) if peer else frozenset(),
        home_cell=bool(raw.get("home_cell", False)), amount=raw.get("amount"),
        scale=float(raw.get("scale", 1.0)), value=raw.get("value"),
        value_map={str(k): float(v) for k, v in (raw.get("map") or {}).items()},
        repeat_within_ms=int(float(raw.get("repeat_within_days", 0)) * DAY_MS),
    )


def _window_days(window: str, what: str) -> int:
    if window in ("all", "now"):
        return 0
    return max(1, duration_ms(window, what) // DAY_MS)


def _feature(raw: Any, signals: dict[str, Signal]) -> Feature:
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"feature {raw!r}: needs a name")
    name = str(raw["name"])
    what = f"feature {name!r}"
    for key in ("meaning", "topics", "window", "unit"):
        if key not in raw:
            raise ConfigError(f"{what}: needs {key} (the catalog documents every feature)")
    kinds = [k for k in FEATURE_KINDS if k in raw]
    if len(kinds) != 1:
        raise ConfigError(f"{what}: needs exactly one of {', '.join(FEATURE_KINDS)}")
    kind = kinds[0]
    arg = raw[kind]
    refs: list[str] = []
    if kind in ("sum", "days_since", "last"):
        refs = [str(arg)]
    elif kind == "ratio":
        if not (isinstance(arg, list) and len(arg) == 2):
            raise ConfigError(f"{what}: ratio needs [numerator, denominator] signals")
        refs = [str(a) for a in arg]
    elif kind in ("vs_average", "last_below"):
        if not (isinstance(arg, list) and len(arg) == 2):
            raise ConfigError(f"{what}: {kind} needs [signal, number]")
        refs = [str(arg[0])]
    elif kind == "view" and arg not in VIEW_FACTS:
        raise ConfigError(f"{what}: view must be one of {', '.join(VIEW_FACTS)}")
    elif kind == "audit" and arg != "open":
        raise ConfigError(f"{what}: audit supports only 'open'")
    for r in refs:
        if r not in signals:
            raise ConfigError(f"{what}: unknown signal {r!r}")
    window = str(raw["window"])
    try:
        reason = str(raw.get("reason", ""))
        if reason:
            reason.format(value=1.0)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{what}: reason template {reason!r} is invalid: {exc}") from None
    return Feature(name=name, meaning=str(raw["meaning"]), topics=_listify(raw["topics"]),
                   window=window, unit=str(raw["unit"]), kind=kind, arg=arg,
                   window_days=_window_days(window, what), cap=float(raw.get("cap", 365)),
                   default=float(raw.get("default", 0)), reason=reason,
                   skip_rules=frozenset(str(r) for r in raw.get("skip_rules") or []))


def _label(raw: Any, what: str, signals: dict[str, Signal]) -> tuple[LabelRule, ...]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: label must be a mapping")
    items = raw.get("any", [raw])
    out = []
    for item in items:
        sig = item.get("signal")
        if sig is not None and sig not in signals:
            raise ConfigError(f"{what}: label names unknown signal {sig!r}")
        if sig is None and not (item.get("topic") and item.get("kind")):
            raise ConfigError(f"{what}: a label needs a signal, or a topic and a kind")
        out.append(LabelRule(signal=sig, below=item.get("below"), topic=item.get("topic"),
                             kind=item.get("kind"), where=_where(item.get("where"), what)))
    return tuple(out)


def _model(name: str, raw: Any, signals: dict[str, Signal], features: set[str]) -> ModelSpec:
    what = f"model {name!r}"
    if not isinstance(raw, dict) or "label" not in raw:
        raise ConfigError(f"{what}: needs a label")
    est = str(raw.get("estimator", "logistic"))
    if est not in ESTIMATORS:
        raise ConfigError(f"{what}: estimator must be one of {', '.join(ESTIMATORS)}")
    exclude = frozenset(str(x) for x in raw.get("exclude") or [])
    unknown = exclude - features
    if unknown:
        raise ConfigError(f"{what}: excludes unknown features {sorted(unknown)}")
    on, off = float(raw.get("on", 0.5)), float(raw.get("off", 0.3))
    if not 0 < off <= on < 1:
        raise ConfigError(f"{what}: thresholds need 0 < off <= on < 1")
    return ModelSpec(name=name, meaning=str(raw.get("meaning", "")),
                     labels=_label(raw["label"], what, signals),
                     horizon_ms=duration_ms(raw.get("horizon", "14d"), f"{what} horizon"),
                     exclude=exclude, estimator=est, on=on, off=off,
                     cooldown_ms=duration_ms(raw.get("cooldown", "3d"), f"{what} cooldown"),
                     channel=str(raw.get("channel", "ivr")),
                     pos_weight=float(raw.get("pos_weight", 1.0)),
                     learning_rate=float(raw.get("learning_rate", 0.0005)),
                     prior=float(raw.get("prior", 0.05)))


def parse_catalog(data: Any, path: str = "", offers: list[dict[str, Any]] | None = None,
                  estimator: str | None = None) -> Catalog:
    """Build a :class:`Catalog` from parsed YAML; ``estimator`` overrides every model's."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the catalog must be a mapping")
    numbers = {str(k): frozenset(str(n) for n in v) for k, v in (data.get("numbers") or {}).items()}
    raw_signals = data.get("signals") or {}
    raw_features = data.get("features") or []
    # windows first, so each signal keeps only as many daily buckets as its longest use
    signals = {str(n): _signal(str(n), r, numbers) for n, r in raw_signals.items()}
    features = tuple(_feature(r, signals) for r in raw_features)
    names = [f.name for f in features]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: features defined twice: {dup}")
    keep: dict[str, int] = {}
    for f in features:
        if f.kind in ("sum", "ratio", "days_since"):
            refs = [f.arg] if f.kind != "ratio" else list(f.arg)
            days = f.window_days if f.kind != "days_since" else int(f.cap) + 1
        elif f.kind == "vs_average":
            refs, days = [f.arg[0]], max(f.window_days, int(f.arg[1]))
        else:
            continue
        for r in refs:
            keep[r] = max(keep.get(r, 1), days)
    models = {str(n): _model(str(n), r, signals, set(names))
              for n, r in (data.get("models") or {}).items()}
    for s in signals.values():
        if s.repeat_within_ms:
            keep[s.name] = max(keep.get(s.name, 1), s.repeat_within_ms // DAY_MS + 1)
    signals = {n: replace(s, keep_days=keep.get(n, 1)) for n, s in signals.items()}
    for offer in offers or []:
        oid = str(offer["id"])
        models[f"offer:{oid}"] = ModelSpec(
            name=f"offer:{oid}", meaning=f"accepts the offer {offer.get('name_en', oid)}",
            labels=(), horizon_ms=0, exclude=frozenset(), estimator="logistic",
            on=0.5, off=0.3, cooldown_ms=DAY_MS, channel="human", offer_id=oid, prior=0.2)
    if estimator is not None:
        if estimator not in ESTIMATORS:
            raise ConfigError(f"estimator must be one of {', '.join(ESTIMATORS)}")
        models = {n: replace(m, estimator=estimator) for n, m in models.items()}
    snaps = data.get("snapshots") or {}
    return Catalog(signals=signals, features=features, models=models,
                   snapshot_every_ms=duration_ms(snaps.get("every", "1d"), "snapshots.every"),
                   max_pending=int(snaps.get("max_pending", 32)),
                   score_min_interval_ms=duration_ms(data.get("score_min_interval", "0s"),
                                                     "score_min_interval"),
                   numbers=numbers, path=path,
                   min_examples=int(data.get("min_examples", 200)))


def load_catalog(path: str | Path | None = None, *, estimator: str | None = None,
                 with_offers: bool = True) -> Catalog:
    """Load and check a catalog (default: the shipped ``agents/rules/foresee.yaml``)."""
    p = Path(path) if path else DEFAULT_PATH
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the Foresee catalog {p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    offers = None
    if with_offers:
        from agents.foresee.offers import load_offers
        offers = load_offers()
    try:
        return parse_catalog(data, str(p), offers, estimator)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    return load_catalog()
