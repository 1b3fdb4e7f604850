"""The bootstrap phase: every subscriber's current state, sent before the run starts.

Consumers start with empty tables; without this they would see a product cancelled that
was never ordered. Each subscriber's facts share one event time (in the ten minutes
before ``--start``, subscribers in order) and event ids that sort in emission order, so
no cross-system condition holds for any length of time and last-writer-wins by
``(event_time, event_id)`` yields the intended state. Nothing here changes the model:
the population already *is* that state, so ``--no-bootstrap`` skips sending, not knowing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from streams.simulator import catalog as cat
from streams.simulator.engine import Engine, Record
from streams.simulator.population import Population, Sub
from streams.simulator.systems import TOPIC, state_payload

#: Bootstrap event times span this long before ``--start``.
SPAN_MS = 600_000
BATCH = 500


def _events(eid: Any, t: int, sub: Sub) -> list[dict[str, Any]]:
    plan = cat.PLAN_BY_ID[sub.plan]
    out: list[dict[str, Any]] = []

    def add(system: str, kind: str, **fields: Any) -> None:
        """Append one state event of this subscriber, stamped with the shared time."""
        p = state_payload(eid(), t, sub, system, kind)
        p.update(fields)
        out.append(p)

    add("bss", "opened", plan_id=plan.plan_id, plan_networks=list(plan.networks))
    add("hss", "opened", plan_id=plan.plan_id, plan_networks=list(plan.networks))
    add("bss", "activated")
    add("hss", "activated")
    add("billing", "activated")
    add("hss", "signing_changed", networks=list(sub.signing))
    add("hss", "network_registered", rat="5g" if "5g" in sub.signing else "4g",
        cell_id=sub.home.cell_id if sub.home else None)
    add("bss", "profile_changed", star_level=sub.star, seed_user=sub.seed, value_tier=sub.tier,
        home_cell=sub.home.cell_id if sub.home else None, do_not_disturb=sub.dnd)
    for pid in sorted(sub.products):
        product = cat.PRODUCT_BY_ID[pid]
        add("bss", "product_ordered", product_id=pid, platform=product.platform,
            monthly_fee_cents=product.monthly_fee_cents)
        add(product.platform, "product_provisioned", product_id=pid)
    if sub.bss == "suspended":
        add("bss", "suspended", reason=sub.bss_reason)
        add("billing", "suspended", reason=sub.bss_reason)
        add("hss", "suspended", reason=sub.hss_reason)
    add("billing", "balance_reported", balance_cents=sub.balance,
        arrears_cents=max(0, -sub.balance))
    return out


def bootstrap_records(eng: Engine, pop: Population) -> Iterator[list[Record]]:
    """Batches of bootstrap records, in event-time order."""
    counter = [0]
    tag = eng.tag

    def eid() -> str:
        """Bootstrap ids: a namespace of their own, so the run's ids do not depend on it."""
        counter[0] += 1
        return f"{tag}-b{counter[0]:09d}"

    start = eng.start_ms
    n = len(pop.subs)
    dumps = orjson.dumps
    batch: list[Record] = []
    for i, sub in enumerate(pop.subs):
        t = start - SPAN_MS + (i * (SPAN_MS - 1000)) // max(n, 1)
        for payload in _events(eid, t, sub):
            batch.append((TOPIC, sub.sid, dumps(payload), t))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
