"""What the synthetic operator sells and how its customers behave: data, not code.

Numbers here are the simulator's "realism knobs". Rates are per subscriber per simulated
day and were chosen so the mix resembles what an operator's systems emit (network call
records dominate, broadband probes and cell KPIs follow, state changes are a few percent),
while state changes stay frequent enough that a one-hour run already contains provisioning
races, arrears suspensions and plan changes for the audit to look at.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Plan:
    """A tariff plan (套餐); ``networks`` are the generations it includes."""

    plan_id: str
    networks: tuple[str, ...]
    monthly_fee_cents: int
    weight: float


@dataclass(frozen=True, slots=True)
class Product:
    """An orderable product and the platform that must switch it on."""

    product_id: str
    platform: str  # vas | pcrf | hss
    monthly_fee_cents: int
    weight: float


PLANS: tuple[Plan, ...] = (
    Plan("plan-4g-19", ("4g",), 1900, 0.10),
    Plan("plan-4g-39", ("4g",), 3900, 0.18),
    Plan("plan-4g-59", ("4g",), 5900, 0.14),
    Plan("plan-4g-99", ("4g",), 9900, 0.06),
    Plan("plan-5g-129", ("4g", "5g"), 12900, 0.22),
    Plan("plan-5g-199", ("4g", "5g"), 19900, 0.16),
    Plan("plan-5g-299", ("4g", "5g"), 29900, 0.10),
    Plan("plan-5g-599", ("4g", "5g"), 59900, 0.04),
)
PLAN_BY_ID = {p.plan_id: p for p in PLANS}
PLANS_4G = tuple(p for p in PLANS if "5g" not in p.networks)
PLANS_5G = tuple(p for p in PLANS if "5g" in p.networks)

PRODUCTS: tuple[Product, ...] = (
    Product("vas-color-ring", "vas", 500, 0.16),      # 彩铃
    Product("vas-video-vip", "vas", 1500, 0.10),      # 视频会员
    Product("vas-news", "vas", 300, 0.05),            # 手机报
    Product("vas-cloud-50g", "vas", 1000, 0.07),      # 云盘
    Product("vas-music", "vas", 800, 0.06),
    Product("data-10g", "pcrf", 2000, 0.14),          # 流量包
    Product("data-30g", "pcrf", 4000, 0.08),
    Product("data-night", "pcrf", 500, 0.06),
    Product("data-video-20g", "pcrf", 1800, 0.07),
    Product("volte-hd", "hss", 0, 0.09),              # 高清语音
    Product("5g-boost", "hss", 1000, 0.06),           # 5G 加速
    Product("intl-roaming", "hss", 0, 0.06),          # 国际漫游
)
PRODUCT_BY_ID = {p.product_id: p for p in PRODUCTS}

#: Star level 0-7 (客户星级), skewed low; seed users (种子用户) are likelier at high stars.
STAR_WEIGHTS = (0.25, 0.20, 0.18, 0.14, 0.10, 0.07, 0.04, 0.02)
SEED_PROB_BY_STAR = (0.01, 0.02, 0.03, 0.05, 0.08, 0.15, 0.25, 0.35)
TIER_BY_STAR = ("low", "low", "medium", "medium", "high", "high", "vip", "vip")
DND_PROB = 0.03
FTTH_PROB = 0.30
#: Share of broadband lines whose terminal (ONU / router) cannot carry the contracted speed.
TERMINAL_MISMATCH_PROB = 0.05
CONTRACTED_MBPS = ((100, 0.25), (300, 0.35), (500, 0.25), (1000, 0.15))
TERMINAL_MBPS = (100, 300, 1000, 2500)

SCENARIOS = (("residential", 0.40), ("business", 0.18), ("campus", 0.08), ("transport", 0.10),
             ("hospital", 0.05), ("government", 0.05), ("rural", 0.14))
SUBSCRIBERS_PER_CELL = 40

#: Relative traffic by hour of day (China time), normalised to a mean of 1 at import.
_HOURLY = (0.25, 0.15, 0.10, 0.08, 0.08, 0.15, 0.35, 0.70, 1.10, 1.35, 1.45, 1.45,
           1.30, 1.30, 1.40, 1.45, 1.45, 1.40, 1.45, 1.55, 1.60, 1.45, 1.05, 0.55)
HOURLY_FACTOR: tuple[float, ...] = tuple(h * 24 / sum(_HOURLY) for h in _HOURLY)

#: Normal flows: events per subscriber per simulated day (each a Poisson process).
RATES_PER_SUB_DAY: dict[str, float] = {
    "network_call": 6.0,
    "hotline_call": 0.012,
    "online_contact": 0.02,
    "offer": 0.008,
    "retention": 0.001,
    "contact_request": 0.05,
    "consultation": 0.003,
    "balance_report": 1.0,
    "usage_charge": 0.5,
    "monthly_bill": 1 / 30,
    "top_up": 0.08,
    "product_order": 0.04,
    "product_cancel": 0.02,
    "plan_change": 0.004,
    "grant": 0.01,
    "profile_change": 0.003,
    "arrears": 0.002,
    "request_suspension": 0.0005,
    "new_subscriber": 0.001,
    "port_out": 0.0004,
}
CELL_KPI_EVERY_MS = 15 * MINUTE_MS
LINE_EVERY_MS = HOUR_MS

CALL_RESULT_WEIGHTS = (("answered", 0.84), ("no_answer", 0.10), ("busy", 0.04))
BASE_DROP_RATE = (0.002, 0.008)
BASE_SETUP_SUCCESS = (0.985, 0.998)
THROUGHPUT_BY_SCENARIO = {"residential": 60.0, "business": 90.0, "campus": 70.0,
                          "transport": 45.0, "hospital": 65.0, "government": 80.0, "rural": 30.0}

HOTLINE = "10010"                       # our operator (China Unicom style)
COMPETITOR_HOTLINES = ("10086", "10000")  # callers shopping at the competitors
REGULATOR_NUMBERS = ("12300", "12315")    # 工信部申诉 / 消协
HOTLINE_QUEUES = ("q-general", "q-billing", "q-network", "q-broadband", "q-vip")
AGENTS = 300
MOBILE_PREFIXES = tuple(f"1{a}{b}" for a in "3456789" for b in "0123456789")
AREA_CODES = ("10", "20", "21", "22", "23", "24", "25", "27", "28", "29", "755", "571", "591")

TOPUP_CHANNELS = ("app", "wechat", "alipay", "store", "card", "bank")
COMPLAINT_CHANNELS = (("hotline", 0.62), ("app", 0.12), ("wechat", 0.10), ("store", 0.08),
                      ("social", 0.03), ("email", 0.01), ("regulator", 0.04))
NOISE_CATEGORIES = (
    "network.coverage.indoor", "network.coverage.outdoor", "network.data.slow",
    "billing.dispute.usage", "billing.dispute.vas", "billing.query.bill",
    "service.attitude.agent", "service.store.waiting", "product.order.not_effective",
    "broadband.speed.slow", "broadband.repair.delay", "marketing.harassment.call",
)
CONSULTATION_CATEGORIES = ("consult.plan.change", "consult.bill.detail", "consult.roaming",
                           "consult.broadband.install", "consult.5g.signing")
ONLINE_TOPICS = ("billing.query", "order.progress", "plan.compare", "broadband.repair",
                 "network.complaint", "points.redeem", "number.portability")
CONTACT_CHANNELS = (("telemarketing", 0.35), ("sms", 0.30), ("app_push", 0.20),
                    ("ivr", 0.08), ("account_manager", 0.07))
CAMPAIGNS_MARKETING = ("camp-5g-upgrade", "camp-broadband-bundle", "camp-video-vip",
                       "camp-family-plan", "camp-data-pack")
CAMPAIGNS_SERVICE = ("svc-bill-reminder", "svc-care-visit", "svc-satisfaction-followup",
                     "svc-network-fix-notice")

#: Audit rules and their event-time grace periods in seconds (the audit's contract).
GRACE_S: dict[str, int] = {
    "bss-active-hss-barred": 5 * 60,
    "bss-suspended-hss-active": 5 * 60,
    "product-not-provisioned": 10 * 60,
    "cancelled-still-provisioned": 10 * 60,
    "cancelled-still-charged": 0,
    "charged-while-suspended": 0,
    "charged-without-product": 0,
    "topup-still-suspended": 10 * 60,
    "5g-plan-without-5g-signing": 30 * 60,
    "activated-not-registered": 2 * 3600,
    "grant-not-credited": 0,
    "port-out-still-active": 0,
}
RULES: tuple[str, ...] = tuple(GRACE_S)


def weighted(pairs: tuple[tuple[str, float], ...]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Split ``((value, weight), ...)`` into the two sequences ``random.choices`` takes.

    >>> weighted((("a", 1.0), ("b", 3.0)))
    (('a', 'b'), (1.0, 3.0))
    """
    return tuple(v for v, _ in pairs), tuple(w for _, w in pairs)
