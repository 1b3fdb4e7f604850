"""What subscribers do: calls, hotline calls, complaints, contacts and their outcomes.

The network-call generator is the hot path (about a third of all events), so it builds
its dict literally and avoids helper calls; the rest favour clarity. Drops and failed
setups follow the KPIs of the cell the call was made on, so a degrading cell shows up in
its subscribers' call records as well as in ``network-kpis``.
"""

from __future__ import annotations

import random
from typing import Any

from streams.simulator import catalog as cat
from streams.simulator.clock import CHINA
from streams.simulator.engine import Engine
from streams.simulator.model import Tracker
from streams.simulator.population import Cell, Population, Sub, ms_between, pick_weighted

CALLS = "call-events"
COMPLAINTS = "complaints"
REQUESTS = "contact-requests"
OUTCOMES = "contact-outcomes"
DND = "do-not-disturb"
#: subscribers per day who join or leave the operator's do-not-disturb list
DND_CHANGES_PER_SUB_DAY = 0.002
_RESULTS, _RESULT_W = cat.weighted(cat.CALL_RESULT_WEIGHTS)
_CUM_RESULT = (0.84, 0.94, 0.98)
_SURVEY_HAPPY = (0.02, 0.01, 0.02, 0.03, 0.05, 0.07, 0.12, 0.20, 0.23, 0.25)
_SURVEY_UNHAPPY = (0.25, 0.20, 0.18, 0.12, 0.10, 0.06, 0.04, 0.03, 0.01, 0.01)
_CONTACT_CH, _CONTACT_W = cat.weighted(cat.CONTACT_CHANNELS)
_COMPLAINT_CH, _COMPLAINT_W = cat.weighted(cat.COMPLAINT_CHANNELS)
_ONLINE_SUMMARIES = ("查询本月账单", "咨询套餐变更", "宽带报修进度", "积分兑换", "查询订单进度",
                     "反映信号差", "")
DAY30_MS = 30 * cat.DAY_MS


def _reachable(sub: Sub) -> bool:
    return sub.bss == "active" and sub.registered


class Activity:
    """Generators of ``call-events``, ``complaints``, ``contact-requests``/``-outcomes``."""

    def __init__(self, eng: Engine, pop: Population, tracker: Tracker,
                 rng: random.Random) -> None:
        self.eng = eng
        self.pop = pop
        self.tracker = tracker
        self.rng = rng

    def start(self) -> None:
        """Schedule the Poisson processes of subscriber activity."""
        n = len(self.pop.subs)
        rates = cat.RATES_PER_SUB_DAY
        self.eng.every(rates["network_call"] * n, self.network_call, self.rng)
        for name, fn in (("hotline_call", self.hotline_call), ("online_contact", self.online),
                         ("offer", self.offer), ("retention", self.retention),
                         ("contact_request", self.contact_request),
                         ("consultation", self.consultation)):
            self.eng.every(rates[name] * n, fn, self.rng)
        # the operator's do-not-disturb list: loaded at the start, then a few changes a day
        # (an rng of its own, so the other processes draw exactly as before)
        self.dnd_rng = random.Random(f"{self.rng.getstate()[1][:4]}/dnd")
        self.eng.at(self.eng.now, self.dnd_list)
        self.eng.every(DND_CHANGES_PER_SUB_DAY * n, self.dnd_change, self.dnd_rng)

    # --- do-not-disturb list ------------------------------------------------------------
    def _dnd(self, t: int, sub: Sub, listed: bool) -> None:
        self.eng.emit(DND, sub.sid, {
            "schema_version": 1, "event_id": self.eng.eid(), "event_time": CHINA.format(t),
            "kind": "do_not_disturb", "subscriber_id": sub.sid, "listed": listed,
            "note": "operator list" if listed else "removed on request"})

    def dnd_list(self, t: int) -> None:
        """The list as the operator holds it when the run starts (the profile flag)."""
        for sub in self.pop.subs:
            if sub.dnd and sub.bss != "none":
                self._dnd(t, sub, True)

    def dnd_change(self, t: int) -> None:
        """A subscriber asks to join (or leave) the do-not-disturb list."""
        sub = self.pop.subs[int(self.dnd_rng.random() * len(self.pop.subs))]
        if sub.bss == "none":
            return
        sub.dnd = not sub.dnd
        self._dnd(t, sub, sub.dnd)

    # --- network calls (hot path) -----------------------------------------------------
    def network_call(self, t: int) -> None:
        """A CDR of a subscriber chosen by usage: mostly mobiles, some on-net, some landlines."""
        rng = self.rng
        sub = pick_weighted(rng, self.pop)
        if sub.bss != "active" or not sub.registered:
            return
        cells = self.pop.cells
        cell = sub.home if rng.random() < 0.7 else cells[int(rng.random() * len(cells))]
        mo = rng.random() < 0.5
        r = rng.random()
        if r < 0.72:
            peer = f"86{cat.MOBILE_PREFIXES[int(rng.random() * 70)]}{int(rng.random() * 1e8):08d}"
        elif r < 0.97:
            other = self.pop.subs[int(rng.random() * len(self.pop.subs))]
            peer = other.msisdn
        else:
            peer = f"0{cat.AREA_CODES[int(rng.random() * 13)]}{int(rng.random() * 1e8):08d}"
        self.call(t, sub, peer, "mo" if mo else "mt", cell)

    def call(self, t: int, sub: Sub, peer: str, direction: str, cell: Cell | None,
             result: str | None = None, duration: int | None = None) -> None:
        """Emit one CDR; ``result`` None draws it from the cell's KPIs at ``t``."""
        rng = self.rng
        cell = cell or sub.home or self.pop.cells[0]
        if result is None:
            drop, css, _ = cell.kpis(t)
            r = rng.random()
            if sub.hss == "suspended" or r > css:
                result = "failed"
            else:
                r = rng.random()
                result = "answered" if r < _CUM_RESULT[0] else (
                    "no_answer" if r < _CUM_RESULT[1] else "busy")
                if result == "answered" and rng.random() < drop * 1.5:
                    result = "dropped"
        if duration is None:
            duration = (int(rng.expovariate(1 / 150)) + 5 if result == "answered" else
                        int(rng.uniform(3, 120)) if result == "dropped" else 0)
        rat = "vonr" if "5g" in sub.signing and rng.random() < 0.3 else "volte"
        self.eng.emit(CALLS, sub.sid, {
            "schema_version": 1, "event_id": self.eng.eid(), "event_time": CHINA.format(t),
            "kind": "network_call", "subscriber_id": sub.sid, "msisdn": sub.msisdn,
            "call_id": self.eng.next_id("N"), "peer_number": peer, "direction": direction,
            "duration_s": duration, "result": result, "cell_id": cell.cell_id, "rat": rat,
        })

    # --- contact center ---------------------------------------------------------------
    def hotline_call(self, t: int, sub: Sub | None = None, queue: str | None = None,
                     unhappy: bool = False) -> None:
        """A call to 10010 as its legs: incoming → (queued → answered →) ended."""
        rng = self.rng
        sub = sub or self.pop.subs[int(rng.random() * len(self.pop.subs))]
        if sub.bss in ("none", "closed"):
            return
        call_id = self.eng.next_id("H")
        queue = queue or rng.choice(cat.HOTLINE_QUEUES)
        legs: list[tuple[int, str, str | None]] = [(t, "incoming", None)]
        r = rng.random()
        if r < 0.2:       # solved in the IVR
            legs.append((t + ms_between(rng, 30, 180), "ended", None))
        else:
            queued = t + ms_between(rng, 10, 40)
            legs.append((queued, "queued", None))
            if r < 0.3:   # gave up waiting
                legs.append((queued + ms_between(rng, 60, 300), "ended", None))
            else:
                answered = queued + ms_between(rng, 10, 240)
                agent = f"A{rng.randrange(1, cat.AGENTS + 1):04d}"
                ended = answered + ms_between(rng, 60, 900)
                legs += [(answered, "answered", agent), (ended, "ended", agent)]
                if rng.random() < 0.3 or unhappy:
                    self.eng.at(ended + ms_between(rng, 120, 1800), self.survey, sub, unhappy)
        for when, stage, agent in legs:
            self.eng.at(when, self._leg, sub, call_id, stage, queue, agent)

    def _leg(self, t: int, sub: Sub, call_id: str, stage: str, queue: str,
             agent: str | None) -> None:
        payload: dict[str, Any] = {
            "schema_version": 1, "event_id": self.eng.eid(), "event_time": CHINA.format(t),
            "kind": "hotline_call", "subscriber_id": sub.sid, "msisdn": sub.msisdn,
            "call_id": call_id, "stage": stage, "hotline": cat.HOTLINE,
        }
        if stage != "incoming":
            payload["queue"] = queue
        if agent:
            payload["agent_id"] = agent
        self.eng.emit(CALLS, sub.sid, payload)

    # --- complaints ---------------------------------------------------------------------
    def complaint(self, t: int, sub: Sub, category: str, channel: str | None = None,
                  severity: str = "normal", kind: str = "complaint",
                  complaint_id: str | None = None) -> tuple[str, str, str]:
        """Open a complaint now and schedule its lifecycle; returns (id, channel, severity)."""
        rng = self.rng
        complaint_id = complaint_id or self.eng.next_id("CP")
        channel = channel or rng.choices(_COMPLAINT_CH, weights=_COMPLAINT_W)[0]
        if channel == "regulator":
            severity = "regulator"
        steps: list[tuple[int, str]] = [(t, "opened")]
        if kind == "consultation":
            steps.append((t + ms_between(rng, 60, 1800), "closed"))
        else:
            sub.last_complaint_ms = t
            if rng.random() < 0.5:
                steps.append((t + ms_between(rng, 1800, 6 * 3600), "updated"))
            resolved = t + ms_between(rng, 3600, 24 * 3600) + (
                steps[-1][0] - t if len(steps) > 1 else 0)
            steps += [(resolved, "resolved"), (resolved + ms_between(rng, 600, 7200), "closed")]
        for when, stage in steps:
            self.eng.at(when, self._complaint_step, sub, complaint_id, channel, category,
                        severity, kind, stage)
        return complaint_id, channel, severity

    def _complaint_step(self, t: int, sub: Sub, complaint_id: str, channel: str, category: str,
                        severity: str, kind: str, stage: str) -> None:
        payload: dict[str, Any] = {
            "schema_version": 1, "event_id": self.eng.eid(), "event_time": CHINA.format(t),
            "kind": "complaint", "subscriber_id": sub.sid, "msisdn": sub.msisdn,
            "complaint_id": complaint_id, "channel": channel, "type": kind,
            "category": category, "severity": severity, "stage": stage,
        }
        if stage == "closed" and kind == "complaint":
            r = self.rng.random()
            unhappy = severity != "normal"
            payload["satisfaction"] = ("dissatisfied" if r < (0.45 if unhappy else 0.12) else
                                       "neutral" if r < (0.7 if unhappy else 0.3) else "satisfied")
        if stage == "opened":
            payload["summary"] = f"{category} ({channel})"
        self.eng.emit(COMPLAINTS, sub.sid, payload)

    def consultation(self, t: int) -> None:
        """A consultation (咨询): same topic as complaints, short lifecycle, not a complaint."""
        sub = self.pop.subs[int(self.rng.random() * len(self.pop.subs))]
        if _reachable(sub):
            self.complaint(t, sub, self.rng.choice(cat.CONSULTATION_CATEGORIES),
                           kind="consultation")

    # --- contact outcomes ---------------------------------------------------------------
    def _outcome(self, t: int, sub: Sub, kind: str, **fields: Any) -> None:
        payload = {"schema_version": 1, "event_id": self.eng.eid(),
                   "event_time": CHINA.format(t), "kind": kind, "subscriber_id": sub.sid,
                   "msisdn": sub.msisdn}
        payload.update(fields)
        self.eng.emit(OUTCOMES, sub.sid, payload)

    def survey(self, t: int, sub: Sub, unhappy: bool = False) -> int:
        """IVR/SMS satisfaction survey; unhappy subscribers score low. Returns the score."""
        weights = _SURVEY_UNHAPPY if unhappy else _SURVEY_HAPPY
        score = self.rng.choices(range(1, 11), weights=weights)[0]
        self._outcome(t, sub, "survey", survey_id=self.eng.next_id("SV"),
                      channel=self.rng.choice(("ivr", "sms")), score=score)
        return score

    def online(self, t: int, sub: Sub | None = None, topic: str | None = None) -> None:
        """An app/WeChat session, shared with the hotline (渠道协同)."""
        sub = sub or self.pop.subs[int(self.rng.random() * len(self.pop.subs))]
        if sub.bss == "none":
            return
        self._outcome(t, sub, "online_contact", session_id=self.eng.next_id("OS"),
                      channel=self.rng.choice(("app", "wechat", "app", "wechat", "web", "mall")),
                      topic=topic or self.rng.choice(cat.ONLINE_TOPICS),
                      summary=self.rng.choice(_ONLINE_SUMMARIES))

    def offer(self, t: int) -> None:
        """An offer decision coming back from a campaign."""
        sub = self.pop.subs[int(self.rng.random() * len(self.pop.subs))]
        if _reachable(sub):
            self._outcome(t, sub, "offer", offer_id=self.eng.next_id("OF"),
                          decision="accepted" if self.rng.random() < 0.22 else "declined")

    def retention(self, t: int, sub: Sub | None = None, outcome: str | None = None) -> None:
        """A retention task's outcome (维挽)."""
        sub = sub or self.pop.subs[int(self.rng.random() * len(self.pop.subs))]
        if _reachable(sub):
            outcome = outcome or self.rng.choices(("retained", "pending", "churned"),
                                                  weights=(0.6, 0.3, 0.1))[0]
            self._outcome(t, sub, "retention", task_id=self.eng.next_id("RT"), outcome=outcome)

    # --- outbound contact requests ------------------------------------------------------
    def contact_request(self, t: int, sub: Sub | None = None, purpose: str | None = None,
                        channel: str | None = None) -> str | None:
        """A campaign asks to contact ``sub``; protected targets get a truth line."""
        rng = self.rng
        sub = sub or self.pop.subs[int(rng.random() * len(self.pop.subs))]
        if not _reachable(sub):
            return None
        purpose = purpose or ("marketing" if rng.random() < 0.75 else "service")
        channel = channel or rng.choices(_CONTACT_CH, weights=_CONTACT_W)[0]
        campaigns = cat.CAMPAIGNS_MARKETING if purpose == "marketing" else cat.CAMPAIGNS_SERVICE
        request_id = self.eng.next_id("RQ")
        self.eng.emit(REQUESTS, sub.sid, {
            "schema_version": 1, "event_id": self.eng.eid(), "event_time": CHINA.format(t),
            "kind": "contact_request", "request_id": request_id, "subscriber_id": sub.sid,
            "msisdn": sub.msisdn, "campaign_id": rng.choice(campaigns), "purpose": purpose,
            "channel": channel, "scheduled_for": CHINA.format(_daytime(t)),
            "requester": "campaign" if purpose == "marketing" else "service-desk",
        })
        expected = self.protection(sub, purpose, channel, t)
        if expected is not None:
            reasons, decision = expected
            self.eng.truth.write({
                "type": "protected_contact", "request_id": request_id, "subscriber_id": sub.sid,
                "purpose": purpose, "channel": channel, "reasons": reasons,
                "expected": decision, "at": CHINA.format(t),
            })
        if (expected is None or expected[1] == "allow") and rng.random() < 0.6:
            self.eng.at(_daytime(t) + ms_between(rng, 60, 7200), self._result, sub, request_id)
        return request_id

    def _result(self, t: int, sub: Sub, request_id: str) -> None:
        result = self.rng.choices(("reached", "not_reached", "refused", "complained"),
                                  weights=(0.6, 0.3, 0.09, 0.01))[0]
        self._outcome(t, sub, "contact_result", request_id=request_id, result=result)

    def protection(self, sub: Sub, purpose: str, channel: str,
                   t: int) -> tuple[list[str], str] | None:
        """Why this contact touches a protected subscriber, and the decision expected.

        Marketing: seed users only through their account manager and only from star 5
        (seed 000 "电话营销打扰管控"); recent complainers (30 days), do-not-disturb users and
        users with an open injected audit fault are suppressed. Service contacts to seed
        users are allowed (服务类任务自动纳入种子用户).
        """
        reasons = []
        if sub.seed:
            reasons.append("seed_user")
        if purpose == "service":
            return (reasons, "allow") if reasons else None
        if sub.last_complaint_ms is not None and t - sub.last_complaint_ms <= DAY30_MS:
            reasons.append("recent_complaint")
        if sub.dnd:
            reasons.append("do_not_disturb")
        if self.tracker.has_open_fault(sub, t):
            reasons.append("open_fault")
        if not reasons:
            return None
        if reasons == ["seed_user"] and sub.star >= 5 and channel == "account_manager":
            return reasons, "allow"
        return reasons, "suppress"


def _daytime(t: int) -> int:
    """The first moment at or after ``t`` within 09:00-20:00 China time (no quiet hours)."""
    local = t + 8 * 3_600_000
    hour = (local // 3_600_000) % 24
    if 9 <= hour < 20:
        return t
    day_start = local - local % cat.DAY_MS
    nine = day_start + 9 * 3_600_000 + (cat.DAY_MS if hour >= 20 else 0)
    return nine - 8 * 3_600_000
