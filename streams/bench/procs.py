"""Child processes for benchmark lines: own process group, progress, timeout, clean kill.

Each line runs in its own process so that no two share a GIL and a crash or a hang of one
(Faust can hang on shutdown) never costs the others their results. Children talk back on
two channels: ``@progress N`` lines on stderr (relayed to the user and kept for the error
message if the line times out) and one ``@result {json}`` line on stdout. Every child is
started in its own session, so the whole tree (Faust threads, librdkafka) dies with one
``killpg``; :data:`LIVE` lets Ctrl-C kill whatever is still running.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

RESULT = "@result "
PROGRESS = "@progress "

#: Children not yet reaped; ``kill_all`` ends them on Ctrl-C or errors.
LIVE: set[subprocess.Popen[Any]] = set()


class LineFailed(Exception):
    """A line did not produce its result; the message says which, why and what it saw."""


def emit_progress(n: int) -> None:
    """Child side: report how many events were seen so far."""
    print(f"{PROGRESS}{n}", file=sys.stderr, flush=True)


def emit_result(result: dict[str, Any]) -> None:
    """Child side: hand the result to the parent (one line on stdout)."""
    print(RESULT + json.dumps(result), flush=True)


def spawn(argv: Sequence[str], *, env: dict[str, str] | None = None,
          stdout: IO[Any] | int | None = subprocess.PIPE,
          stderr: IO[Any] | int | None = subprocess.PIPE) -> subprocess.Popen[Any]:
    """Start ``argv`` in a new session (its own process group) and track it in :data:`LIVE`."""
    proc = subprocess.Popen(list(argv), env=env, stdout=stdout, stderr=stderr,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    LIVE.add(proc)
    return proc


def stop(proc: subprocess.Popen[Any], grace: float = 15.0) -> int | None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds; reap it."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # unkillable: give up
                proc.wait(10)
    else:
        _signal_group(proc, signal.SIGKILL)  # stray grandchildren of an exited child
    LIVE.discard(proc)
    return proc.returncode


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def kill_all() -> None:
    """End every child still running (Ctrl-C, errors)."""
    for proc in list(LIVE):
        stop(proc, grace=3.0)


class Child:
    """A line child: collects its progress, its result and the tail of its stderr."""

    def __init__(self, name: str, argv: Sequence[str], *, expected: int,
                 on_progress: Callable[[str, int, int], None] | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.name = name
        self.expected = expected
        self.on_progress = on_progress
        self.progress = 0
        self.result: dict[str, Any] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self._log = log_path.open("w") if log_path else None
        self.proc = spawn(argv, env=env)
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            at = line.find(RESULT)  # Faust may prefix terminal control codes
            if at >= 0:
                self.result = json.loads(line[at + len(RESULT):])
            else:
                self._keep(line)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            at = line.find(PROGRESS)
            if at >= 0:
                self.progress = int(line[at + len(PROGRESS):])
                if self.on_progress is not None:
                    self.on_progress(self.name, self.progress, self.expected)
            else:
                self._keep(line)

    def _keep(self, line: str) -> None:
        self.tail.append(line)
        if self._log is not None:
            self._log.write(line + "\n")

    def wait(self, timeout: float, grace: float = 20.0) -> dict[str, Any]:
        """The child's result; raises :class:`LineFailed` on timeout or an early exit.

        The result counts as soon as it is printed: a child that then hangs while shutting
        down (Faust sometimes does) is given ``grace`` seconds to exit, then killed.
        """
        deadline = time.monotonic() + timeout
        try:
            while self.result is None:
                if self.proc.poll() is not None:
                    for t in self._threads:
                        t.join(2)
                    if self.result is not None:
                        break
                    raise LineFailed(
                        f"{self.name}: exited with code {self.proc.returncode} after seeing "
                        f"{self.progress:,} of {self.expected:,} events; last output: {self.last_output()}")
                if time.monotonic() > deadline:
                    raise LineFailed(
                        f"{self.name}: timed out after {timeout:.0f} s having seen {self.progress:,} "
                        f"of {self.expected:,} events; last output: {self.last_output()}")
                time.sleep(0.05)
            return self.result
        finally:
            if self.result is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(grace)  # let it leave its consumer group cleanly
            stop(self.proc, grace=5.0)
            if self._log is not None:
                self._log.close()

    def last_output(self, lines: int = 3) -> str:
        useful = [ln.strip() for ln in self.tail if ln.strip()]
        return " | ".join(useful[-lines:]) or "(none)"
