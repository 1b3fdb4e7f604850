"""The simulator's settings: one frozen object built from the command line (or a test).

Everything that changes the generated stream lives here, so ``(config) -> records`` is a
pure function; pacing (``rate``, ``speed``, ``duration``) only decides *when* records are
sent, never *which*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from streams.simulator import catalog as cat
from streams.simulator.errors import SimulatorInputError


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Defaults are the CLI defaults."""

    seed: int = 1
    subscribers: int = 10_000
    start_ms: int = 0
    #: Simulated seconds injections are spread over, per epoch (then a new epoch starts).
    horizon_s: float = 86_400.0
    bootstrap: bool = True
    invalid_rate: float = 0.001
    late_rate: float = 0.002
    late_max_s: float = 180.0
    duplicate_rate: float = 0.001
    faults_per_rule: int = 20
    fault_scale: float = 1.0
    complaint_share: float = 0.02
    churn_share: float = 0.003
    #: Days before a complaint or port-out over which its precursors are spread (0: the
    #: last 6 hours, as before). Real complainers show the signs for days (seed 000's
    #: models look back 30/90 days); ``foresight evaluate models`` uses 10.
    precursor_days: float = 0.0
    #: Look-alikes (benign, must not alert) per injected fault, per rule.
    lookalike_rate: float = 1.0
    #: The workers' allowed lateness (FORESIGHT_TIMER_LATENESS_MS), in seconds: look-alikes
    #: of grace-0 rules clear well inside it, out-of-order reports stay well inside it.
    lateness_s: float = 2.0
    max_event_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        checks = (
            (self.subscribers >= 10, "--subscribers must be at least 10"),
            (self.subscribers <= 5_000_000, "--subscribers must be at most 5,000,000"),
            (self.horizon_s >= 600, "--horizon must be at least 600 simulated seconds"),
            (0 <= self.invalid_rate <= 0.2, "--invalid-rate must be within [0, 0.2]"),
            (0 <= self.late_rate <= 0.2, "--late-rate must be within [0, 0.2]"),
            (1 <= self.late_max_s <= 3600, "--late-max must be within [1, 3600] seconds"),
            (0 <= self.duplicate_rate <= 0.2, "--duplicate-rate must be within [0, 0.2]"),
            (self.faults_per_rule >= 0, "--faults-per-rule must not be negative"),
            (0 <= self.fault_scale <= 100, "--fault-scale must be within [0, 100]"),
            (0 <= self.complaint_share <= 0.5, "--complaint-share must be within [0, 0.5]"),
            (0 <= self.churn_share <= 0.2, "--churn-share must be within [0, 0.2]"),
            (0 <= self.precursor_days <= 60, "--precursor-days must be within [0, 60]"),
            (0 <= self.lookalike_rate <= 100, "--lookalike-rate must be within [0, 100]"),
            (0.05 <= self.lateness_s <= 600, "--lateness must be within [0.05, 600] seconds"),
        )
        for ok, message in checks:
            if not ok:
                raise SimulatorInputError(message)

    @property
    def faults_per_epoch(self) -> int:
        """Injected faults per rule in each horizon (``--faults-per-rule`` x scale)."""
        return round(self.faults_per_rule * self.fault_scale)

    @property
    def lookalikes_per_epoch(self) -> int:
        """Look-alikes per rule in each horizon (faults per epoch x ``--lookalike-rate``)."""
        return round(self.faults_per_epoch * self.lookalike_rate)

    @property
    def lateness_ms(self) -> int:
        """``--lateness`` in milliseconds."""
        return round(self.lateness_s * 1000)

    def as_args(self) -> dict[str, Any]:
        """The config as plain data, for the truth header."""
        return asdict(self)


def expected_events_per_hour(subscribers: int) -> float:
    """Rough count of run-phase events per simulated hour, for ``--speed auto`` and the
    horizon estimate of ``--events`` (within ~20% of what the generators produce)."""
    per_day = sum(cat.RATES_PER_SUB_DAY.values())
    per_day += 3.3          # hotline legs, provisioning, lifecycle follow-ups, results
    per_day += cat.FTTH_PROB * 24
    per_day += 24 * 4 / cat.SUBSCRIBERS_PER_CELL
    return subscribers * per_day / 24
