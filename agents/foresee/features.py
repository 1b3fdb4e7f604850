"""Streaming features per subscriber, in event time, from the catalog's signals.

Pure: ``update(fs, topic, event, t, catalog, view)`` folds one event into a subscriber's
feature state (a JSON dict; each signal's buckets a day-sorted ``[[day, value], ...]``),
``vector(fs, now_ms, catalog, view, audit)`` reads the feature values at an instant.
Windows are sums over daily buckets keyed by the event's own local day (+08:00, the
operator's), each signal keeping only as many days as its longest window, so the state
stays bounded and late events land where they belong.
"""

from __future__ import annotations

from typing import Any

from agents.audit.episodes import split_key
from agents.foresee.catalog import DAY_MS, Catalog, Signal

LOCAL_OFFSET_MS = 8 * 3_600_000   # the operator's day: China time
RECENT_IDS = 32


def new_state() -> dict[str, Any]:
    return {"b": {}, "last": {}, "ids": []}


def local_day(t: int) -> int:
    return (t + LOCAL_OFFSET_MS) // DAY_MS


def band_of(t: int) -> str:
    """day 08-18, evening 18-23, night 23-08 (local time).

    >>> band_of(2 * 3_600_000), band_of(12 * 3_600_000), band_of(16 * 3_600_000)
    ('day', 'evening', 'night')
    """
    hour = ((t + LOCAL_OFFSET_MS) // 3_600_000) % 24
    return "day" if 8 <= hour < 18 else "evening" if 18 <= hour < 23 else "night"


def _international(peer: str) -> bool:
    p = peer.lstrip("+")
    if peer.startswith("00"):
        return not peer.startswith("0086")
    return peer.startswith("+") and not p.startswith("86")


def _field(event: Any, name: str) -> str | None:
    v = getattr(event, name, None)
    if v is None:
        return None
    return v.value if hasattr(v, "value") else str(v)


def _matches(s: Signal, event: Any, t: int, home_cell: str | None,
             memo: dict[str, Any] | None = None) -> bool:
    """Does ``event`` count for signal ``s``? ``memo`` caches the event's field values
    across the signals an event is tested against (a call is tested against ~17)."""
    if memo is None:
        memo = {}

    def field(name: str) -> str | None:
        if name in memo:
            return memo[name]
        v = memo[name] = _field(event, name)
        return v

    for name, allowed in s.where.items():
        if field(name) not in allowed:
            return False
    if s.where_any and not any(field(n) in allowed for n, allowed in s.where_any.items()):
        return False
    if s.band is not None:
        band = memo.get("\0band")
        if band is None:
            band = memo["\0band"] = band_of(t)
        if band != s.band:
            return False
    if s.dest is not None or s.peer_in:
        peer = str(getattr(event, "peer_number", "") or "")
        if s.dest is not None and (_international(peer) != (s.dest == "international")):
            return False
        if s.peer_in and peer.lstrip("+") not in s.peer_in:
            return False
    if s.home_cell:
        cell = getattr(event, "cell_id", None)
        if home_cell is None or cell != home_cell:
            return False
    return True


def _index(catalog: Catalog) -> dict[tuple[str, str], tuple[list[Signal], bool]]:
    """Signals by (topic, kind), and whether any of them needs the home cell."""
    idx = getattr(catalog, "_foresee_index", None)
    if idx is None:
        lists: dict[tuple[str, str], list[Signal]] = {}
        for s in catalog.signals.values():
            for topic in s.topics:
                for kind in s.kinds:
                    lists.setdefault((topic, kind), []).append(s)
        idx = {k: (v, any(s.home_cell for s in v)) for k, v in lists.items()}
        object.__setattr__(catalog, "_foresee_index", idx)
    return idx


def home_cell_of(view: dict[str, Any] | None) -> str | None:
    if not view:
        return None
    slot = view.get("profile", {}).get("home_cell")
    return slot["v"] if slot else None


def update(fs: dict[str, Any], topic: str, event: Any, t: int, catalog: Catalog,
           view: dict[str, Any] | None = None) -> list[str]:
    """Fold one event into ``fs``; returns the names of the signals it moved (empty:
    nothing changed, e.g. a duplicate or an event no signal counts)."""
    found = _index(catalog).get((topic, getattr(event, "kind", "")))
    if not found:
        return []
    signals, needs_home = found
    eid = getattr(event, "event_id", None)
    if eid is not None:
        ids: list[str] = fs["ids"]
        if eid in ids:
            return []
        ids.append(eid)
        if len(ids) > RECENT_IDS:
            del ids[0]
    home = home_cell_of(view) if needs_home else None
    memo: dict[str, Any] = {}
    day = local_day(t)
    moved = []
    buckets: dict[str, dict[str, float]] = fs["b"]
    last: dict[str, list[Any]] = fs["last"]
    for s in signals:
        if not _matches(s, event, t, home, memo):
            continue
        prev = last.get(s.name)
        if s.repeat_within_ms and (prev is None or not 0 <= t - prev[0] <= s.repeat_within_ms):
            if prev is None or t >= prev[0]:
                last[s.name] = [t, None]
            continue
        inc = float(getattr(event, s.amount, 0) or 0) * s.scale if s.amount is not None else 1.0
        value = None
        if s.value is not None:
            raw = _field(event, s.value)
            if raw is None:
                continue
            value = s.value_map.get(raw, None) if s.value_map else float(raw)
        if prev is None or t >= prev[0]:
            last[s.name] = [t, value]
        b = buckets.get(s.name)
        if b is None:
            b = buckets[s.name] = []
        _add(b, day, inc)
        if b[0][0] <= day - s.keep_days:
            del b[:next((i for i, (d, _) in enumerate(b) if d > day - s.keep_days), len(b))]
        moved.append(s.name)
    return moved


def _add(b: list[list[Any]], day: int, inc: float) -> None:
    """Add ``inc`` to ``day``'s bucket of a day-sorted ``[[day, value], ...]`` list (the
    newest day is almost always the last: O(1); a late event walks back)."""
    i = len(b)
    while i and b[i - 1][0] > day:
        i -= 1
    if i and b[i - 1][0] == day:
        b[i - 1][1] = round(b[i - 1][1] + inc, 4)
    else:
        b.insert(i, [day, round(inc, 4)])


def _sum(b: list[list[Any]], today: int, days: int) -> float:
    lo = today - days
    total = 0.0
    for d, v in reversed(b):
        if d <= lo:
            break
        if d <= today:
            total += v
    return total


def window_sum(fs: dict[str, Any], signal: str, now_ms: int, days: int) -> float:
    """Sum of ``signal`` over the ``days`` local days ending with ``now_ms``'s day."""
    b = fs["b"].get(signal)
    return _sum(b, local_day(now_ms), days) if b else 0.0


def _view_fact(name: str, view: dict[str, Any] | None, now_ms: int) -> float:
    if not view:
        return 0.0
    if name in ("balance_yuan", "arrears_yuan"):
        key = "balance" if name == "balance_yuan" else "arrears"
        slot = view.get("systems", {}).get("billing", {}).get(key)
        return slot["v"] / 100.0 if slot else 0.0
    if name == "tenure_days":
        first = view.get("first_event_ms")
        return max(0.0, (now_ms - first) / DAY_MS) if first else 0.0
    if name in ("star_level", "seed_user"):
        slot = view.get("profile", {}).get(name)
        return float(slot["v"]) if slot else 0.0
    if name == "products_held":
        return float(sum(1 for p in view.get("products", {}).values()
                         if (p.get("order") or {}).get("v") == "ordered"))
    if name == "plan_5g":
        slot = view.get("systems", {}).get("bss", {}).get("plan")
        return 1.0 if slot and "5g" in slot.get("networks", ()) else 0.0
    return 0.0


def vector(fs: dict[str, Any], now_ms: int, catalog: Catalog,
           view: dict[str, Any] | None = None, audit: dict[str, Any] | None = None
           ) -> dict[str, float]:
    """Every catalog feature's value at ``now_ms`` (a plain dict, in catalog order)."""
    out: dict[str, float] = {}
    last = fs["last"]
    buckets = fs["b"]
    today = local_day(now_ms)
    cache: dict[tuple[str, int], float] = {}

    def wsum(signal: str, days: int) -> float:
        key = (signal, days)
        v = cache.get(key)
        if v is None:
            b = buckets.get(signal)
            v = cache[key] = _sum(b, today, days) if b else 0.0
        return v

    for f in catalog.features:
        k = f.kind
        if k == "sum":
            v = wsum(f.arg, f.window_days)
        elif k == "ratio":
            den = wsum(f.arg[1], f.window_days)
            v = wsum(f.arg[0], f.window_days) / den if den else 0.0
        elif k == "vs_average":
            sig, long_days = f.arg[0], int(f.arg[1])
            b = buckets.get(sig)
            # the long average over the days the signal has been watched, not more:
            # a subscriber seen for 10 days has no 90-day average yet
            first = b[0][0] if b else today
            seen = max(f.window_days, min(long_days, today - first + 1))
            avg = wsum(sig, long_days) / seen
            cur = wsum(sig, f.window_days) / f.window_days
            v = min(10.0, cur / avg) if avg > 0 else 0.0
        elif k == "days_since":
            seen = last.get(f.arg)
            v = f.cap if seen is None else min(f.cap, max(0.0, (now_ms - seen[0]) / DAY_MS))
        elif k == "last":
            seen = last.get(f.arg)
            v = f.default if seen is None or seen[1] is None else float(seen[1])
        elif k == "last_below":
            seen = last.get(f.arg[0])
            v = 1.0 if seen is not None and seen[1] is not None and seen[1] < f.arg[1] else 0.0
        elif k == "view":
            v = _view_fact(f.arg, view, now_ms)
        elif k == "product":
            ids = f.arg if isinstance(f.arg, list) else [f.arg]
            prods = (view or {}).get("products", {})
            v = 1.0 if any((prods.get(i, {}).get("order") or {}).get("v") == "ordered"
                           for i in ids) else 0.0
        else:  # audit
            # fired episodes only: a pending one may be a benign lag between systems
            skip = f.skip_rules
            v = float(sum(1 for key, ep in ((audit or {}).get("episodes") or {}).items()
                          if "fired_at" in ep and split_key(key)[0] not in skip))
        out[f.name] = v
    return out
