"""Is the worker making progress on the work it has? A live process that does nothing is
worse than one that exits, so this module decides between ``ok``, ``stalled`` and *exit*.

The worker feeds a :class:`Watchdog` an :class:`Observation` every second: a progress
counter (records committed or skipped as already applied), the backlog it knows of
(input records the packer has not consumed, envelopes Faust has not read, records
applied but not committed) and a component's own account of why it is blocked (a commit
retrying through an outage, the packer restarting). Pure logic: no Kafka, no clock of its
own, so the rules below are unit-tested.

* **stalled**: there is work and nothing progressed for ``stall_after_s``; the reason is
  the component's account, else whether the broker answers (a probe), else which stage
  holds the backlog. Reported on ``/health``, ``/progress`` and a metric, and logged at
  ERROR once when it starts and then once per ``log_every_s``, never per poll.
* **exit**: stalled for ``exit_after_s`` *while the broker answers*: restarting is the
  only way on (a supervisor restarts the process, which restores exactly what
  committed). While the broker is unreachable the worker waits instead: a restart cannot
  bring the broker back, and the worker resumes by itself when it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Observation:
    """What the worker sees at one instant (``now`` is monotonic seconds)."""

    now: float
    progress: int
    input_lag: int = 0
    packed_lag: int = 0
    pending: int = 0
    blocked: str | None = None  # "component: why", from the component itself


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # "ok" | "stalled"
    reason: str = ""
    component: str = ""  # commit | packer | broker | consumer (bounded, for metrics)
    stalled_for_s: float = 0.0
    exit: bool = False
    log: str | None = None  # an ERROR line to write now (rate-limited here)


class Watchdog:
    """Turns observations into :class:`Verdict` objects (see the module docstring).

    >>> w = Watchdog(stall_after_s=30, exit_after_s=120, probe=lambda: True)
    >>> w.observe(Observation(0.0, progress=10, pending=5)).status
    'ok'
    >>> v = w.observe(Observation(31.0, progress=10, pending=5))
    >>> v.status, v.component, v.exit
    ('stalled', 'commit', False)
    >>> w.observe(Observation(152.0, progress=10, pending=5)).exit
    True
    >>> w.observe(Observation(153.0, progress=11, pending=5)).status
    'ok'
    """

    def __init__(self, *, stall_after_s: float = 30.0, exit_after_s: float = 120.0,
                 log_every_s: float = 60.0, probe: Callable[[], bool] | None = None,
                 probe_every_s: float = 10.0) -> None:
        self.stall_after_s = stall_after_s
        self.exit_after_s = exit_after_s
        self.log_every_s = log_every_s
        self.probe = probe
        self.probe_every_s = probe_every_s
        self._progress: int | None = None
        self._progress_at = 0.0
        self._stalled_at: float | None = None
        self._reachable_since: float | None = None
        self._logged_at: float | None = None
        self._probed_at: float | None = None
        self._reachable = True
        self.last = Verdict("ok")

    def observe(self, obs: Observation) -> Verdict:
        now = obs.now
        has_work = bool(obs.input_lag or obs.packed_lag or obs.pending or obs.blocked)
        if obs.progress != self._progress or not has_work:
            self._progress = obs.progress
            self._progress_at = now
        if now - self._progress_at < self.stall_after_s:
            return self._ok(now)
        if self._stalled_at is None:
            self._stalled_at = self._progress_at
        reachable = self._probe(now)
        if reachable:
            if self._reachable_since is None:
                self._reachable_since = now
        else:
            self._reachable_since = None
        component, reason = self._why(obs, reachable)
        stalled_for = now - self._stalled_at
        exit_now = (reachable and self._reachable_since is not None
                    and now - max(self._stalled_at, self._reachable_since) >= self.exit_after_s)
        line = None
        if exit_now:
            line = (f"stalled for {stalled_for:.0f}s with the broker reachable ({reason}); "
                    "exiting so that a supervisor restarts the worker")
        elif self._logged_at is None or now - self._logged_at >= self.log_every_s:
            line = (f"stalled for {stalled_for:.0f}s: {reason} (input lag {obs.input_lag}, "
                    f"packed lag {obs.packed_lag}, uncommitted {obs.pending}); logged once a "
                    "minute while it lasts")
        if line is not None:
            self._logged_at = now
        self.last = Verdict("stalled", reason, component, stalled_for, exit_now, line)
        return self.last

    def _ok(self, now: float) -> Verdict:
        line = None
        if self._stalled_at is not None:
            line = f"resumed after {now - self._stalled_at:.0f}s stalled"
        self._stalled_at = None
        self._logged_at = None
        self._reachable_since = None
        self._probed_at = None
        self.last = Verdict("ok", log=line)
        return self.last

    def _probe(self, now: float) -> bool:
        if self.probe is None:
            return True
        if self._probed_at is None or now - self._probed_at >= self.probe_every_s:
            self._probed_at = now
            self._reachable = self.probe()
        return self._reachable

    @staticmethod
    def _why(obs: Observation, reachable: bool) -> tuple[str, str]:
        if obs.blocked:
            component = obs.blocked.partition(": ")[0]
            if not reachable:
                return "broker", f"broker unreachable; {obs.blocked}"
            return component, obs.blocked
        if not reachable:
            return "broker", "broker unreachable (no answer to a metadata request)"
        if obs.pending:
            return "commit", f"{obs.pending} records applied but not committed"
        if obs.packed_lag:
            return "consumer", f"{obs.packed_lag} envelopes waiting, none read"
        if obs.input_lag:
            return "packer", f"{obs.input_lag} input records waiting, none packed"
        return "consumer", "no progress"
