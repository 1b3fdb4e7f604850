"""The worker watching itself: packer restarts, the health check, ``/health``.

Wired into the Faust app by :func:`supervise`; the decisions themselves are
:class:`streams.health.Watchdog`'s (pure, unit-tested). What runs here:

* **packer**: every half second its counts are copied into the metrics; a packer that
  exited (a fatal consumer error, an envelope it could not deliver) is started again, with
  a back-off of 1 s doubling to 30 s while restarts keep failing. It resumes from the last
  committed input offsets; records packed twice are skipped by the worker.
* **health**: every second an :class:`~streams.health.Observation` (progress, input and
  packed lag, uncommitted records, a blocked commit or packer) goes to the watchdog; its
  verdict sets ``foresight_worker_stalled``, ``/health`` and ``/progress``, logs at ERROR
  once a minute while stalled, and crashes the worker (exit status 1) when only a restart
  can help.
* **stop**: from the first signal (or the start of any stop) a deadline thread ends the
  process after ``shutdown_timeout_s``, whatever still hangs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import faust

from streams.errors import ForesightError
from streams.faust_transport import consumer_lag
from streams.health import Observation, Verdict, Watchdog
from streams.metrics import STALL_COMPONENTS

log = logging.getLogger(__name__)


class WorkerStalled(ForesightError):
    """The worker made no progress for too long with the broker reachable; restart it."""


class Supervisor:
    """State of the worker's self-supervision (one per app)."""

    def __init__(self, app: Any, packed_topic: str) -> None:
        self.app = app
        self.packed_topic = packed_topic
        s = app.settings
        self.watchdog = Watchdog(stall_after_s=s.stall_after_s, exit_after_s=s.stall_exit_s,
                                 probe=lambda: app.committer.probe())
        self.verdict = Verdict("ok")
        self._packer_down_since: float | None = None
        self._restart_at = 0.0
        self._backoff = 1.0
        self._judging: asyncio.Future[Verdict] | None = None

    # --- packer --------------------------------------------------------------------------
    def check_packer(self, now: float) -> None:
        packer = self.app.packer
        if packer is None:
            return
        packer.sync()
        if packer.alive():
            if now - self._restart_at > 60.0:
                self._backoff = 1.0  # it has run a while: a next failure starts over
            return
        if self.app.should_stop:
            return
        if self._packer_down_since is None:
            self._packer_down_since = now
            self._restart_at = now + self._backoff
            log.error("the packer exited with status %s; starting a new one in %.0fs",
                      packer.exitcode, self._backoff)
        elif now >= self._restart_at:
            packer.restart()
            self.app.metrics.packer_restarts.inc()
            self._packer_down_since = None
            self._restart_at = now
            self._backoff = min(self._backoff * 2, 30.0)
            log.warning("packer started again (start #%d)", packer.starts)

    def packer_blocked(self) -> str | None:
        packer = self.app.packer
        if packer is None or packer.alive() or self.app.should_stop:
            return None
        return f"packer: exited with status {packer.exitcode}, restarting"

    # --- health --------------------------------------------------------------------------
    def observe(self, now: float) -> Observation:
        app, runner = self.app, self.app.runner
        committer = app.committer
        blocked = None
        if committer.blocked_since is not None and now - committer.blocked_since >= 2.0:
            blocked = (f"commit: a transaction has been retried for "
                       f"{now - committer.blocked_since:.0f}s ({committer.last_error})")
        elif (why := self.packer_blocked()) is not None:
            blocked = why
        packer = app.packer
        return Observation(
            now=now, progress=runner.committed_records + runner.skipped,
            input_lag=packer.lag() if packer is not None else 0,
            packed_lag=consumer_lag(app, self.packed_topic),
            pending=runner.unit.pending() + runner.in_flight, blocked=blocked)

    async def check_health(self) -> None:
        """Take an observation and judge it in a thread: the watchdog's probe (a metadata
        request) may take seconds while the broker is away, and must block neither the
        event loop nor this timer; a judgement still running skips the tick."""
        if self._judging is not None:
            if not self._judging.done():
                return
            verdict = self._judging.result()
            self._judging = None
            await self._act(verdict)
        obs = self.observe(time.monotonic())
        m = self.app.metrics
        m.input_lag.set(obs.input_lag)
        m.packed_lag.set(obs.packed_lag)
        self._judging = asyncio.ensure_future(asyncio.to_thread(self.watchdog.observe, obs))

    async def _act(self, verdict: Verdict) -> None:
        self.verdict = verdict
        m = self.app.metrics
        for component in STALL_COMPONENTS:
            m.stalled.labels(component).set(
                1 if verdict.status == "stalled" and verdict.component == component else 0)
        if verdict.log:
            (log.error if verdict.status == "stalled" else log.warning)(verdict.log)
        if verdict.exit and not self.app.should_stop:
            await self.app.crash(WorkerStalled(verdict.reason))

    def health(self) -> dict[str, Any]:
        v = self.verdict
        body: dict[str, Any] = {"status": "stopping" if self.app.should_stop else v.status}
        if v.status == "stalled":
            body.update(reason=v.reason, component=v.component,
                        stalled_for_s=round(v.stalled_for_s, 1))
        return body


def supervise(app: Any, packed_topic: str) -> Supervisor:
    """Add the packer and health timers and the ``/health`` page to ``app``."""
    sup = Supervisor(app, packed_topic)

    @app.timer(0.5, name="packer-supervision")
    async def packer_supervision() -> None:
        sup.check_packer(time.monotonic())

    @app.timer(1.0, name="health-check")
    async def health_check() -> None:
        await sup.check_health()

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """200 while the worker progresses (or has nothing to do), 503 when stalled: what a
        load balancer or an orchestrator's liveness probe reads."""
        body = sup.health()
        return web.json(body, status=200 if body["status"] == "ok" else 503)

    return sup


def arm_exit_deadline(seconds: float) -> None:
    """End the process ``seconds`` from now if it is still alive (once per process).

    A stop that hangs (a client waiting for a broker that is gone, a thread that does not
    return) must not keep a dead worker holding its partitions: nothing uncommitted is lost
    by exiting, the next owner processes it again.
    """
    global _deadline_armed
    if _deadline_armed:
        return
    _deadline_armed = True

    def expire() -> None:
        log.critical("still stopping after %.0fs (FORESIGHT_SHUTDOWN_TIMEOUT_S); exiting now, "
                     "uncommitted records are processed again by the next owner", seconds)
        logging.shutdown()
        os._exit(EXIT_SHUTDOWN_TIMEOUT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


_deadline_armed = False
#: exit status when a stop outlived FORESIGHT_SHUTDOWN_TIMEOUT_S
EXIT_SHUTDOWN_TIMEOUT = 75


class ForesightWorker(faust.Worker):
    """Faust's worker with a bounded stop from the first signal on (its log handler, with
    the repeat and mask filters, comes from :func:`streams.app.run_worker`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Faust's start-up spinner hides and shows the cursor with escape codes even when
        # its output is a file (only the spinning itself checks for a terminal): a log
        # file then starts with ESC[?25l ESC[?25h. No terminal, no spinner.
        spinner = self.spinner
        if spinner is not None and not _isatty(spinner.file):
            self.spinner = None

    def _schedule_shutdown(self, signal: Any) -> None:
        arm_exit_deadline(self.app.settings.shutdown_timeout_s)  # type: ignore[attr-defined]
        super()._schedule_shutdown(signal)


def _isatty(file: Any) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # closed or not a stream
        return False
