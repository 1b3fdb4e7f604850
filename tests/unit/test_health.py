"""The watchdog's rules, the log throttle, and the committer's way through outages, without
a broker: the decisions are plain objects fed observations and fake producers."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.committer import CommitAbandoned, CommitFailed, TransactionalCommitter
from streams.health import Observation, Watchdog
from streams.logs import RepeatFilter
from streams.unit import Commit


# --- watchdog ------------------------------------------------------------------------------
def test_no_work_is_never_a_stall() -> None:
    w = Watchdog(stall_after_s=30)
    for t in range(0, 600, 10):
        assert w.observe(Observation(float(t), progress=5)).status == "ok"


def test_work_without_progress_is_a_stall_with_the_component_that_knows_why() -> None:
    w = Watchdog(stall_after_s=30, probe=lambda: True)
    w.observe(Observation(0.0, progress=1, input_lag=10))
    assert w.observe(Observation(29.0, progress=1, input_lag=10)).status == "ok"
    v = w.observe(Observation(31.0, progress=1, input_lag=10,
                              blocked="commit: retried for 20s (timed out)"))
    assert (v.status, v.component) == ("stalled", "commit")
    assert "retried for 20s" in v.reason and v.log and "stalled for 31s" in v.log


@pytest.mark.parametrize(("obs", "component"), [
    (dict(pending=3), "commit"), (dict(packed_lag=3), "consumer"), (dict(input_lag=3), "packer"),
])
def test_the_stage_holding_the_backlog_is_named(obs: dict[str, int], component: str) -> None:
    w = Watchdog(stall_after_s=5, probe=lambda: True)
    w.observe(Observation(0.0, progress=0, **obs))
    assert w.observe(Observation(6.0, progress=0, **obs)).component == component


def test_exit_only_when_the_broker_answers_and_the_stall_lasts() -> None:
    reachable = [False]
    w = Watchdog(stall_after_s=30, exit_after_s=120, probe=lambda: reachable[0], probe_every_s=0)
    w.observe(Observation(0.0, progress=0, pending=1))
    for t in range(31, 900, 30):  # broker away for 15 minutes: waits, never exits
        v = w.observe(Observation(float(t), progress=0, pending=1))
        assert (v.status, v.component, v.exit) == ("stalled", "broker", False)
    reachable[0] = True  # the broker is back but nothing moves: 120 s more, then exit
    assert not w.observe(Observation(901.0, progress=0, pending=1)).exit
    assert not w.observe(Observation(1000.0, progress=0, pending=1)).exit
    v = w.observe(Observation(1022.0, progress=0, pending=1))
    assert v.exit and "exiting so that a supervisor restarts" in (v.log or "")


def test_stall_logged_once_a_minute_and_its_end_once() -> None:
    w = Watchdog(stall_after_s=10, exit_after_s=10_000, probe=lambda: True)
    w.observe(Observation(0.0, progress=0, pending=1))
    logs = [w.observe(Observation(float(t), progress=0, pending=1)).log for t in range(11, 200)]
    assert sum(1 for line in logs if line) == 4  # at 11 s, then every 60 s: 71, 131, 191
    end = w.observe(Observation(200.0, progress=1, pending=1))
    assert end.status == "ok" and end.log == "resumed after 200s stalled"
    assert w.observe(Observation(201.0, progress=2, pending=1)).log is None


# --- log throttle --------------------------------------------------------------------------
def _record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_repeated_client_errors_pass_once_per_interval_with_a_count() -> None:
    f = RepeatFilter(60.0)
    clock = iter([0.0, 1.0, 2.0, 61.0])
    f.throttle.clock = lambda: next(clock)
    passed = [f.filter(r) for r in (_record("aiokafka.conn", "Unable connect to node %s"),) * 4]
    assert passed == [True, False, False, True]


def test_our_own_and_quiet_records_are_never_throttled() -> None:
    f = RepeatFilter(60.0)
    assert all(f.filter(_record("streams.supervision", "stalled")) for _ in range(5))
    assert all(f.filter(_record("aiokafka.conn", "x", logging.INFO)) for _ in range(5))


def test_the_count_of_held_back_records_is_reported() -> None:
    f = RepeatFilter(60.0)
    clock = iter([0.0, 1.0, 61.0])
    f.throttle.clock = lambda: next(clock)
    records = [_record("kafka.librdkafka", "FAIL connect") for _ in range(3)]
    [f.filter(r) for r in records]
    assert "1 similar messages" in str(records[2].msg)


# --- committer through outages -------------------------------------------------------------
def _err(code: int, *, retriable: bool = False, fatal: bool = False,
         abort: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, "test", fatal=fatal, retriable=retriable,
                                     txn_requires_abort=abort))


class FakeProducer:
    """Records calls; ``fail`` maps a method to the errors it raises, one per call."""

    def __init__(self, fail: dict[str, list[KafkaException]] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or {}

    def _maybe(self, name: str) -> None:
        self.calls.append(name)
        errors = self.fail.get(name)
        if errors:
            raise errors.pop(0)

    def begin_transaction(self) -> None:
        self._maybe("begin")

    def commit_transaction(self, timeout: float) -> None:
        self._maybe("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._maybe("abort")

    def produce(self, topic: str, value: Any, key: Any = None, partition: int = -1,
                cb: Any = None) -> None:
        self.calls.append(f"produce:{topic}")

    def purge(self) -> None:
        self.calls.append("purge")

    def poll(self, timeout: float) -> int:
        return 0


def _committer(producer: FakeProducer, replacements: list[FakeProducer] | None = None,
               retries: list[str] | None = None) -> TransactionalCommitter:
    c = TransactionalCommitter({"bootstrap.servers": "127.0.0.1:1"}, "t-id", {"view": "view-cl"},
                               {"alerts": "alerts"}, max_backoff_s=0.0,
                               on_retry=(retries.append if retries is not None else None))
    c._producer = producer
    made = iter(replacements or [])
    c._new_producer = lambda deadline: next(made)  # type: ignore[method-assign]
    c._stop.wait = lambda delay: c._stop.is_set()  # type: ignore[method-assign]  # no sleeping
    return c


def _commit() -> Commit:
    return Commit({("view", 0): [("S1", b"{}")]}, [("alerts", b"k", b"v")], 1, None)


def test_a_timed_out_commit_is_resumed_not_written_twice() -> None:
    p = FakeProducer({"commit": [_err(KafkaError._TIMED_OUT, retriable=True)] * 2})
    retries: list[str] = []
    c = _committer(p, retries=retries)
    c.commit(_commit())
    assert p.calls.count("begin") == 1 and p.calls.count("commit") == 3
    assert p.calls.count("produce:alerts") == 1
    assert retries == ["timed_out", "timed_out"] and c.blocked_since is None


def test_an_abortable_transaction_is_aborted_and_written_again() -> None:
    p = FakeProducer({"commit": [_err(KafkaError._MSG_TIMED_OUT, abort=True)],
                      "abort": [_err(KafkaError._TIMED_OUT, retriable=True)]})
    _committer(p).commit(_commit())
    assert p.calls.count("begin") == 2 and p.calls.count("abort") == 2
    assert p.calls.count("produce:alerts") == 2 and p.calls[-1] == "commit"


def test_a_fenced_producer_is_replaced_and_the_commit_written_by_the_new_one() -> None:
    old = FakeProducer({"commit": [_err(KafkaError._FENCED, fatal=True)]})
    new = FakeProducer()
    c = _committer(old, [new])
    c.commit(_commit())
    assert "purge" in old.calls and c._producer is new and c.producers_replaced == 1
    assert new.calls[0] == "begin" and new.calls[-1] == "commit"


def test_errors_no_retry_fixes_fail_the_commit() -> None:
    p = FakeProducer({"commit": [_err(KafkaError.MSG_SIZE_TOO_LARGE, abort=True)]})
    with pytest.raises(CommitFailed, match="not a broker outage"):
        _committer(p).commit(_commit())


def test_abandon_ends_a_blocked_commit() -> None:
    p = FakeProducer({"commit": [_err(KafkaError._TIMED_OUT, retriable=True)] * 1000})
    c = _committer(p)
    original = p.commit_transaction

    def commit_then_stop(timeout: float) -> None:
        if p.calls.count("commit") >= 3:
            c.abandon()
        original(timeout)

    p.commit_transaction = commit_then_stop  # type: ignore[method-assign]
    with pytest.raises(CommitAbandoned):
        c.commit(_commit())
