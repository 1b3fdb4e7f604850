"""``network-kpis``: cell KPIs every 15 simulated minutes, broadband lines every hour.

Degrading cells (their drop rate, setup success or throughput drifting over an hour or
two, sometimes recovering) and attenuating fibre lines (ONU rx power sliding below
-27 dBm, 光衰) are planned per epoch and written to the truth; lines whose terminal
cannot carry the contracted speed (端网业不匹配) are static and written at the start.
The network OSS reports in UTC (``Z``), unlike the business systems.
"""

from __future__ import annotations

import random

from streams.simulator import catalog as cat
from streams.simulator.clock import UTC_Z, china_hour, iso
from streams.simulator.engine import Engine
from streams.simulator.population import Cell, Degradation, Line, Population

TOPIC = "network-kpis"
_METRICS = ("drop_rate", "call_setup_success", "throughput_mbps")


class Network:
    """Cell and line measurement generators plus their degradations."""

    def __init__(self, eng: Engine, pop: Population, rng: random.Random) -> None:
        self.eng = eng
        self.pop = pop
        self.rng = rng
        self.buckets: list[list[Line]] = [[] for _ in range(60)]
        self._known_lines = 0
        self.degrading: list[Cell] = []

    def start(self) -> None:
        """First cell window at the next quarter hour, first line probe at the next minute."""
        now = self.eng.now
        quarter = cat.CELL_KPI_EVERY_MS
        self.eng.at(now - now % quarter + quarter, self.cell_tick)
        self._adopt_lines()
        self.eng.at(now - now % cat.MINUTE_MS + cat.MINUTE_MS, self.line_tick)

    def _adopt_lines(self) -> None:
        lines = self.pop.lines
        for line in lines[self._known_lines:]:
            self.buckets[line.slot].append(line)
            if line.terminal < line.contracted:
                self.eng.truth.write({
                    "type": "terminal_mismatch", "line_id": line.line_id,
                    "subscriber_id": line.sub.sid, "contracted_mbps": line.contracted,
                    "terminal_max_mbps": line.terminal,
                })
        self._known_lines = len(lines)

    # --- cells --------------------------------------------------------------------------
    def cell_tick(self, t: int) -> None:
        """KPIs of every cell for the 15 minutes ending now."""
        self.eng.at(t + cat.CELL_KPI_EVERY_MS, self.cell_tick)
        rng = self.rng
        emit = self.eng.emit
        end = UTC_Z.format(t)
        begin = UTC_Z.format(t - cat.CELL_KPI_EVERY_MS)
        load = cat.HOURLY_FACTOR[china_hour(t)]
        for cell in self.pop.cells:
            drop, css, thr = cell.kpis(t)
            busy = cell.traffic * load
            emit(TOPIC, cell.cell_id, {
                "schema_version": 1, "event_id": self.eng.eid(), "event_time": end,
                "kind": "cell_kpi", "cell_id": cell.cell_id, "window_start": begin,
                "scenario": cell.scenario,
                "call_setup_success": round(min(1.0, css + rng.uniform(-0.002, 0.002)), 4),
                "drop_rate": round(max(0.0, drop * rng.uniform(0.8, 1.2)), 4),
                "sms_delivery": round(min(1.0, 0.995 + rng.uniform(0, 0.004) - (1 - css) / 4), 4),
                "throughput_mbps": round(thr / max(0.6, busy ** 0.5) * rng.uniform(0.9, 1.1), 1),
                "users": int(busy * 120 * rng.uniform(0.8, 1.2)),
            })

    def degrade(self, t: int, horizon_ms: int) -> None:
        """Start a degradation on a random healthy cell now; maybe plan its recovery."""
        rng = self.rng
        healthy = [c for c in self.pop.cells
                   if c.degradation is None
                   or (c.degradation.end is not None and c.degradation.end <= t)]
        if not healthy:
            return
        cell = rng.choice(healthy)
        metric = rng.choices(_METRICS, weights=(0.45, 0.30, 0.25))[0]
        if metric == "drop_rate":
            frm, to = cell.drop_rate, rng.uniform(0.03, 0.08)
        elif metric == "call_setup_success":
            frm, to = cell.setup_success, rng.uniform(0.85, 0.93)
        else:
            frm, to = cell.throughput, cell.throughput * rng.uniform(0.08, 0.3)
        ramp_end = t + int(rng.uniform(20 * 60, 3 * 3600) * 1000)
        end = None
        if rng.random() < 0.4:
            end = ramp_end + int(rng.uniform(3600_000, max(3600_000 * 1.5, 0.4 * horizon_ms)))
            self.eng.at(end, self._recovered, cell)
        cell.degradation = Degradation(metric, t, ramp_end, round(frm, 4), round(to, 4), end)
        self.degrading.append(cell)

    def _recovered(self, t: int, cell: Cell) -> None:
        self._write_degradation(cell, ended=True)
        self.degrading.remove(cell)

    def _write_degradation(self, cell: Cell, ended: bool) -> None:
        d = cell.degradation
        assert d is not None
        self.eng.truth.write({
            "type": "degrading_cell", "cell_id": cell.cell_id, "scenario": cell.scenario,
            "start": iso(d.start), "end": iso(d.end) if ended and d.end is not None else None,
            "metric": d.metric, "from": d.frm, "to": d.to, "ramp_end": iso(d.ramp_end),
        })

    def degrading_now(self, t: int) -> list[Cell]:
        """Cells whose degradation has started and not recovered at ``t``."""
        return [c for c in self.degrading if c.degradation and c.degradation.level(t) > 0]

    # --- broadband lines ----------------------------------------------------------------
    def line_tick(self, t: int) -> None:
        """Measure the lines whose slot is this minute (each line once an hour)."""
        self.eng.at(t + cat.MINUTE_MS, self.line_tick)
        if len(self.pop.lines) != self._known_lines:
            self._adopt_lines()
        rng = self.rng
        emit = self.eng.emit
        stamp = UTC_Z.format(t)
        evening = 0.8 if 19 <= china_hour(t) <= 23 else 1.0
        for line in self.buckets[(t // cat.MINUTE_MS) % 60]:
            rx = line.rx_base + rng.uniform(-0.3, 0.3)
            a = line.attenuation
            if a is not None and t >= a[0]:
                k = min(1.0, (t - a[0]) / max(a[1] - a[0], 1))
                rx = a[2] + (a[3] - a[2]) * k + rng.uniform(-0.2, 0.2)
            speed = min(line.contracted, line.terminal) * rng.uniform(0.78, 0.97) * evening
            if rx < -25.0:
                speed *= max(0.05, 1.0 - (-25.0 - rx) * 0.22)
            emit(TOPIC, line.line_id, {
                "schema_version": 1, "event_id": self.eng.eid(), "event_time": stamp,
                "kind": "line_measurement", "line_id": line.line_id,
                "subscriber_id": line.sub.sid, "onu_rx_power_dbm": round(rx, 2),
                "contracted_mbps": line.contracted, "measured_mbps": round(speed, 1),
                "terminal_max_mbps": line.terminal,
            })

    def attenuate(self, t: int, horizon_ms: int) -> None:
        """Start a fibre attenuation (光衰) on a random healthy line now."""
        rng = self.rng
        lines = self.pop.lines
        if not lines:
            return
        for _ in range(16):
            line = lines[int(rng.random() * len(lines))]
            if line.attenuation is None:
                break
        else:
            return
        ramp = int(rng.uniform(3600_000, max(2 * 3600_000, 0.3 * horizon_ms)))
        to = round(rng.uniform(-32.0, -27.5), 1)
        line.attenuation = (t, t + ramp, line.rx_base, to)
        self.eng.truth.write({
            "type": "attenuating_line", "line_id": line.line_id, "subscriber_id": line.sub.sid,
            "start": iso(t), "rx_power_dbm_start": line.rx_base, "rx_power_dbm_end": to,
            "reaches_end_at": iso(t + ramp),
        })

    def finish(self) -> None:
        """Degradations still in progress (a planned recovery not reached) end ``null``."""
        for cell in self.degrading:
            self._write_degradation(cell, ended=False)
        self.degrading.clear()
