"""The synthetic operator's customers, cells and broadband lines, built from one seed.

A :class:`Sub` carries both the customer (plan, star level, seed flag...) and what each
source system last reported about it (BSS, HSS and billing status, HSS signing, product
order and provisioning states). The generators change those views only through the
events they emit, so the simulator always knows exactly which systems disagree.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from streams.simulator import catalog as cat

_PLAN_CUM = list(accumulate(p.weight for p in cat.PLANS))
_PRODUCT_CUM = list(accumulate(p.weight for p in cat.PRODUCTS))


class Sub:
    """One subscriber: profile plus every system's current view (mutable, slotted)."""

    __slots__ = (
        "activated", "activity", "balance", "billing", "bss", "bss_reason", "dnd", "ever",
        "grants", "home", "hss", "hss_reason", "idx", "injected", "last_complaint_ms", "line",
        "lock", "msisdn", "open", "plan", "port_out", "products", "registered", "seed", "sid",
        "signing", "star", "story", "tier", "topup_pending",
    )

    def __init__(self, idx: int, sid: str, msisdn: str) -> None:
        self.idx = idx
        self.sid = sid
        self.msisdn = msisdn
        self.plan = cat.PLANS[0].plan_id
        self.star = 0
        self.seed = False
        self.tier = "low"
        self.home: Cell | None = None
        self.dnd = False
        self.line: Line | None = None
        self.activity = 1.0
        # --- what the systems last reported -------------------------------------------
        self.bss = "none"            # none | opened | active | suspended | closed
        self.bss_reason: str | None = None
        self.hss = "none"
        self.hss_reason: str | None = None
        self.billing = "none"
        self.signing: tuple[str, ...] = ()
        self.activated = False       # BSS reported "activated"
        self.registered = False      # HSS reported network_registered
        #: product id -> [ordered in BSS (True) / cancelled (False), provisioned (bool|None)]
        self.products: dict[str, list[Any]] = {}
        self.ever: set[str] = set()  # every product id BSS ever ordered for this subscriber
        self.balance = 0
        #: grant id -> [due_by_ms, credited, due_passed]
        self.grants: dict[str, list[Any]] = {}
        self.port_out: list[Any] | None = None  # [deadline_ms, due_passed]
        # --- bookkeeping of the simulator ------------------------------------------------
        self.open: dict[tuple[str, str | None], int] = {}      # open conditions -> start
        self.injected: dict[tuple[str, str | None], dict[str, Any]] = {}
        self.topup_pending = False
        self.lock = 0            # injected faults in progress: normal flows keep off
        self.story = False       # reserved by a complaint/churn story
        self.last_complaint_ms: int | None = None

    @property
    def usable(self) -> bool:
        """Active in BSS, not closed, not reserved by an injection: normal flows may act."""
        return self.bss == "active" and self.lock == 0 and self.port_out is None


@dataclass(slots=True)
class Degradation:
    """A cell KPI drifting from ``frm`` to ``to`` over [start, ramp_end], maybe recovering."""

    metric: str
    start: int
    ramp_end: int
    frm: float
    to: float
    end: int | None

    def level(self, t: int) -> float:
        """0 before the start (and after recovery), rising to 1 at ``ramp_end``."""
        if t < self.start or (self.end is not None and t >= self.end):
            return 0.0
        if t >= self.ramp_end:
            return 1.0
        return (t - self.start) / max(self.ramp_end - self.start, 1)


@dataclass(slots=True)
class Cell:
    """A radio cell with its scenario (for 积分制 scoring) and its normal KPI levels."""

    idx: int
    cell_id: str
    scenario: str
    traffic: float
    drop_rate: float
    setup_success: float
    throughput: float
    degradation: Degradation | None = None

    def kpis(self, t: int) -> tuple[float, float, float]:
        """(drop_rate, call_setup_success, throughput_mbps) at ``t``."""
        drop, css, thr = self.drop_rate, self.setup_success, self.throughput
        d = self.degradation
        if d is not None:
            k = d.level(t)
            if k:
                value = d.frm + (d.to - d.frm) * k
                if d.metric == "drop_rate":
                    drop = value
                elif d.metric == "call_setup_success":
                    css = value
                else:
                    thr = value
        return drop, css, thr


@dataclass(slots=True)
class Line:
    """An FTTH broadband line: contracted speed, terminal capability, ONU rx power."""

    line_id: str
    sub: Sub
    contracted: int
    terminal: int
    rx_base: float
    slot: int                     # minute of the hour at which it is measured
    attenuation: tuple[int, int, float, float] | None = None  # start, ramp_end, from, to


@dataclass
class Population:
    """Everything the generators pick from; lists only grow (new subscribers append)."""

    subs: list[Sub]
    cells: list[Cell]
    lines: list[Line]
    cum_activity: list[float] = field(default_factory=list)
    cell_cum: list[float] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    msisdns: set[str] = field(default_factory=set)


def _msisdn(rng: random.Random, taken: set[str]) -> str:
    while True:
        m = f"86{rng.choice(cat.MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
        if m not in taken:
            taken.add(m)
            return m


def new_subscriber(rng: random.Random, pop: Population) -> Sub:
    """A fresh customer profile (no system has reported anything about it yet)."""
    while True:
        sid = f"S{rng.randrange(10**7, 10**8)}"
        if sid not in pop.ids:
            pop.ids.add(sid)
            break
    sub = Sub(len(pop.subs), sid, _msisdn(rng, pop.msisdns))
    plan = rng.choices(cat.PLANS, cum_weights=_PLAN_CUM)[0]
    sub.plan = plan.plan_id
    sub.star = rng.choices(range(8), weights=cat.STAR_WEIGHTS)[0]
    sub.seed = rng.random() < cat.SEED_PROB_BY_STAR[sub.star]
    sub.tier = cat.TIER_BY_STAR[sub.star]
    sub.dnd = rng.random() < cat.DND_PROB
    if len(pop.cell_cum) != len(pop.cells):
        pop.cell_cum = list(accumulate(c.traffic for c in pop.cells))
    sub.home = rng.choices(pop.cells, cum_weights=pop.cell_cum)[0]
    sub.activity = rng.lognormvariate(0.0, 0.6)
    sub.balance = rng.randint(500, 20_000)
    if rng.random() < cat.FTTH_PROB:
        contracted = rng.choices([c for c, _ in cat.CONTRACTED_MBPS],
                                 weights=[w for _, w in cat.CONTRACTED_MBPS])[0]
        capable = [m for m in cat.TERMINAL_MBPS if m >= contracted]
        slower = [m for m in cat.TERMINAL_MBPS if m < contracted]
        if slower and rng.random() < cat.TERMINAL_MISMATCH_PROB / 0.75:
            terminal = rng.choice(slower)
        else:
            terminal = capable[0] if rng.random() < 0.7 else rng.choice(capable)
        line = Line(f"L{sid[1:]}01", sub, contracted, terminal,
                    round(rng.uniform(-22.0, -18.0), 1), rng.randrange(60))
        sub.line = line
        pop.lines.append(line)
    pop.subs.append(sub)
    pop.cum_activity.append((pop.cum_activity[-1] if pop.cum_activity else 0.0) + sub.activity)
    return sub


def held_products(rng: random.Random) -> list[cat.Product]:
    """Products an existing customer already holds (0-4, by popularity)."""
    n = rng.choices(range(5), weights=(0.30, 0.35, 0.20, 0.10, 0.05))[0]
    chosen: list[cat.Product] = []
    while len(chosen) < n:
        p = rng.choices(cat.PRODUCTS, cum_weights=_PRODUCT_CUM)[0]
        if p not in chosen:
            chosen.append(p)
    return chosen


def build_population(seed: int, n: int) -> Population:
    """Subscribers as they stand at ``--start``: opened, activated, registered, consistent.

    About 1% are suspended for arrears in every system (negative balance) so the run can
    show top-ups and resumptions from the first minute.
    """
    rng = random.Random(f"{seed}/population")
    cells = []
    names, weights = cat.weighted(cat.SCENARIOS)
    for i in range(max(4, round(n / cat.SUBSCRIBERS_PER_CELL))):
        scenario = rng.choices(names, weights=weights)[0]
        cells.append(Cell(
            idx=i, cell_id=f"46001-{100000 + i // 3:06d}-{i % 3 + 1}", scenario=scenario,
            traffic=rng.uniform(0.3, 2.0),
            drop_rate=rng.uniform(*cat.BASE_DROP_RATE),
            setup_success=rng.uniform(*cat.BASE_SETUP_SUCCESS),
            throughput=cat.THROUGHPUT_BY_SCENARIO[scenario] * rng.uniform(0.7, 1.3),
        ))
    pop = Population(subs=[], cells=cells, lines=[])
    for _ in range(n):
        sub = new_subscriber(rng, pop)
        networks = cat.PLAN_BY_ID[sub.plan].networks
        sub.bss = sub.hss = sub.billing = "active"
        sub.signing = networks
        sub.activated = sub.registered = True
        for product in held_products(rng):
            sub.products[product.product_id] = [True, True]
            sub.ever.add(product.product_id)
        if rng.random() < 0.01:
            sub.balance = -rng.randint(100, 5000)
            sub.bss = sub.hss = sub.billing = "suspended"
            sub.bss_reason = sub.hss_reason = "arrears"
    return pop


def pick_weighted(rng: random.Random, pop: Population) -> Sub:
    """A subscriber chosen in proportion to how much they use the phone."""
    cum = pop.cum_activity
    i = bisect_right(cum, rng.random() * cum[-1])
    return pop.subs[min(i, len(cum) - 1)]


def pick_where(rng: random.Random, subs: list[Sub], ok: Any, tries: int = 16) -> Sub | None:
    """A uniformly chosen subscriber satisfying ``ok`` (None after ``tries`` misses)."""
    n = len(subs)
    for _ in range(tries):
        sub = subs[int(rng.random() * n)]
        if ok(sub):
            return sub
    return None


def ms_between(rng: random.Random, low_s: float, high_s: float) -> int:
    """A uniform delay in milliseconds between ``low_s`` and ``high_s`` seconds."""
    return int(rng.uniform(low_s, high_s) * 1000)
