"""``foresight bench faults`` and ``foresight bench soak``: how fast a worker heals, how
fast it hands over, and whether it stays flat for half an hour.

* **outages**: a private broker (its own ports and folder, the embedded broker's jars) is
  killed (SIGKILL) while a worker works through a backlog, kept down for each outage
  length, restarted. Measured from the moment the restarted broker answers: until the
  worker commits again (*recovery*), and until the whole backlog is committed.
* **shutdowns**: two workers share a steady load; one gets SIGTERM. Measured: SIGTERM to
  exit, and SIGTERM until the other worker has processed records of every partition
  (*takeover*; ``/progress`` lists the partitions a worker has processed since its last
  assignment).
* **soak**: one worker, a steady paced load for N minutes over a population small enough
  that every subscriber's state reaches its bounded size early (with 100,000 subscribers
  the states keep filling for tens of millions of events, and that growth of the store
  itself hides anything else); every few seconds its memory
  (worker + packer VmRSS) and its lag (records produced but not yet committed: whatever
  waits anywhere between the producer and the commit) are sampled. Reported: the slope of
  memory and lag (least squares over the second half, after warm-up) and the worker's
  ERROR lines.

Correctness under these faults is what the integration tests assert
(``tests/integration/test_faults.py``); these runs measure time.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from schemas.registry import INPUT_TOPICS
from streams.bench import dataset, kafka, procs
from streams.bench.report import percentile
from streams.bench.worker import Worker, free_port, proc_memory, start_worker, total
from streams.kafka_local import LocalKafka
from streams.settings import Settings

Say = Callable[[str], None]


def _wait(pred: Callable[[], bool], timeout: float, what: str, worker: Worker | None = None,
          interval: float = 0.1) -> float:
    """Seconds until ``pred()``; raises :class:`procs.LineFailed` after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if worker is not None and worker.proc.poll() is not None:
            raise procs.LineFailed(f"{what}: the worker exited with {worker.proc.returncode}; "
                                   f"log: {worker.log_tail()}")
        if pred():
            return time.monotonic() - start
        time.sleep(interval)
    tail = f"; log: {worker.log_tail()}" if worker is not None else ""
    raise procs.LineFailed(f"{what}: not within {timeout:.0f}s{tail}")


def _progress(worker: Worker) -> dict[str, Any]:
    return worker.progress(timeout=2.0) or {}


def _committed(worker: Worker) -> int:
    return int(_progress(worker).get("committed", 0))


# --- outages -------------------------------------------------------------------------------
def run_outages(base: Settings, *, outages: Sequence[float], events: int, partitions: int,
                say: Say) -> list[dict[str, Any]]:
    """One fresh run per outage length on a private broker; see the module docstring."""
    tag = "fsf" + uuid.uuid4().hex[:8]
    scratch = (base.home / "bench" / tag).resolve()
    shared = LocalKafka.from_settings(base)
    shared.fetch(quiet=True)
    broker = LocalKafka(root=scratch / "kafka", port=free_port(), controller_port=free_port(),
                        heap=base.local_heap, partitions=partitions, libs_dir=shared.libs)
    records = list(dataset.events(events, max(1000, events // 4)))
    results = []
    try:
        broker.start(quiet=True)
        on_broker = base.model_copy(update={"bootstrap_servers": broker.bootstrap})
        for k, down in enumerate(outages):
            say(f"outage {down:g}s: fresh topics, {events:,} events, kill -9 of the broker a "
                "quarter in")
            try:
                results.append(_one_outage(on_broker, broker, f"{tag}o{k}", scratch, records,
                                           down, partitions, say))
            except procs.LineFailed as exc:
                results.append({"outage_s": down, "error": str(exc)})
            finally:
                procs.kill_all()
            say(format_outage(results[-1]))
    finally:
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _one_outage(base: Settings, broker: LocalKafka, run: str, scratch: Path,
                records: list[tuple[str, bytes, bytes]], down: float, partitions: int,
                say: Say) -> dict[str, Any]:
    settings = kafka.run_settings(base, f"{run}.", partitions)
    kafka.create_topics(settings)
    kafka.produce(settings, records)
    n = len(records)
    worker = start_worker(settings, app_id=run, worker_id=f"{run}-w", home=scratch / run,
                          log_path=scratch / f"{run}.log")
    try:
        _wait(lambda: _committed(worker) > n // 4, 180, "a quarter committed", worker)
        pid = broker.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not broker.port_open(), 10, "broker gone")
        broker.pid_file.unlink(missing_ok=True)
        at_kill = _committed(worker)
        stalled_seen = False
        started = time.monotonic()
        while time.monotonic() - started < down:
            stalled_seen |= _progress(worker).get("status") == "stalled"
            time.sleep(min(1.0, down))
        t = time.monotonic()
        broker.start(quiet=True)
        restart_s = time.monotonic() - t
        before = _committed(worker)
        recovered = _wait(lambda: _committed(worker) > before, 600, "commits again", worker, 0.05)
        caught_up = _wait(lambda: _committed(worker) >= n, 600, "backlog committed", worker)
        p = _progress(worker)
        return {"outage_s": down, "broker_restart_s": round(restart_s, 2),
                "recovered_s": round(recovered, 2), "caught_up_s": round(recovered + caught_up, 2),
                "committed_at_kill": at_kill, "committed": p.get("committed"), "events": n,
                "stalled_reported": stalled_seen, "status_after": p.get("status"),
                "error_lines": _error_lines(worker.log_path)}
    finally:
        procs.stop(worker.proc, grace=20.0)
        kafka.cleanup_or_say(settings, run, say)


def _error_lines(log: Path) -> int:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return -1
    return sum(1 for ln in text.splitlines() if "[ERROR]" in ln or " ERROR " in ln
               or "[CRITICAL]" in ln)


def format_outage(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  outage {r['outage_s']:>5g}s  FAILED: {r['error']}"
    return (f"  outage {r['outage_s']:>5g}s  broker restart {r['broker_restart_s']:5.1f}s  "
            f"recovered {r['recovered_s']:5.1f}s after it answered, backlog done "
            f"{r['caught_up_s']:5.1f}s  committed {r['committed']:,}/{r['events']:,}  "
            f"stalled reported: {'yes' if r['stalled_reported'] else 'no'}  "
            f"ERROR lines {r['error_lines']}")


# --- shutdowns -----------------------------------------------------------------------------
def run_shutdowns(base: Settings, *, repeat: int, rate: float, partitions: int,
                  say: Say) -> list[dict[str, Any]]:
    """SIGTERM one of two workers under a steady load, ``repeat`` times (fresh each)."""
    results = []
    for k in range(repeat):
        tag = "fss" + uuid.uuid4().hex[:8]
        scratch = (base.home / "bench" / tag).resolve()
        settings = kafka.run_settings(base, f"{base.topic_prefix}{tag}.", partitions)
        try:
            results.append(_one_shutdown(settings, tag, scratch, rate, partitions, say))
        except procs.LineFailed as exc:
            results.append({"run": k, "error": str(exc)})
        finally:
            procs.kill_all()
            kafka.cleanup_or_say(settings, tag, say)
            shutil.rmtree(scratch, ignore_errors=True)
        say(format_shutdown(results[-1]))
    return results


def _one_shutdown(settings: Settings, tag: str, scratch: Path, rate: float, partitions: int,
                  say: Say) -> dict[str, Any]:
    kafka.create_topics(settings)
    workers = [start_worker(settings, app_id=tag, worker_id=f"{tag}-{name}",
                            home=scratch / name, log_path=scratch / f"{name}.log")
               for name in ("leaving", "staying")]
    leaving, staying = workers
    stop = threading.Event()
    feeder = threading.Thread(target=_paced_load, args=(settings, rate, stop), daemon=True)
    feeder.start()
    try:
        for w in workers:
            _wait(lambda w=w: len(_progress(w).get("partitions", [])) > 0, 120,
                  f"{w.name} processing", w)
        time.sleep(3.0)
        t0 = time.monotonic()
        leaving.proc.send_signal(signal.SIGTERM)
        takeover = None
        exit_s = None
        while time.monotonic() - t0 < 120 and (takeover is None or exit_s is None):
            if exit_s is None and leaving.proc.poll() is not None:
                exit_s = time.monotonic() - t0
            if takeover is None and len(_progress(staying).get("partitions", [])) == partitions:
                takeover = time.monotonic() - t0
            time.sleep(0.05)
        return {"exit_s": None if exit_s is None else round(exit_s, 2),
                "exit_code": leaving.proc.returncode,
                "takeover_s": None if takeover is None else round(takeover, 2), "rate": rate}
    finally:
        stop.set()
        feeder.join(10)
        for w in workers:
            procs.stop(w.proc, grace=20.0)


def _paced_load(settings: Settings, rate: float, stop: threading.Event,
                samples: list[int] | None = None, subscribers: int = 100_000) -> None:
    """Produce the bench dataset at ``rate`` events/s until ``stop``; generated as it goes."""
    producer = kafka.bench_producer(settings, **{"linger.ms": 5})
    names = {t: settings.topic(t) for t in INPUT_TOPICS}
    gen = dataset.events(10**12, subscribers)
    sent = 0
    start = time.monotonic()
    while not stop.is_set():
        due = int(rate * (time.monotonic() - start))
        while sent < due:
            topic, key, value = next(gen)
            kafka.produce_one(producer, names[topic], value, key)
            sent += 1
        producer.poll(0)
        if samples is not None:
            samples.append(sent)
        time.sleep(0.005)
    producer.flush(30)


def format_shutdown(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  shutdown FAILED: {r['error']}"
    return (f"  SIGTERM under {r['rate']:,.0f} events/s: exit after {r['exit_s']}s "
            f"(status {r['exit_code']}), the other worker processing every partition after "
            f"{r['takeover_s']}s")


def summarize(outages: list[dict[str, Any]], shutdowns: list[dict[str, Any]]) -> list[str]:
    lines = []
    rec = [r["recovered_s"] for r in outages if "recovered_s" in r]
    if rec:
        lengths = ", ".join(f"{r['outage_s']:g}s" for r in outages if "recovered_s" in r)
        lines.append(f"recovery after the broker answers: p50 {percentile(rec, 50):.1f}s, "
                     f"max {max(rec):.1f}s over {len(rec)} outages ({lengths})")
    ex = [r["exit_s"] for r in shutdowns if r.get("exit_s") is not None]
    tk = [r["takeover_s"] for r in shutdowns if r.get("takeover_s") is not None]
    if ex:
        lines.append(f"SIGTERM to exit under load: p50 {percentile(ex, 50):.1f}s, max {max(ex):.1f}s")
    if tk:
        lines.append(f"takeover by the other worker: p50 {percentile(tk, 50):.1f}s, "
                     f"max {max(tk):.1f}s")
    return lines


# --- soak ----------------------------------------------------------------------------------
def run_soak(base: Settings, *, minutes: float, rate: float, partitions: int, sample_s: float,
             subscribers: int, say: Say) -> dict[str, Any]:
    tag = "fsk" + uuid.uuid4().hex[:8]
    scratch = (base.home / "bench" / tag).resolve()
    settings = kafka.run_settings(base, f"{base.topic_prefix}{tag}.", partitions)
    kafka.create_topics(settings)
    worker = start_worker(settings, app_id=tag, worker_id=f"{tag}-w", home=scratch / "w",
                          log_path=scratch / "worker.log")
    stop = threading.Event()
    sent: list[int] = []
    feeder = threading.Thread(target=_paced_load, args=(settings, rate, stop, sent, subscribers),
                              daemon=True)
    samples: list[dict[str, Any]] = []
    try:
        _wait(lambda: worker.scrape() is not None, 120, "worker up", worker)
        feeder.start()
        t0 = time.monotonic()
        next_say = t0
        while time.monotonic() - t0 < minutes * 60:
            time.sleep(sample_s)
            if worker.proc.poll() is not None:
                raise procs.LineFailed(f"soak: the worker exited with {worker.proc.returncode}; "
                                       f"log: {worker.log_tail()}")
            samples.append(_sample(worker, time.monotonic() - t0, sent[-1] if sent else 0))
            if time.monotonic() >= next_say:
                next_say += 60
                s = samples[-1]
                say(f"  {s['t'] / 60:5.1f} min  rss {s['rss_mb']:.0f} MB  lag {s['lag']:,}  "
                    f"committed {s['committed']:,} of {s['produced']:,}")
        stop.set()
        feeder.join(30)
        result = soak_result(samples, minutes, rate, _error_lines(worker.log_path),
                             _error_samples(worker.log_path))
        return {**result, "subscribers": subscribers, "steps": base.steps}
    finally:
        stop.set()
        procs.stop(worker.proc, grace=20.0)
        kafka.cleanup_or_say(settings, tag, say)
        shutil.rmtree(scratch, ignore_errors=True)


def _sample(worker: Worker, t: float, produced: int) -> dict[str, Any]:
    series = worker.scrape(timeout=5.0) or {}
    p = _progress(worker)
    pids = [worker.proc.pid]
    children = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children")
    if children.exists():
        pids += [int(x) for x in children.read_text().split()]
    rss = sum(proc_memory(pid).get("VmRSS", 0) for pid in pids)
    committed = int(p.get("committed", 0))
    return {"t": round(t, 1), "rss_mb": rss / 2**20, "lag": max(0, produced - committed),
            "input_lag": int(total(series, "foresight_input_lag_records")),
            "packed_lag_envelopes": int(total(series, "foresight_packed_lag_envelopes")),
            "produced": produced, "committed": committed, "status": p.get("status")}


def _error_samples(log: Path, n: int = 5) -> list[str]:
    try:
        rows = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [r[:300] for r in rows if "[ERROR]" in r or " ERROR " in r][:n]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0 for fewer than two).

    >>> slope([(0, 1), (1, 3), (2, 5)])
    2.0
    """
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den


def soak_result(samples: list[dict[str, Any]], minutes: float, rate: float, errors: int,
                error_samples: list[str]) -> dict[str, Any]:
    half = samples[len(samples) // 2:]
    mem = slope([(s["t"] / 60, s["rss_mb"]) for s in half])
    lag = slope([(s["t"] / 60, s["lag"]) for s in half])
    last = samples[-1] if samples else {}
    return {"minutes": minutes, "rate": rate, "samples": samples,
            "rss_mb_first": samples[0]["rss_mb"] if samples else None,
            "rss_mb_last": last.get("rss_mb"), "rss_slope_mb_per_min": round(mem, 3),
            "lag_max": max((s["lag"] for s in samples), default=0),
            "lag_slope_per_min": round(lag, 1), "produced": last.get("produced"),
            "committed": last.get("committed"), "error_lines": errors,
            "error_examples": error_samples,
            "stalled_samples": sum(1 for s in samples if s["status"] == "stalled")}


def format_soak(r: dict[str, Any]) -> str:
    return "\n".join([
        f"soak: {r['minutes']:g} min at {r['rate']:,.0f} events/s over "
        f"{r.get('subscribers', 0):,} subscribers, steps {r.get('steps')}: produced "
        f"{r['produced']:,}, committed {r['committed']:,}",
        f"  memory (worker + packer RSS): {r['rss_mb_first']:.0f} MB -> {r['rss_mb_last']:.0f} MB, "
        f"slope over the second half {r['rss_slope_mb_per_min']:+.2f} MB/min",
        f"  lag (produced, not yet committed): max {r['lag_max']:,}, slope over the second "
        f"half {r['lag_slope_per_min']:+,.1f} records/min",
        f"  ERROR lines in the worker log: {r['error_lines']}"
        + (f" (e.g. {r['error_examples'][0]})" if r["error_examples"] else ""),
        f"  samples reporting stalled: {r['stalled_samples']} of {len(r['samples'])}",
    ])
