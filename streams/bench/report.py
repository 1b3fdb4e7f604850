"""Results, statistics and the printed table: pure functions, unit-tested without Kafka.

A figure without its baseline is meaningless on shared machines (the same script gave 3-4x
different absolute rates two days apart while ratios held), so the table puts every line
beside ``aiokafka-raw`` (what the Python client can read) and ``quix-state`` (a mainstream
stateful Python stream processor), and the machine facts and load under the figures.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BASELINES = ("aiokafka-raw", "quix-state")


@dataclass
class LineResult:
    """One run of one line. ``rate`` is events / seconds from first to last event."""

    line: str
    ok: bool
    events: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    rss_bytes: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Summary:
    """All runs of one line: the median and the spread of the successful ones."""

    line: str
    runs: int
    ok_runs: int
    events: int | None
    seconds: float | None
    rate: float | None
    rate_min: float | None
    rate_max: float | None
    rss_bytes: int | None
    errors: list[str]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks (numpy's default).

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([10], 99)
    10.0
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def ratio(rate: float | None, base: float | None) -> float | None:
    """``rate / base``, or None when either is unknown or the base is zero.

    >>> ratio(50.0, 200.0), ratio(1.0, None), ratio(1.0, 0.0)
    (0.25, None, None)
    """
    if rate is None or not base:
        return None
    return rate / base


def summarize(results: Iterable[LineResult]) -> list[Summary]:
    """Group runs by line (first-seen order) into medians and min-max of the good runs."""
    by_line: dict[str, list[LineResult]] = {}
    for r in results:
        by_line.setdefault(r.line, []).append(r)
    out = []
    for line, runs in by_line.items():
        good = [r for r in runs if r.ok]
        rates = [r.rate for r in good]
        rss = [r.rss_bytes for r in good if r.rss_bytes is not None]
        out.append(Summary(
            line=line, runs=len(runs), ok_runs=len(good),
            events=int(statistics.median(r.events for r in good)) if good else None,
            seconds=statistics.median(r.seconds for r in good) if good else None,
            rate=statistics.median(rates) if rates else None,
            rate_min=min(rates) if rates else None,
            rate_max=max(rates) if rates else None,
            rss_bytes=max(rss) if rss else None,
            errors=[r.error or "failed" for r in runs if not r.ok],
        ))
    return out


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _ratio_text(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}x" if v >= 0.995 else f"{v:.3f}x"


def format_table(summaries: Sequence[Summary]) -> str:
    """The table a reader understands: rates, ratios against both baselines, memory.

    >>> s = [Summary("aiokafka-raw", 1, 1, 100, 0.5, 200.0, 200.0, 200.0, 50 * 2**20, []),
    ...      Summary("x", 1, 1, 100, 1.0, 100.0, 100.0, 100.0, None, [])]
    >>> print(format_table(s))  # doctest: +NORMALIZE_WHITESPACE
    line          events seconds events/s vs aiokafka-raw vs quix-state RSS MB
    aiokafka-raw     100    0.50      200           1.00x            -     50
    x                100    1.00      100          0.500x            -      -
    """
    rates = {s.line: s.rate for s in summaries}
    spread = any(s.ok_runs > 1 for s in summaries)
    header = ["line", "events", "seconds", "events/s" + (" median (min-max)" if spread else ""),
              "vs aiokafka-raw", "vs quix-state", "RSS MB"]
    rows = []
    for s in summaries:
        if s.ok_runs == 0:
            reason = s.errors[0] if s.errors else "failed"
            rows.append([s.line, "FAILED", "-", reason.splitlines()[0][:90], "", "", ""])
            continue
        rate = _num(s.rate)
        if spread and s.ok_runs > 1:
            rate += f" ({_num(s.rate_min)}-{_num(s.rate_max)})"
        if s.ok_runs < s.runs:
            rate += f" [{s.runs - s.ok_runs} of {s.runs} runs failed]"
        rows.append([
            s.line, _num(s.events), _num(s.seconds, "{:.2f}"), rate,
            _ratio_text(ratio(s.rate, rates.get(BASELINES[0]))),
            _ratio_text(ratio(s.rate, rates.get(BASELINES[1]))),
            _num(None if s.rss_bytes is None else s.rss_bytes / 2**20),
        ])
    measured = [r for r in rows if r[1] != "FAILED"]
    widths = [max(len(str(r[i])) for r in [header, *measured]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        if r[1] == "FAILED":
            lines.append(f"{r[0]:<{widths[0]}} FAILED: {r[3]}")
            continue
        cells = [f"{r[0]:<{widths[0]}}"] + [f"{c:>{w}}" for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines)


def format_latency(lat: dict[str, Any] | None) -> str:
    """One line for the end-to-end latency phase.

    >>> format_latency({"count": 10, "expected": 10, "rate": 5000, "p50_ms": 41.0,
    ...                 "p99_ms": 80.5, "max_ms": 90.0})
    'latency at 5,000 events/s (half load): 10/10 dead letters, p50 41 ms, p99 80 ms, max 90 ms'
    """
    if not lat:
        return "latency: not measured"
    if lat.get("error"):
        return f"latency: FAILED: {lat['error']}"
    load = lat.get("load") or 0.5
    share = "half load" if load == 0.5 else f"{load:.2f} of the measured rate"
    text = (f"latency at {lat['rate']:,.0f} events/s ({share}): {lat['count']}/{lat['expected']} "
            f"dead letters, p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, "
            f"max {lat['max_ms']:.0f} ms")
    if "p50_first_quarter_ms" in lat:
        text += (f"; p50 in the first/last quarter {lat['p50_first_quarter_ms']:.0f}/"
                 f"{lat['p50_last_quarter_ms']:.0f} ms, {lat.get('avg_envelope_events') or 0:.0f} "
                 f"events per envelope, {lat.get('commits', 0)} commits")
    return text


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(broker: str, kafka_version: str | None) -> dict[str, Any]:
    """Facts that decide the absolute figures: CPU, cores, load, software versions, date."""
    cpu = platform.processor() or platform.machine()
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import confluent_kafka

        librdkafka = confluent_kafka.libversion()[0]
    except ImportError:  # pragma: no cover - a hard dependency
        librdkafka = "not installed"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "kafka": kafka_version or "unknown (external broker)",
        "broker": broker,
        "confluent_kafka": _version("confluent-kafka"),
        "librdkafka": librdkafka,
        "aiokafka": _version("aiokafka"),
        "faust_streaming": _version("faust-streaming"),
        "quixstreams": _version("quixstreams"),
        "orjson": _version("orjson"),
    }


def git_commit() -> str:
    """The code measured: HEAD of the checkout, ``+dirty`` when tracked files differ."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def format_machine(info: dict[str, Any]) -> str:
    """Machine facts in two readable lines."""
    return (f"machine: {info['cpu']}, {info['cores']} cores, load {info['load_avg_1m']:.2f} at start; "
            f"Python {info['python']}, Apache Kafka {info['kafka']} at {info['broker']}\n"
            f"clients: confluent-kafka {info['confluent_kafka']} (librdkafka {info['librdkafka']}), "
            f"aiokafka {info['aiokafka']}, faust-streaming {info['faust_streaming']}, "
            f"quixstreams {info['quixstreams']}, orjson {info['orjson']}; date {info['date']}, "
            f"code {info.get('commit', 'unknown')}")
