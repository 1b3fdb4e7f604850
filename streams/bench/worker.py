"""The ``foresight`` line: real ``foresight worker`` processes, measured from outside.

The worker is launched exactly as an operator would (the ``foresight`` console script, the
documented environment variables) and observed only through its ``/metrics`` page, polled
every ~20 ms. Its rate is N / (time ``foresight_committed_records_total`` reaches N - time
``foresight_packer_records_total`` first exceeds 0): packing, decoding, validation, the
pipeline, coalesced changelog writes and the transaction commits are all inside the span,
as is the Faust consumer's group join if it ends after the packer started (the timeline in
the result shows how much). Scraping costs the worker about a millisecond per poll.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.bench import procs
from streams.bench.report import LineResult
from streams.settings import Settings

Series = dict[str, dict[str, float]]
ProgressFn = Callable[[str, int, int], None]


def parse_metrics(text: str) -> Series:
    """Prometheus text format to ``{name: {labels: value}}`` (labels as written, '' if none).

    >>> m = parse_metrics('# HELP x y\\nfoo_total{topic="a"} 2.0\\nfoo_total{topic="b"} 3.0\\nbar 1\\n')
    >>> total(m, "foo_total"), total(m, "bar"), total(m, "missing")
    (5.0, 1.0, 0.0)
    """
    out: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, brace, labels = head.partition("{")
        try:
            out.setdefault(name, {})[labels.rstrip("}") if brace else ""] = float(value)
        except ValueError:
            continue
    return out


def total(series: Series, name: str) -> float:
    """Sum of every series of metric ``name`` (0 when absent)."""
    return float(sum(series.get(name, {}).values()))


def by_label(series: Series, name: str) -> dict[str, float]:
    """``{label value: value}`` of a metric with one label."""
    out = {}
    for labels, v in series.get(name, {}).items():
        _, _, quoted = labels.partition("=")
        out[quoted.strip('"')] = v
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    out = {}
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith(("VmRSS:", "VmHWM:")):
                name, value = row.split(":", 1)
                out[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (the packer child).

    On a machine where the broker, the load and the worker share the cores, elapsed time
    mixes their costs; CPU time per event is what each part costs on its own.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(int(st[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        st = _stat(p)
        if st is not None:
            total += int(st[11]) + int(st[12])  # utime, stime (fields 14 and 15)
        todo += children.get(p, [])
    return total / _TICK


def broker_pid(settings: Settings) -> int | None:
    """The embedded broker's process, when this machine runs it (None for a remote cluster)."""
    from streams.kafka_local import LocalKafka

    return LocalKafka.from_settings(settings).pid() if settings.local_broker else None


def foresight_argv() -> list[str]:
    """The installed ``foresight`` script next to this interpreter, else ``-m streams.cli``."""
    script = Path(sys.executable).parent / "foresight"
    return [str(script)] if script.exists() else [sys.executable, "-m", "streams.cli"]


@dataclass
class Worker:
    """One ``foresight worker`` child with its port and log."""

    name: str
    proc: subprocess.Popen[Any]
    port: int
    log_path: Path
    last: Series = field(default_factory=dict)

    def scrape(self, timeout: float = 1.0) -> Series | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=timeout) as resp:
                self.last = parse_metrics(resp.read().decode())
                return self.last
        except OSError:
            return None

    def progress(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The worker's cheap ``/progress`` counters (polling /metrics at 50 Hz would cost
        the worker ~10% of its CPU rendering every series)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/progress",
                                        timeout=timeout) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 3) -> str:
        """The last warnings/errors of the worker's log (else its last lines)."""
        try:
            rows = [r.strip() for r in self.log_path.read_text(errors="replace").splitlines() if r.strip()]
        except OSError:
            return "(no log)"
        loud = [r for r in rows if "WARNING]" in r or "ERROR]" in r or "Error" in r]
        picked = (loud or rows)[-lines:]
        return " | ".join(r[:300] for r in picked) or "(empty log)"


def _tails(ws: list[Worker]) -> str:
    return " || ".join(f"{w.name}: {w.log_tail()}" for w in ws)


def start_worker(settings: Settings, *, app_id: str, worker_id: str, home: Path,
                 log_path: Path, env_extra: dict[str, str] | None = None) -> Worker:
    """Launch ``foresight worker`` configured only through its environment variables."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)  # other FORESIGHT_* settings (SASL, batch sizes...) still apply
    env.update({
        "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
        "FORESIGHT_APP_ID": app_id,
        "FORESIGHT_WEB_PORT": str(port),
        "FORESIGHT_HOME": str(home),
        "FORESIGHT_PARTITIONS": str(settings.partitions),
        "FORESIGHT_WORKER_ID": worker_id,
        "KAFKA_BOOTSTRAP_SERVERS": settings.brokers,
        "PYTHONUNBUFFERED": "1",
        **(env_extra or {}),
    })
    log = log_path.open("wb")
    try:
        proc = procs.spawn([*foresight_argv(), "worker"], env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    finally:
        log.close()
    return Worker(worker_id, proc, port, log_path)


def run_line(settings: Settings, *, line: str, app_id: str, events: int, workers: int,
             scratch: Path, timeout: float, progress: ProgressFn | None = None,
             profile_to: Path | None = None, poll_s: float = 0.02,
             stall_s: float = 90.0, env_extra: dict[str, str] | None = None) -> LineResult:
    """Run ``workers`` workers over the pre-filled inputs until N are committed; measure.

    Fails early, naming what it saw, when nothing new was committed for ``stall_s`` after
    the packer had packed everything (a worker stuck in a rebalance or recovery).
    """
    ws = [start_worker(settings, app_id=app_id, worker_id=f"{app_id}-w{i}",
                       home=scratch / f"{app_id}-w{i}", log_path=scratch / f"{app_id}-w{i}.log",
                       env_extra=env_extra)
          for i in range(workers)]
    spy: subprocess.Popen[Any] | None = None
    spy_tried = profile_to is None
    t0 = time.monotonic()
    marks: dict[str, float] = {}
    broker = broker_pid(settings)
    cpu: dict[str, float] = {}  # CPU seconds of the workers and the broker at the marks

    def cpu_mark(name: str) -> None:
        cpu[name + "_workers"] = sum(proc_cpu_seconds(w.proc.pid) for w in ws)
        if broker is not None:
            cpu[name + "_broker"] = proc_cpu_seconds(broker)
    packed = committed = last_committed = 0.0
    last_change = t0
    next_report = 0.0
    try:
        while True:
            now = time.monotonic()
            seen = []
            for w in ws:
                if w.proc.poll() is not None:
                    raise procs.LineFailed(
                        f"{line}: worker {w.name} exited with code {w.proc.returncode} after "
                        f"committing {committed:,.0f} of {events:,} events; log: {w.log_tail()}")
                seen.append(w.progress() or {})
                if seen[-1] and not spy_tried and profile_to is not None:
                    spy_tried = True  # once the worker's Python is up
                    spy = _start_profiler(ws[0].proc.pid, profile_to)
            packed = sum(p.get("packed") or 0 for p in seen)
            committed = sum(p.get("committed") or 0 for p in seen)
            if packed > 0 and "packer_first" not in marks:
                marks["packer_first"] = now
                cpu_mark("first")
            if packed >= events:
                marks.setdefault("packer_all", now)
            if committed > 0:
                marks.setdefault("commit_first", now)
            if committed >= events:
                marks["commit_all"] = now
                cpu_mark("all")
                break
            if committed != last_committed:
                last_committed, last_change = committed, now
            elif packed >= events and now - last_change > stall_s:
                raise procs.LineFailed(
                    f"{line}: stalled: committed stayed at {committed:,.0f} of {events:,} for "
                    f"{stall_s:.0f} s although the packer packed {packed:,.0f}; per worker "
                    + ", ".join(f"{w.name} {(w.progress() or {}).get('committed', 0):,.0f}"
                                for w in ws) + f"; log: {_tails(ws)}")
            if progress is not None and now >= next_report:
                next_report = now + 0.5
                progress(line, int(committed), events)
            if now - t0 > timeout:
                raise procs.LineFailed(
                    f"{line}: timed out after {timeout:.0f} s: packer saw {packed:,.0f}, "
                    f"committed {committed:,.0f} of {events:,} events; log: {_tails(ws)}")
            time.sleep(poll_s)
        if progress is not None:
            progress(line, int(committed), events)
        time.sleep(0.3)  # anything committed beyond N would be a duplicate: look once more
        for w in ws:
            w.scrape()
        return _result(line, ws, events, marks, t0, cpu)
    finally:
        if spy is not None and profile_to is not None:
            try:  # before the workers stop: shutdown is not what we profile
                profile_to.write_text(_stop_profiler(spy) or "py-spy wrote no samples\n")
            except Exception as exc:
                profile_to.write_text(f"profiling failed: {exc!r}\n")
        for w in ws:
            procs.stop(w.proc, grace=20.0)
        for w in ws:
            shutil.rmtree(scratch / w.name, ignore_errors=True)


def _result(line: str, ws: list[Worker], events: int, marks: dict[str, float],
            t0: float, cpu: dict[str, float]) -> LineResult:
    mem = [proc_memory(w.proc.pid) for w in ws]
    series = [w.last for w in ws]

    def tot(name: str) -> float:
        return sum(total(s, name) for s in series)

    def labelled(name: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in series:
            for k, v in by_label(s, name).items():
                out[k] = out.get(k, 0.0) + v
        return out

    committed = int(tot("foresight_committed_records_total"))
    start = marks["packer_first"]
    seconds = marks["commit_all"] - start
    updates = labelled("foresight_state_updates_total")
    changelog = labelled("foresight_changelog_records_total")
    state_tables = [t for t, n in updates.items() if n > 0]
    upd = sum(updates[t] for t in state_tables)
    written = sum(changelog.get(t, 0.0) for t in state_tables)
    steady = marks["commit_all"] - marks["commit_first"]
    extra = {
        "workers": len(ws),
        "timeline_s": {k: round(v - start, 3) for k, v in marks.items()},
        "startup_s": round(start - t0, 3),
        "steady_rate": committed / steady if steady > 0 else None,
        "commits": int(tot("foresight_commits_total")),
        "envelopes": int(tot("foresight_envelopes_total")),
        "state_updates": updates,
        "changelog_records": changelog,
        "coalescing_ratio": upd / written if written else None,
        "input_events": int(tot("foresight_input_events_total")),
        "dead_letters": int(tot("foresight_dead_letters_total")),
        "duplicates": int(tot("foresight_duplicate_records_total")),
        "vm_rss_bytes": [m.get("VmRSS") for m in mem],
        "vm_hwm_bytes": [m.get("VmHWM") for m in mem],
        # CPU µs per event from the first packed event to the last commit
        "cpu_us_per_event": {
            part: round((cpu[f"all_{part}"] - cpu[f"first_{part}"]) / committed * 1e6, 2)
            for part in ("workers", "broker") if f"all_{part}" in cpu and committed},
    }
    ok = committed == events and extra["dead_letters"] == 0
    error = None
    if committed != events:
        error = f"{line}: committed {committed:,} records, expected exactly {events:,}"
    elif extra["dead_letters"]:
        error = f"{line}: {extra['dead_letters']} valid events were dead-lettered"
    hwm = [m.get("VmHWM") or 0 for m in mem]
    return LineResult(line=line, ok=ok, events=committed, seconds=seconds,
                      rate=committed / seconds if seconds > 0 else 0.0,
                      rss_bytes=sum(hwm) or None, error=error, extra=extra)


# --- optional profiling with py-spy ----------------------------------------------------------
def _start_profiler(pid: int, out: Path) -> subprocess.Popen[Any] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        out.write_text("py-spy not installed: pip install py-spy\n")
        return None
    raw = out.with_suffix(".collapsed")
    return procs.spawn([exe, "record", "--pid", str(pid), "--rate", "200", "--threads",
                        "--nonblocking", "--format", "raw", "--output", str(raw)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profiler(spy: subprocess.Popen[Any]) -> str | None:
    """Stop py-spy (SIGINT makes it write its file) and summarise the stacks."""
    from streams.bench.profile import summarize_collapsed

    out = Path(spy.args[-1])
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            procs.stop(spy, grace=1.0)
    procs.LIVE.discard(spy)
    if not out.exists():
        return None
    return summarize_collapsed(out.read_text())
