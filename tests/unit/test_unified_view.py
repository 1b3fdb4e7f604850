"""The unified view is the same whatever order or how often the reports arrive."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.unified_view import apply_event as fold
from agents.unified_view import new_view, profile_value, status_of
from schemas.registry import decode
from tests.unit.helpers import event, record

SS = "subscriber-state"

HISTORY = [
    event(SS, "opened", at=0, plan_id="PLAN-4G", plan_networks=["4g"]),
    event(SS, "activated", at=10),
    event(SS, "activated", at=12, system="hss"),
    event(SS, "product_ordered", at=20, product_id="VAS-1", platform="vas"),
    event(SS, "product_provisioned", at=25, system="vas", product_id="VAS-1"),
    event(SS, "charged", at=30, system="billing", charge_id="CH-1", item="VAS-1", amount_cents=500,
          balance_cents=9500),
    event(SS, "suspended", at=40, system="bss", reason="arrears"),
    event(SS, "topped_up", at=50, system="billing", amount_cents=5000, balance_cents=14500),
    event(SS, "resumed", at=55, system="bss"),
    event(SS, "plan_changed", at=60, plan_id="PLAN-5G", plan_networks=["4g", "5g"]),
    event(SS, "signing_changed", at=65, system="hss", networks=["4g", "5g"]),
    event(SS, "product_cancelled", at=70, product_id="VAS-1", platform="vas"),
    event(SS, "granted", at=75, grant_id="G-1", stage="promised", amount_cents=100,
          due_by="2026-11-27T00:00:00+00:00"),
    event(SS, "granted", at=80, system="billing", grant_id="G-1", stage="credited", amount_cents=100),
    event(SS, "profile_changed", at=85, star_level=6, seed_user=True, value_tier="high",
          home_cell="C-00042", do_not_disturb=None, name=None),
    event(SS, "network_registered", at=90, system="hss", rat="5g", cell_id="C-00042"),
]
MODELS = [decode(SS, record(e)[1]) for e in HISTORY]


def build(models) -> dict:
    view = new_view("S00000001", "8613800001234")
    for m in models:
        fold(view, m)
    return view


def test_view_reflects_the_history() -> None:
    v = build(MODELS)
    assert status_of(v, "bss") == "active" and status_of(v, "hss") == "active"
    assert v["systems"]["bss"]["plan"]["v"] == "PLAN-5G"
    assert v["systems"]["bss"]["plan"]["networks"] == ["4g", "5g"]
    assert v["systems"]["hss"]["signing"]["v"] == ["4g", "5g"]
    assert v["products"]["VAS-1"]["order"]["v"] == "cancelled"
    assert v["products"]["VAS-1"]["prov"]["v"] is True
    assert v["systems"]["billing"]["balance"]["v"] == 14500
    assert v["charges"][0]["charge_id"] == "CH-1"
    assert v["grants"]["G-1"]["credited"]["v"] == 100
    assert profile_value(v, "seed_user") is True and profile_value(v, "star_level") == 6
    assert v["systems"]["hss"]["registered"]["v"] == "5g"


@settings(max_examples=150, deadline=None)
@given(st.permutations(range(len(MODELS))), st.lists(st.integers(0, len(MODELS) - 1), max_size=6))
def test_order_and_duplicates_do_not_matter(order, dups) -> None:
    shuffled = [MODELS[i] for i in order] + [MODELS[i] for i in dups]
    assert build(shuffled) == build(MODELS)


def test_late_report_does_not_overwrite_a_newer_one() -> None:
    late = decode(SS, record(event(SS, "suspended", at=1, system="bss", reason="arrears"))[1])
    v = build([*MODELS, late])
    assert status_of(v, "bss") == "active"
