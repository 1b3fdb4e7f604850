"""The director: plans each epoch's faults, degradations, complaints, churners and decoys.

Prediction needs signal *and* noise: complainers are preceded by what seed 000's models
look at (dropped calls on a degrading home cell, calls to 12300/12315, repeated hotline
calls, a bill shock, an audit fault), but some complaints come out of nowhere and some
subscribers show the same precursors and never complain. Each story records only the
precursors that actually happened, at their event times, when its outcome happens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from streams.simulator import catalog as cat
from streams.simulator.clock import iso
from streams.simulator.engine import Engine
from streams.simulator.faults import Faults
from streams.simulator.flows_activity import Activity
from streams.simulator.flows_state import StateFlows
from streams.simulator.lookalikes import Lookalikes
from streams.simulator.network import Network
from streams.simulator.population import Cell, Population, Sub, pick_where

_KINDS = ("dropped_calls", "regulator_call", "hotline_calls", "bill_shock", "audit_fault")
_KIND_W = (0.30, 0.15, 0.25, 0.15, 0.15)
_FAULT_CATEGORY = {"product-not-provisioned": "product.order.not_effective",
                   "charged-without-product": "billing.dispute.vas",
                   "bss-active-hss-barred": "network.service.barred"}
_CELL_CATEGORY = {"drop_rate": "network.call.dropped",
                  "call_setup_success": "network.coverage.indoor",
                  "throughput_mbps": "network.data.slow"}


@dataclass
class Story:
    """One subscriber's path to (or around) a complaint or a port-out."""

    sub: Sub
    outcome: str                  # complaint | churn | decoy | churn_decoy
    at: int
    category: str = "service.repeat.unresolved"
    precursors: list[dict[str, Any]] = field(default_factory=list)


class Director:
    """Plans epochs of ``horizon`` simulated seconds and runs the stories."""

    def __init__(self, eng: Engine, pop: Population, flows: StateFlows, activity: Activity,
                 network: Network, faults: Faults, rng: random.Random,
                 lookalikes: Lookalikes | None = None) -> None:
        self.eng = eng
        self.cfg = eng.cfg
        self.pop = pop
        self.flows = flows
        self.activity = activity
        self.network = network
        self.faults = faults
        self.lookalikes = lookalikes
        self.rng = rng
        self.horizon = int(self.cfg.horizon_s * 1000)
        self.complainers: list[Sub] = []

    def start(self) -> None:
        """The first epoch starts with the run."""
        self.eng.at(self.eng.now, self.epoch)

    def _spread(self, t: int, count: int, lo: float, hi: float) -> list[int]:
        """``count`` times stratified over [t + lo*H, t + hi*H] (evenly, with jitter)."""
        span = (hi - lo) * self.horizon
        return [t + int(lo * self.horizon + span * (i + self.rng.random()) / count)
                for i in range(count)]

    def epoch(self, t: int) -> None:
        """Plan everything deliberate that happens in [t, t + horizon)."""
        eng, n = self.eng, len(self.pop.subs)
        eng.at(t + self.horizon, self.epoch)
        k = self.cfg.faults_per_epoch
        for rule in cat.RULES:
            for when in self._spread(t, k, 0.03, 0.6) if k else ():
                eng.at(when, self.faults.planned_inject, rule)
        if self.lookalikes is not None:   # own random stream: the rest stays as it was
            self.lookalikes.plan_epoch(t, self.horizon)
        cells = max(2, round(0.04 * len(self.pop.cells)))
        for when in self._spread(t, cells, 0.01, 0.45):
            eng.at(when, self.network.degrade, self.horizon)
        for when in self._spread(t, max(1, round(0.02 * len(self.pop.lines))), 0.01, 0.5):
            eng.at(when, self.network.attenuate, self.horizon)
        share = self.cfg.complaint_share * n
        for outcome, count in (("complaint", round(share * 0.75)), ("decoy", round(share * 0.5)),
                               ("churn", round(self.cfg.churn_share * n)),
                               ("churn_decoy", round(self.cfg.churn_share * n * 0.5))):
            for when in self._spread(t, count, 0.15, 0.95) if count else ():
                self._plan(t, outcome, when)
        noise = round(share * 0.25)
        for when in self._spread(t, noise, 0.05, 0.95) if noise else ():
            eng.at(when, self._noise_complaint)
        protected = max(30, round(0.004 * n))
        for when in self._spread(t, protected, 0.05, 0.98):
            eng.at(when, self._protected_contact)

    # --- planning -----------------------------------------------------------------------
    def _plan(self, epoch_start: int, outcome: str, at: int) -> None:
        rng = self.rng
        sub = pick_where(rng, self.pop.subs, lambda s: s.usable and not s.story, tries=64)
        if sub is None:
            return
        sub.story = True
        story = Story(sub, outcome, at)
        # a port-out is a month in the making (churn's horizon is 30 days): twice as long
        days = self.cfg.precursor_days * (1 if outcome in ("complaint", "decoy") else 2)
        span = int(days * 86_400_000) or 6 * 3600_000
        window = min(span, int(0.8 * (at - epoch_start)))
        lo, hi = at - window, at - 60_000
        if outcome in ("complaint", "decoy"):
            kinds = set(rng.choices(_KINDS, weights=_KIND_W, k=rng.choice((1, 2, 2, 3))))
            # with --precursor-days the trouble starts early in the window and keeps on
            # (a slow burn); the default keeps the original 6-hour stories byte for byte
            reach = 0.1 if self.cfg.precursor_days else 0.6
            for kind in sorted(kinds):
                self.eng.at(lo + int(rng.random() * (hi - lo) * reach), self._precursor, story,
                            kind, hi)
            self.eng.at(at, self._complaint if outcome == "complaint" else self._decoy, story)
        else:
            kinds = set(rng.choices(("complaint", "bad_survey", "competitor_calls"), k=2))
            reach = 0.1 if self.cfg.precursor_days else 0.5
            for kind in sorted(kinds):
                self.eng.at(lo + int(rng.random() * (hi - lo) * reach), self._precursor, story,
                            kind, hi)
            if self.cfg.precursor_days and rng.random() < 0.8:
                # 携号转网 starts with an eligibility / authorisation-code enquiry, days ahead
                when = max(lo, at - int(rng.uniform(1, 10) * 86_400_000))
                self.eng.at(when, self._portability_enquiry, story)
            self.eng.at(at, self._port_out if outcome == "churn" else self._decoy, story)

    def _precursor(self, t: int, story: Story, kind: str, deadline: int) -> None:
        """Emit one precursor (possibly several events spread until ``deadline``)."""
        rng, sub, act = self.rng, story.sub, self.activity
        if sub.bss != "active":
            return
        note: dict[str, Any] = {"kind": kind, "at": iso(t)}
        if kind == "dropped_calls":
            cell = self._bad_cell_for(sub, t)
            count = rng.randint(2, 4) + int(self.cfg.precursor_days // 3)
            times = sorted(t + int(rng.random() * (deadline - t)) for _ in range(count))
            for when in times:
                self.eng.at(when, self._dropped, sub, cell)
            note.update(at=iso(times[0]), count=count, last_at=iso(times[-1]),
                        cell_id=(cell or sub.home or self.pop.cells[0]).cell_id)
            if cell is not None and cell.degradation is not None:
                story.category = _CELL_CATEGORY[cell.degradation.metric]
                story.precursors.append({"kind": "bad_cell", "at": iso(cell.degradation.start),
                                         "cell_id": cell.cell_id,
                                         "metric": cell.degradation.metric})
            else:
                story.category = "network.call.dropped"
        elif kind == "regulator_call":
            number = rng.choice(cat.REGULATOR_NUMBERS)
            act.call(t, sub, number, "mo", sub.home, "answered", rng.randint(60, 400))
            note["number"] = number
        elif kind in ("hotline_calls", "complaint"):
            count = rng.randint(2, 3) + int(self.cfg.precursor_days // 5)
            times = sorted(t + int(rng.random() * (deadline - t)) for _ in range(count))
            for when in times:
                self.eng.at(when, self._hotline, sub)
            note.update(at=iso(times[0]), count=count)
            if kind == "complaint":
                category = rng.choice(cat.NOISE_CATEGORIES)
                when = times[-1] + 60_000
                note = {"kind": "complaint", "at": iso(when), "category": category}
                self.eng.at(when, self._churn_complaint, sub, category, times[0], count)
        elif kind == "bad_survey":
            note["score"] = act.survey(t, sub, unhappy=True)
        elif kind == "competitor_calls":
            count = rng.randint(1, 3)
            if self.cfg.precursor_days:   # shopping around over the weeks, not in one go
                count += int(self.cfg.precursor_days // 5)
                for _ in range(count):
                    when = t + int(rng.random() * (deadline - t))
                    self.eng.at(when, self._competitor_call, sub)
            else:
                for _ in range(count):
                    act.call(t, sub, rng.choice(cat.COMPETITOR_HOTLINES), "mo", sub.home,
                             "answered", rng.randint(60, 600))
            note["count"] = count
        elif kind == "bill_shock":
            amount = rng.randint(20_000, 80_000)
            self.flows.sys.charge(sub, "usage", amount)
            note["amount_cents"] = amount
            story.category = "billing.dispute.usage"
        elif kind == "audit_fault":
            rule = rng.choice(sorted(_FAULT_CATEGORY))
            done = self.faults.inject(t, rule, sub=sub, fixed=False)
            if done is None:
                return
            note.update(rule=rule, item=done["item"], at=iso(done["at"]))
            story.category = _FAULT_CATEGORY[rule]
        story.precursors.append(note)

    def _bad_cell_for(self, sub: Sub, t: int) -> Cell | None:
        """The subscriber's home cell if degrading, else some degrading cell (or none)."""
        bad = self.network.degrading_now(t)
        if sub.home in bad:
            return sub.home
        return self.rng.choice(bad) if bad else None

    def _dropped(self, t: int, sub: Sub, cell: Cell | None) -> None:
        if sub.bss == "active":
            peer = self.rng.choice(self.pop.subs).msisdn
            self.activity.call(t, sub, peer, self.rng.choice(("mo", "mt")), cell, "dropped")

    def _portability_enquiry(self, t: int, story: Story) -> None:
        if story.sub.bss == "active":
            self.activity.online(t, story.sub, topic="number.portability")
            story.precursors.append({"kind": "portability_enquiry", "at": iso(t)})

    def _competitor_call(self, t: int, sub: Sub) -> None:
        if sub.bss == "active":
            self.activity.call(t, sub, self.rng.choice(cat.COMPETITOR_HOTLINES), "mo",
                               sub.home, "answered", self.rng.randint(60, 600))

    def _hotline(self, t: int, sub: Sub) -> None:
        self.activity.hotline_call(t, sub, unhappy=True)

    def _churn_complaint(self, t: int, sub: Sub, category: str, first: int, count: int) -> None:
        complaint_id, channel, severity = self.activity.complaint(t, sub, category)
        self.eng.truth.write({
            "type": "complaint", "subscriber_id": sub.sid, "complaint_id": complaint_id,
            "opened_at": iso(t), "channel": channel, "severity": severity,
            "category": category,
            "precursors": [{"kind": "hotline_calls", "at": iso(first), "count": count}],
        })

    # --- outcomes -----------------------------------------------------------------------
    def _complaint(self, t: int, story: Story) -> None:
        sub, rng = story.sub, self.rng
        if sub.bss != "active" or not story.precursors:
            return
        kinds = {p["kind"] for p in story.precursors}
        channel, severity = None, "normal"
        if "regulator_call" in kinds:
            channel, severity = ("regulator", "regulator") if rng.random() < 0.5 else (
                "hotline", "escalated")
        elif rng.random() < 0.15:
            severity = "escalated"
        complaint_id, channel, severity = self.activity.complaint(
            t, sub, story.category, channel, severity)
        self.complainers.append(sub)
        self.eng.truth.write({
            "type": "complaint", "subscriber_id": sub.sid, "complaint_id": complaint_id,
            "opened_at": iso(t), "channel": channel, "severity": severity,
            "category": story.category, "precursors": story.precursors,
        })

    def _decoy(self, t: int, story: Story) -> None:
        story.sub.story = False
        if story.precursors:
            kind = ("precursors_without_complaint" if story.outcome == "decoy"
                    else "precursors_without_churn")
            self.eng.truth.write({"type": "decoy", "kind": kind, "subscriber_id": story.sub.sid,
                                  "at": iso(t), "precursors": story.precursors})

    def _port_out(self, t: int, story: Story) -> None:
        if story.sub.usable:
            self.flows.port_out(t, story.sub, story.precursors)

    def _noise_complaint(self, t: int) -> None:
        sub = pick_where(self.rng, self.pop.subs, lambda s: s.usable and not s.story)
        if sub is None:
            return
        category = self.rng.choice(cat.NOISE_CATEGORIES)
        complaint_id, channel, severity = self.activity.complaint(t, sub, category)
        self.complainers.append(sub)
        self.eng.truth.write({
            "type": "decoy", "kind": "complaint_without_precursors", "subscriber_id": sub.sid,
            "at": iso(t), "complaint_id": complaint_id, "channel": channel,
            "severity": severity, "category": category, "precursors": [],
        })

    # --- contact policy -----------------------------------------------------------------
    def _protected_contact(self, t: int) -> None:
        """A campaign request aimed at someone the contact policy must protect."""
        rng, act = self.rng, self.activity
        target = rng.choices(("seed", "seed_service", "complainer", "dnd", "fault"),
                             weights=(0.30, 0.15, 0.20, 0.20, 0.15))[0]
        sub: Sub | None = None
        purpose, channel = "marketing", None
        if target in ("seed", "seed_service"):
            sub = pick_where(rng, self.pop.subs, lambda s: s.seed and s.bss == "active", 200)
            if target == "seed_service":
                purpose = "service"
            elif rng.random() < 0.4:
                channel = "account_manager"
        elif target == "dnd":
            sub = pick_where(rng, self.pop.subs, lambda s: s.dnd and s.bss == "active", 200)
        elif target == "complainer" and self.complainers:
            sub = rng.choice(self.complainers)
        elif target == "fault":
            faulted = [s for s in self.faults.victims if self.faults_open(s, t)]
            sub = rng.choice(faulted) if faulted else None
        if sub is not None:
            act.contact_request(t, sub, purpose, channel)

    def faults_open(self, sub: Sub, t: int) -> bool:
        """Does ``sub`` have an injected fault past its grace period now?"""
        return self.activity.tracker.has_open_fault(sub, t)
