"""Where the worker spends its time: a summary of py-spy's collapsed stacks.

``foresight bench ingest --profile FILE`` samples one extra worker run with py-spy
(``record --threads --format raw``; only threads that are running are sampled) and writes
this summary: CPU share per thread (Faust's event loop, the packer, the committer's
threads, librdkafka callbacks) and the top functions by self and by inclusive samples. The
profiled run's rate is reported apart from the table because sampling slows the target.

py-spy 0.4.3 cannot attach to this interpreter build ("Failed to find python version");
0.4.2 works.
"""

from __future__ import annotations

import re
from collections import Counter

#: Frames every sample of a thread passes through: they say nothing about the cost.
_PLUMBING = frozenset({
    "_bootstrap", "_bootstrap_inner", "run", "run_forever", "run_until_complete", "_run_once",
    "_run", "<module>", "main", "execute_from_commandline", "cmd_worker", "run_worker", "worker",
})
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``; other frames unchanged."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{m['func']} ({m['file'].rsplit('/', 1)[-1]})"


def _thread_name(head: str) -> str:
    """``thread (1234): MainThread`` -> ``MainThread``; thread ids differ between runs."""
    return head.split(": ", 1)[1] if ": " in head else head


def parse_collapsed(text: str) -> list[tuple[str, list[str], int]]:
    """py-spy raw lines to ``(thread, frames root-first, samples)``.

    >>> parse_collapsed("thread (7): MainThread;main (a.py:1);f (b/c.py:9) 3\\n")
    [('MainThread', ['main (a.py)', 'f (c.py)'], 3)]
    """
    out = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        out.append((_thread_name(parts[0]), [_frame_name(f) for f in parts[1:]], int(count)))
    return out


def summarize_collapsed(text: str, top: int = 20) -> str:
    """Thread shares and the top functions, as plain text for a report."""
    stacks = parse_collapsed(text)
    total = sum(n for _, _, n in stacks)
    if not total:
        return "no samples (was the worker busy while py-spy ran?)\n"
    threads: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for thread, frames, n in stacks:
        threads[re.sub(r"[-_]?\d+$", "", thread)] += n
        if frames:
            self_time[frames[-1]] += n
        for f in set(frames):
            if f.split(" (", 1)[0] not in _PLUMBING:
                inclusive[f] += n

    def block(title: str, counts: Counter[str]) -> list[str]:
        rows = [title]
        rows += [f"  {100 * n / total:5.1f}%  {n:7d}  {name}" for name, n in counts.most_common(top)]
        return rows

    lines = [f"{total} samples of running threads"]
    lines += block("by thread:", threads)
    lines += block("top functions, self:", self_time)
    lines += block("top functions, inclusive:", inclusive)
    return "\n".join(lines) + "\n"
