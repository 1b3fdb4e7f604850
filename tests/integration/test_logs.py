"""A healthy worker's log on the real broker: no ERROR, no WARNING, no escape codes, in text
and in JSON, past Faust's stall monitor interval (shortened here) while idle, under traffic
and after a restart that restores its tables from their changelogs.

Faust's monitor checks every assigned partition every 2.5 s and speaks up once a partition
was fetched but not processed for ``stream_processing_timeout`` (5 min by default, 4 s
here via ``FORESIGHT_STREAM_PROCESSING_TIMEOUT_S``): the changelog partitions a worker is
assigned used to trip it. The worker's stdout is a terminal and its stderr a file, as with
``foresight worker 2>>worker.log`` in a shell: mode's formatter used to colour the file then.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import threading
import time
from pathlib import Path

import pytest

from streams.app import default_pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import (
    FORESIGHT,
    ROOT,
    Worker,
    _up,
    all_applied,
    free_port,
    produce,
    wait_until,
    workload,
)

pytestmark = pytest.mark.integration

STEPS = default_pipeline()
TABLES = tuple(s.name for s in STEPS) + system_tables(STEPS)
TIMEOUT_S = 4.0
#: long enough for Faust's monitor to pass its timeout and run two checks (every 2.5 s)
PAST_MONITOR_S = TIMEOUT_S + 2 * 2.5 + 1.0
BAD_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def _start(settings: Settings, worker_id: str, log: Path, fmt: str, *,
           tty: bool = True, level: str = "info") -> Worker:
    """A worker whose stdout is a terminal (a pty) and whose stderr goes to ``log`` (with
    ``tty=False`` both go to ``log``: ``foresight worker >>worker.log 2>&1``)."""
    port = free_port()
    master, slave = pty.openpty() if tty else (None, None)
    env = {**os.environ, "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
           "FORESIGHT_APP_ID": settings.app_id, "FORESIGHT_HOME": str(settings.home),
           "FORESIGHT_PARTITIONS": str(settings.partitions), "FORESIGHT_WEB_PORT": str(port),
           "FORESIGHT_WORKER_ID": worker_id, "KAFKA_BOOTSTRAP_SERVERS": settings.brokers,
           "FORESIGHT_LOG_LEVEL": level, "FORESIGHT_LOG_FORMAT": fmt,
           "FORESIGHT_STREAM_PROCESSING_TIMEOUT_S": str(TIMEOUT_S)}
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        proc = subprocess.Popen([FORESIGHT, "worker"], env=env,
                                stdout=slave if tty else err, stderr=err,
                                cwd=ROOT, start_new_session=True)
    if tty:
        os.close(slave)
        # read the terminal's side until the worker closes it, so a write never blocks
        threading.Thread(target=_drain, args=(master,), daemon=True).start()
    worker = Worker(proc, port, log)
    wait_until(lambda: _up(worker), 90, f"worker {worker_id} did not serve /metrics", worker)
    return worker


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:  # EIO once every holder of the terminal's other side exited
        pass
    finally:
        os.close(fd)


def _run_past_monitor(settings: Settings, worker: Worker, records: int, seed: int) -> None:
    """Idle past the monitor's timeout, then traffic until applied, then idle again."""
    time.sleep(PAST_MONITOR_S)
    sent = produce(settings, workload(records, seed=seed))
    wait_until(lambda: all_applied(settings, sent), 90, "traffic applied", worker)
    time.sleep(PAST_MONITOR_S)
    assert worker.progress()["status"] == "ok"


def test_healthy_worker_logs_no_error_no_warning_no_escape_codes(isolated: Settings) -> None:
    ensure_topics(isolated, TABLES)
    first = produce(isolated, workload(1500))
    text_log = isolated.home / "worker-text.log"
    worker = _start(isolated, "w1", text_log, "text")
    try:
        wait_until(lambda: all_applied(isolated, first), 90, "backlog applied", worker)
        _run_past_monitor(isolated, worker, 300, seed=11)
    finally:
        worker.stop()
    text = text_log.read_text(errors="replace")
    assert "\x1b" not in text, "escape codes in the log file"
    bad = [ln for ln in text.splitlines() if any(f" {lv} " in ln for lv in BAD_LEVELS)]
    assert bad == [], "\n".join(bad[:20])
    assert " INFO packer streams.packer: " in text  # the packer child logs in the same format

    # restart: tables restore from their changelogs; this time one JSON object per line
    json_log = isolated.home / "worker-json.log"
    worker = _start(isolated, "w1", json_log, "json", tty=False)
    try:
        _run_past_monitor(isolated, worker, 300, seed=12)
    finally:
        worker.stop()
    raw = json_log.read_text(errors="replace")
    assert "\x1b" not in raw
    docs = []
    for line in raw.splitlines():
        doc = json.loads(line)  # every line is one JSON object, tracebacks included
        assert {"time", "level", "logger", "message", "worker", "component"} <= doc.keys()
        assert doc["time"].endswith("Z")
        docs.append(doc)
    bad_docs = [d for d in docs if d["level"] in BAD_LEVELS]
    assert bad_docs == [], bad_docs[:20]
    assert {d["component"] for d in docs} == {"worker", "packer"}
    assert {d["worker"] for d in docs} == {"w1"}
    assert any(d["logger"] == "streams.store" and d["message"].startswith("restored ")
               for d in docs), "no changelog restore was logged"

    # the default level (warning) and no terminal at all, as a service manager runs it:
    # Faust's start-up spinner wrote cursor codes (ESC[?25l ESC[?25h) into such a file
    quiet_log = isolated.home / "worker-quiet.log"
    worker = _start(isolated, "w1", quiet_log, "text", tty=False, level="warning")
    worker.stop()
    quiet = quiet_log.read_text(errors="replace")
    assert "\x1b" not in quiet, repr(quiet[:200])
