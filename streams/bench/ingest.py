"""``foresight bench ingest``: every line over the same pre-filled topics, then latency.

The dataset is produced once per run to fresh topics; each line (each repetition) reads
them from the beginning with a fresh group in its own process. Repetitions go round-robin
over the lines so slow drift of the machine's load spreads over all lines instead of
penalising whichever ran last. A failing line is reported as failed with its reason and
never costs the other lines their results; Ctrl-C or an error kills every child and the
run's topics and groups are deleted unless ``--keep``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.registry import CALL_EVENTS, SUBSCRIBER_STATE
from streams.bench import dataset, kafka, procs, report, worker
from streams.bench.lines import LINES
from streams.bench.report import LineResult
from streams.settings import Settings
from streams.topics import PACKED

FORESIGHT_LINES = ("foresight-ingest", "foresight", "foresight-x2", "foresight-foresee")
ALL_LINES = (*LINES, "foresight-ingest", "foresight")
#: what each Foresight line runs: ingestion only (unified view + call features), or the
#: full pipeline with the cross-system audit, so the audit's cost is a ratio of one run
LINE_ENV = {"foresight-ingest": {"FORESIGHT_STEPS": "unified-view,call-features"},
            # the full pipeline + the Foresee models (issue 19): their cost is a ratio to
            # "foresight" of the same run (opt-in: --lines foresight,foresight-foresee)
            "foresight-foresee": {"FORESIGHT_STEPS": "unified-view,call-features,audit,foresee"}}


@dataclass(frozen=True)
class IngestOptions:
    """What ``foresight bench ingest`` was asked to do."""

    events: int = 200_000
    partitions: int = 4
    subscribers: int = 100_000
    repeat: int = 1
    lines: tuple[str, ...] = ALL_LINES
    latency_seconds: float = 20.0
    latency_fraction: float = 0.5
    line_timeout: float | None = None
    seed: int = dataset.DEFAULT_SEED
    keep: bool = False
    json_out: Path | None = None
    profile: Path | None = None
    profile_line: str = "foresight"
    poll_ms: int = 20

    @property
    def timeout(self) -> float:
        """Per line: generous enough for Faust with a table on a slow day (>= 500 events/s)."""
        return self.line_timeout or 120.0 + self.events / 500.0


def resolve_lines(spec: str, workers: int) -> tuple[str, ...]:
    """``all`` or a comma list, validated; ``--workers 2`` adds ``foresight-x2``.

    >>> resolve_lines("all", 2)[-2:]
    ('foresight', 'foresight-x2')
    >>> resolve_lines("foresight,aiokafka-raw", 1)
    ('foresight', 'aiokafka-raw')
    """
    known = (*ALL_LINES, "foresight-x2", "foresight-foresee")
    chosen = list(ALL_LINES) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise ValueError(f"unknown lines {unknown}: choose from {', '.join(known)} or 'all'")
    if workers >= 2 and "foresight-x2" not in chosen:
        chosen.append("foresight-x2")
    return tuple(dict.fromkeys(chosen))


def say(msg: str) -> None:
    """Progress goes to stderr; stdout carries only the report."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class _Progress:
    """Throttled ``[line] n/N events`` messages (every 2 s per line, and at the end)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, line: str, n: int, expected: int) -> None:
        now = time.monotonic()
        if n >= expected or now - self._last.get(line, 0.0) >= 2.0:
            self._last[line] = now
            say(f"{line}: {n:,}/{expected:,} events")


def run_ingest(base: Settings, opts: IngestOptions) -> int:
    """Run the whole benchmark; print the report; 0 if every line succeeded."""
    tag = "fsb" + uuid.uuid4().hex[:8]
    settings = kafka.run_settings(base, f"{base.topic_prefix}{tag}.", opts.partitions)
    scratch = (base.home / "bench" / tag).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    info = report.machine_info(settings.brokers, _kafka_version(base))
    say(f"run {tag}: {opts.events:,} events over {opts.subscribers:,} subscribers, "
        f"{opts.partitions} partitions, lines {', '.join(opts.lines)} x{opts.repeat}")
    results: list[LineResult] = []
    latency: dict[str, Any] | None = None
    profiled: LineResult | None = None
    try:
        kafka.create_topics(settings)
        t = time.monotonic()
        records = list(dataset.events(opts.events, opts.subscribers, opts.seed))
        say(f"generated {len(records):,} events in {time.monotonic() - t:.1f} s "
            f"(avg {statistics.mean(len(v) for _, _, v in records):.0f} B)")
        t = time.monotonic()
        kafka.produce(settings, records, lambda n: say(f"produced {n:,}"))
        say(f"produced {len(records):,} events once in {time.monotonic() - t:.1f} s")
        progress = _Progress()
        for k in range(opts.repeat):
            for line in opts.lines:
                say(f"{line}: run {k + 1}/{opts.repeat}")
                r = _run_line(settings, tag, line, k, opts, scratch, progress)
                say(f"{line}: " + (f"{r.rate:,.0f} events/s" if r.ok else f"FAILED: {r.error}"))
                results.append(r)
        if opts.profile is not None:
            profiled = _run_line(settings, tag, opts.profile_line, 99, opts, scratch, progress,
                                 profile_to=opts.profile)
            say(f"profile of one worker run written to {opts.profile}")
        latency = _latency(base, tag, opts, records, results, scratch)
    except KeyboardInterrupt:
        say("interrupted: stopping children and cleaning up")
        raise
    finally:
        procs.kill_all()
        if not opts.keep:
            kafka.cleanup_or_say(settings, tag, say)
        else:
            say(f"kept topics with prefix {settings.topic_prefix} (and {tag}L.)")
        shutil.rmtree(scratch, ignore_errors=True)
    summaries = report.summarize(results)
    print(render(summaries, results, latency, profiled, info, opts))
    if opts.json_out is not None:
        doc = {"run": tag, "params": _params(opts), "machine": info,
               "results": [r.to_json() for r in results],
               "summary": [s.__dict__ for s in summaries], "latency": latency,
               "profiled_run": profiled.to_json() if profiled else None}
        opts.json_out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        say(f"raw results written to {opts.json_out}")
    return 0 if results and all(r.ok for r in results) else 1


def _run_line(settings: Settings, tag: str, line: str, k: int, opts: IngestOptions,
              scratch: Path, progress: _Progress, profile_to: Path | None = None) -> LineResult:
    try:
        if line in FORESIGHT_LINES:
            kafka.truncate(settings, settings.topic(PACKED), settings.partitions)
            return worker.run_line(
                settings, line=line, app_id=f"{tag}-{line}-{k}", events=opts.events,
                workers=2 if line == "foresight-x2" else 1, scratch=scratch,
                timeout=opts.timeout, progress=progress, profile_to=profile_to,
                poll_s=opts.poll_ms / 1000.0, env_extra=LINE_ENV.get(line))
        workdir = scratch / f"{line}-{k}"
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = {"line": line, "bootstrap": settings.brokers, "events": opts.events,
               "topics": [settings.topic(SUBSCRIBER_STATE), settings.topic(CALL_EVENTS)],
               "group": f"{tag}-{line}-{k}", "app_id": f"{tag}-{line}-{k}",
               "workdir": str(workdir), "partitions": settings.partitions}
        child = procs.Child(line, [sys.executable, "-m", "streams.bench.lines", json.dumps(cfg)],
                            expected=opts.events, on_progress=progress,
                            log_path=scratch / f"{line}-{k}.log")
        out = child.wait(opts.timeout)
        extra = {k2: v for k2, v in out.items() if k2 not in ("events", "seconds", "rate", "rss_bytes")}
        ok = out["events"] == opts.events
        return LineResult(line=line, ok=ok, events=out["events"], seconds=out["seconds"],
                          rate=out["rate"], rss_bytes=out.get("rss_bytes"), extra=extra,
                          error=None if ok else f"{line}: saw {out['events']:,} events, "
                          f"expected exactly {opts.events:,}")
    except procs.LineFailed as exc:
        return LineResult(line=line, ok=False, error=str(exc))
    except Exception as exc:
        return LineResult(line=line, ok=False, error=f"{line}: {exc!r}")


def _latency(base: Settings, tag: str, opts: IngestOptions, records: list[Any],
             results: list[LineResult], scratch: Path) -> dict[str, Any] | None:
    if opts.latency_seconds <= 0 or "foresight" not in opts.lines:
        return None
    rates = [r.rate for r in results if r.line == "foresight" and r.ok]
    if not rates:
        return {"error": "the foresight line failed, so there is no rate to halve"}
    from streams.bench.latency import run_latency

    try:
        result = run_latency(base, prefix=f"{base.topic_prefix}{tag}L.", app_id=f"{tag}-lat",
                             partitions=opts.partitions,
                             rate=statistics.median(rates) * opts.latency_fraction,
                             seconds=opts.latency_seconds, records=records, scratch=scratch, say=say)
        result["load"] = opts.latency_fraction
        return result
    except procs.LineFailed as exc:
        return {"error": str(exc)}
    except Exception as exc:
        return {"error": repr(exc)}


def render(summaries: list[report.Summary], results: list[LineResult],
           latency: dict[str, Any] | None, profiled: LineResult | None,
           info: dict[str, Any], opts: IngestOptions) -> str:
    """The printed report: table, latency, what the worker did, machine."""
    out = ["", f"foresight bench ingest: {opts.events:,} events (~{_avg_size(opts)} B JSON), "
           f"{opts.subscribers:,} subscribers, {opts.partitions} partitions, "
           f"{opts.repeat} run(s) per line; rate = events / (last - first event seen)", "",
           report.format_table(summaries), "", report.format_latency(latency)]
    for r in results:
        if r.line == "foresight" and r.ok:
            out.append(describe_worker(r))
            break
    out.extend(audit_cost(summaries, results))
    if profiled is not None:
        out.append(f"profiled {opts.profile_line} run (py-spy attached, slower): "
                   + (f"{profiled.rate:,.0f} events/s" if profiled.ok else f"FAILED: {profiled.error}")
                   + f"; summary in {opts.profile}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        out.append(f"failed: {r.error}")
    out += ["", report.format_machine(info)]
    return "\n".join(out)


def audit_cost(summaries: list[report.Summary], results: list[LineResult] = ()) -> list[str]:
    """The audit's cost per event as a ratio to ingestion only, from the same run.

    By elapsed time, and by the worker's own CPU time (worker and packer processes; median
    of the runs), which leaves out what the broker on the same cores spends on the audit's
    extra records.

    >>> from streams.bench.report import Summary
    >>> def s(line, rate):
    ...     return Summary(line, 1, 1, 100, 1.0, rate, rate, rate, None, [])
    >>> def r(line, us):
    ...     return LineResult(line, True, extra={"cpu_us_per_event": {"workers": us}})
    >>> for row in audit_cost([s("foresight-ingest", 30_000.0), s("foresight", 24_000.0)],
    ...                       [r("foresight-ingest", 30.0), r("foresight", 39.0)]):
    ...     print(row)
    audit cost: 1.25x the per-event cost of ingestion only (foresight-ingest 30,000/s, foresight 24,000/s)
    audit cost in worker CPU: 1.30x (foresight-ingest 30.0 µs/event, foresight 39.0 µs/event)
    """
    rates = {s.line: s.rate for s in summaries}
    ingest, full = rates.get("foresight-ingest"), rates.get("foresight")
    if not ingest or not full:
        return []
    out = [f"audit cost: {ingest / full:.2f}x the per-event cost of ingestion only "
           f"(foresight-ingest {ingest:,.0f}/s, foresight {full:,.0f}/s)"]
    cpu = {line: [r.extra["cpu_us_per_event"]["workers"] for r in results
                  if r.line == line and r.ok and "workers" in r.extra.get("cpu_us_per_event", {})]
           for line in ("foresight-ingest", "foresight")}
    if all(cpu.values()):
        a, b = (statistics.median(cpu[k]) for k in ("foresight-ingest", "foresight"))
        out.append(f"audit cost in worker CPU: {b / a:.2f}x (foresight-ingest {a:.1f} µs/event, "
                   f"foresight {b:.1f} µs/event)")
    return out


def describe_worker(r: LineResult) -> str:
    """Where the foresight line's time went, and how much the record cache saved."""
    x = r.extra
    tl = x.get("timeline_s", {})
    mb = [v / 2**20 for v in x.get("vm_rss_bytes", []) if v]
    hwm = [v / 2**20 for v in x.get("vm_hwm_bytes", []) if v]
    steady = x.get("steady_rate")
    coal = x.get("coalescing_ratio")
    return (f"{r.line}: packer done at {tl.get('packer_all', float('nan')):.2f} s, first commit at "
            f"{tl.get('commit_first', float('nan')):.2f} s, all {r.events:,} committed at "
            f"{tl.get('commit_all', float('nan')):.2f} s (steady {steady or 0:,.0f} events/s after the "
            f"first commit); {x.get('commits')} transactions, {x.get('envelopes')} envelopes; "
            f"{sum(x.get('changelog_records', {}).values()):,.0f} changelog records for "
            f"{sum(x.get('state_updates', {}).values()):,.0f} state updates (coalescing "
            f"{coal or 0:.2f}x); worker RSS {' + '.join(f'{v:.0f}' for v in mb)} MB at the end, "
            f"peak {' + '.join(f'{v:.0f}' for v in hwm)} MB"
            + "".join(f"; {part} CPU {us:.1f} µs/event"
                      for part, us in x.get("cpu_us_per_event", {}).items()))


def _avg_size(opts: IngestOptions) -> int:
    sample = list(dataset.events(min(opts.events, 2000), opts.subscribers, opts.seed))
    return round(statistics.mean(len(v) for _, _, v in sample)) if sample else 0


def _params(opts: IngestOptions) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.__dict__.items()}


def _kafka_version(settings: Settings) -> str | None:
    """The embedded broker's version when that is the broker in use."""
    from streams.kafka_local import KAFKA_VERSION

    embedded = f"127.0.0.1:{settings.local_port}"
    return f"{KAFKA_VERSION} (embedded)" if settings.brokers == embedded else None
