"""Deterministic, schema-valid benchmark events: same seed, same bytes, on every machine.

Benchmarks compare consumers over the *same* records, and comparisons across days only
mean something if the input did not change, so generation is a pure function of
``(seed, count, subscribers)`` built on :class:`random.Random`. Events are realistic in
shape and size (~230 bytes of JSON): half ``subscriber-state`` facts in a mix of kinds
(billing charges and top-ups, orders and provisioning, status changes, profile updates),
half ``call-events`` (mostly network calls, some hotline legs), keyed by subscriber id.
A small set of heavy users gets a fifth of the traffic, as in a real network, which is
what makes per-commit coalescing of state worth measuring.

Nothing here imports Kafka; :func:`invalid_event` makes the deliberately broken inputs the
latency benchmark follows through dead letters.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson

from schemas.registry import CALL_EVENTS, SUBSCRIBER_STATE

#: Event time of the first generated event; every following event is 5 ms later.
BASE_TIME_MS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
STEP_MS = 5
DEFAULT_SEED = 20261126

#: (kind, weight) of ``subscriber-state`` events: billing dominates real feeds.
STATE_KINDS: tuple[tuple[str, int], ...] = (
    ("charged", 25), ("topped_up", 12), ("product_ordered", 12), ("product_provisioned", 10),
    ("balance_reported", 8), ("suspended", 4), ("resumed", 4), ("plan_changed", 5),
    ("profile_changed", 5), ("signing_changed", 4), ("network_registered", 3), ("granted", 4),
    ("product_cancelled", 3), ("product_deprovisioned", 2), ("activated", 2), ("refunded", 2),
)
_KIND_NAMES = [k for k, _ in STATE_KINDS]
_KIND_WEIGHTS = [w for _, w in STATE_KINDS]
_PRODUCTS = ("vas-music", "vas-video", "vas-cloud", "pkg-data-10g", "pkg-data-30g", "pkg-roam")
_PLANS = ("plan-5g-129", "plan-5g-199", "plan-4g-59", "plan-4g-89", "plan-kids-39")
_RESULTS = ("answered",) * 90 + ("dropped",) * 4 + ("failed",) * 3 + ("busy",) * 2 + ("no_answer",)
_RATS = ("volte",) * 14 + ("vonr",) * 3 + ("3g",) * 2 + ("2g",)
_STAGES = ("incoming", "queued", "answered", "ended")


def subscriber_id(index: int) -> str:
    """The id of subscriber ``index`` (10 characters, valid ``SubscriberId``).

    >>> subscriber_id(42)
    's000000042'
    """
    return f"s{index:09d}"


def msisdn(index: int) -> str:
    """A stable mobile number for subscriber ``index``.

    >>> msisdn(42)
    '+8617200000042'
    """
    return f"+861{30 + index % 70:02d}{index % 100_000_000:08d}"


def iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, as operators' systems send it.

    >>> iso(BASE_TIME_MS + 5)
    '2026-11-01T00:00:00.005Z'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _base(i: int, sub: int) -> dict[str, object]:
    return {"event_id": f"e{i:09d}", "event_time": iso(BASE_TIME_MS + i * STEP_MS),
            "subscriber_id": subscriber_id(sub), "msisdn": msisdn(sub)}


def state_event(rng: random.Random, i: int, sub: int, kind: str | None = None) -> dict[str, object]:
    """One ``subscriber-state`` event (a dict ready for JSON) of ``kind`` or a random kind."""
    kind = kind or rng.choices(_KIND_NAMES, _KIND_WEIGHTS)[0]
    ev = _base(i, sub)
    product = _PRODUCTS[rng.randrange(len(_PRODUCTS))]
    if kind in ("charged", "refunded"):
        ev.update(system="billing", kind=kind, charge_id=f"c{i:09d}",
                  amount_cents=rng.randrange(100, 20_000), balance_cents=rng.randrange(0, 50_000))
        if kind == "charged":
            # plan fees and usage: this generator keeps no per-subscriber memory, so a product
            # fee would usually name a product the subscriber never ordered, and 2% of all
            # events would be real billing faults (charged-without-product) for the audit
            ev["item"] = "plan" if rng.random() < 0.6 else "usage"
    elif kind == "topped_up":
        ev.update(system="billing", kind=kind, amount_cents=rng.choice((3000, 5000, 10_000)),
                  balance_cents=rng.randrange(3000, 60_000), channel=rng.choice(("app", "wechat", "store")))
    elif kind in ("product_ordered", "product_cancelled"):
        ev.update(system="bss", kind=kind, product_id=product,
                  platform="pcrf" if product.startswith("pkg") else "vas")
        if kind == "product_ordered":
            ev["monthly_fee_cents"] = rng.choice((500, 1000, 1500, 3000))
    elif kind in ("product_provisioned", "product_deprovisioned"):
        ev.update(system="pcrf" if product.startswith("pkg") else "vas", kind=kind, product_id=product)
    elif kind == "balance_reported":
        ev.update(system="billing", kind=kind, balance_cents=rng.randrange(-5000, 50_000),
                  arrears_cents=rng.choice((0, 0, 0, 1200)))
    elif kind == "suspended":
        ev.update(system=rng.choice(("bss", "hss")), kind=kind,
                  reason=rng.choice(("arrears", "arrears", "request", "lost")))
    elif kind in ("resumed", "activated"):
        ev.update(system=rng.choice(("bss", "hss")), kind=kind)
    elif kind in ("plan_changed", "opened"):
        ev.update(system="bss", kind=kind, plan_id=rng.choice(_PLANS),
                  plan_networks=["4g", "5g"] if rng.random() < 0.6 else ["4g"])
    elif kind == "profile_changed":
        ev.update(system="bss", kind=kind, star_level=rng.randrange(0, 8),
                  value_tier=rng.choice(("low", "medium", "high", "vip")))
    elif kind == "signing_changed":
        ev.update(system="hss", kind=kind, networks=["4g", "5g"] if rng.random() < 0.5 else ["4g"])
    elif kind == "network_registered":
        ev.update(system="network", kind=kind, rat=rng.choice(("4g", "5g")),
                  cell_id=f"c46001-{sub % 20_000:05d}")
    elif kind == "granted":
        promised = rng.random() < 0.5
        ev.update(system="bss" if promised else "billing", kind=kind, grant_id=f"g{sub:09d}",
                  stage="promised" if promised else "credited", amount_cents=rng.choice((500, 1000)))
    else:
        raise ValueError(f"unknown subscriber-state kind {kind!r}")
    return ev


def call_event(rng: random.Random, i: int, sub: int) -> dict[str, object]:
    """One ``call-events`` event: 90% network call records, 10% hotline call legs."""
    ev = _base(i, sub)
    ev["call_id"] = f"k{i:09d}"
    if rng.random() < 0.9:
        r = rng.random()
        peer = "10010" if r < 0.02 else "12300" if r < 0.025 else f"+8613{rng.randrange(10**9):09d}"
        ev.update(kind="network_call", peer_number=peer, direction=rng.choice(("mo", "mt")),
                  duration_s=rng.randrange(0, 900), result=rng.choice(_RESULTS),
                  cell_id=f"c46001-{sub % 20_000:05d}", rat=rng.choice(_RATS))
    else:
        stage = _STAGES[rng.randrange(len(_STAGES))]
        ev.update(kind="hotline_call", stage=stage, hotline="10010", queue="billing")
        if stage in ("answered", "ended"):
            ev["agent_id"] = f"agent-{rng.randrange(500):03d}"
    return ev


def pick_subscriber(rng: random.Random, subscribers: int) -> int:
    """Uniform over everyone, except that 1% heavy users get 20% of the traffic."""
    if rng.random() < 0.2:
        return rng.randrange(max(1, subscribers // 100))
    return rng.randrange(subscribers)


def events(count: int, subscribers: int, seed: int = DEFAULT_SEED,
           start: int = 0) -> Iterator[tuple[str, bytes, bytes]]:
    """``count`` events as ``(contract topic, key, value)``; even indexes are state events.

    The same arguments always yield the same bytes:

    >>> a = list(events(4, 10)); b = list(events(4, 10))
    >>> a == b, [t for t, _, _ in a]
    (True, ['subscriber-state', 'call-events', 'subscriber-state', 'call-events'])
    """
    if subscribers < 1:
        raise ValueError("subscribers must be >= 1")
    rng = random.Random(seed)
    for i in range(start, start + count):
        sub = pick_subscriber(rng, subscribers)
        key = subscriber_id(sub).encode()
        if i % 2 == 0:
            yield SUBSCRIBER_STATE, key, compact_json(state_event(rng, i, sub))
        else:
            yield CALL_EVENTS, key, compact_json(call_event(rng, i, sub))


def compact_json(obj: object) -> bytes:
    """``orjson.dumps`` copied into an exactly sized ``bytes``.

    orjson 3.12+ returns bytes whose allocation stays ~4 KB however short the JSON (the
    buffer is not trimmed): 100k kept results cost ~390 MB of RSS instead of ~25 MB.
    Anything that *keeps* many encoded values must copy them, as here.

    >>> compact_json({"a": 1})
    b'{"a":1}'
    """
    return bytes(memoryview(orjson.dumps(obj)))


def invalid_event(i: int) -> bytes:
    """An input that is not JSON at all: it must come out as a ``not_json`` dead letter."""
    return b"<<not json>> corrupted record " + str(i).encode()
