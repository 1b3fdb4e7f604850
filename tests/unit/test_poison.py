"""No record can stop a worker: oversize values and keys, missing and wrong keys, absurd
event times all become dead letters that fit in a Kafka message, and none moves a clock."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.core import Result
from schemas.outputs import DeadLetter
from streams.decoding import Rejected, TimeBounds, dead_letter, decode_record
from streams.envelope import HEAD_BYTES, KEY_LIMIT_BYTES, Oversize, pack, unpack
from streams.packer import Packer
from streams.unit import BatchUnit, DictStore, system_tables
from tests.unit.helpers import T0, event

SS = "subscriber-state"
MB = 1_000_000
BOUNDS = TimeBounds.of(3600, datetime(2000, 1, 1, tzinfo=UTC))


class Grace:
    """A timed step that only records the clock it saw."""

    name = "grace"
    topics = frozenset({SS})
    reads = ()

    def key_of(self, ev: Any) -> str:
        return ev.subscriber_id

    def apply(self, state, ev, ctx, reads) -> Result:
        return Result({"seen": ctx.event_ms})

    def on_timer(self, state, key, now_ms, ctx, reads) -> Result:
        return Result(state)


def make_unit() -> tuple[BatchUnit, dict[str, DictStore]]:
    steps = [Grace()]
    stores = {n: DictStore() for n in ["grace", *system_tables(steps)]}
    return BatchUnit(steps, stores, worker_id="w", time_bounds=BOUNDS), stores


def dead_letters(unit: BatchUnit) -> list[DeadLetter]:
    commit = unit.snapshot()
    assert commit is not None
    unit.complete(commit)
    out = [DeadLetter.model_validate_json(v) for t, _, v in commit.outputs if t == "dead-letters"]
    for _, _, v in commit.outputs:
        assert len(v) < 1_000_000, "every output fits in a default-sized Kafka message"
    return out


def test_an_oversize_stub_round_trips_through_an_envelope() -> None:
    big = b"x" * (2 * MB)
    stub = Oversize.of(b"S00000001", big, max_value_bytes=64 * 1024)
    data = pack(SS, 2, [5, 6], [1, 2], [stub, b"S00000001"], [b"", b"{}"])
    assert len(data) < 10_000
    env = unpack(data)
    (_, _, k1, v1), (_, _, k2, v2) = env.records()
    assert k1 == stub and v1 == big[:HEAD_BYTES]
    assert (k2, v2) == (b"S00000001", b"{}")


def test_oversize_values_and_keys_become_dead_letters_that_fit() -> None:
    unit, _ = make_unit()
    valid = orjson.dumps(event(SS, "activated"))
    huge_value = b'{"padding": "' + b"y" * (MB - 20) + b'"}'
    huge_key = b"K" * (2 * KEY_LIMIT_BYTES)
    stubs = [Oversize.of(b"S00000001", huge_value, max_value_bytes=64 * 1024),
             Oversize.of(huge_key, valid, max_value_bytes=64 * 1024)]
    unit.process_envelope(pack(SS, 0, [0, 1, 2], [1, 1, 1], [*stubs, b"S00000001"],
                               [b"", b"", valid]))
    too_big, bad_key = dead_letters(unit)
    assert (too_big.reason, too_big.value_bytes, too_big.value_truncated) == \
        ("oversize", len(huge_value), True)
    assert too_big.value_sha256 == hashlib.sha256(huge_value).hexdigest()
    assert base64.b64decode(too_big.value_b64) == huge_value[:HEAD_BYTES]
    assert (bad_key.reason, bad_key.key_truncated, bad_key.value_truncated) == ("key_mismatch", True, False)
    assert base64.b64decode(bad_key.value_b64) == valid  # small enough to keep whole
    assert unit.read_state("grace", 0, "S00000001") is not None, "the valid record after them"


def test_per_event_path_truncates_the_copy_of_an_oversize_record() -> None:
    value = b"z" * MB
    rejected = decode_record(SS, b"S00000001", value, 64 * 1024)
    assert isinstance(rejected, Rejected) and rejected.reason == "oversize"
    dl = dead_letter(rejected, topic=SS, partition=0, offset=1, timestamp_ms=1, key=b"S00000001",
                     value=value, worker="w", now=datetime.now(UTC), max_copy_bytes=64 * 1024)
    assert dl.value_truncated and dl.value_bytes == MB
    assert len(dl.model_dump_json()) < 10_000


def test_keys_are_checked_against_the_payload() -> None:
    unit, _ = make_unit()
    ev = event(SS, "activated", sid="S00000007")
    raw = orjson.dumps(ev)
    unit.process_envelope(pack(SS, 1, [0, 1, 2], [1, 1, 1], [None, b"S00000008", b"S00000007"],
                               [raw, raw, raw]))
    missing, wrong = dead_letters(unit)
    assert missing.reason == "missing_key" and "S00000007" in missing.error
    assert wrong.reason == "key_mismatch" and base64.b64decode(wrong.key_b64) == b"S00000008"
    assert unit.read_state("grace", 1, "S00000007") is not None


def test_events_out_of_time_bounds_are_dead_letters_and_move_no_clock() -> None:
    unit, _ = make_unit()
    at_t0 = orjson.dumps(event(SS, "activated"))
    future = orjson.dumps({**event(SS, "activated", eid="f"), "event_time": "2999-01-01T00:00:00+00:00"})
    ancient = orjson.dumps({**event(SS, "activated", eid="a"), "event_time": "1990-01-01T00:00:00+00:00"})
    k = b"S00000001"
    unit.process_envelope(pack(SS, 0, [0, 1, 2], [1, 1, 1], [k, k, k], [at_t0, future, ancient]))
    dls = dead_letters(unit)
    assert [d.reason for d in dls] == ["event_time_out_of_bounds"] * 2
    assert "ahead of the worker's clock" in dls[0].error and "floor" in dls[1].error
    assert unit.clock_of(0) == int(T0.timestamp() * 1000)


class _Msg:
    def __init__(self, offset: int, key: bytes | None, value: bytes) -> None:
        self._o, self._k, self._v = offset, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "in"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000 + self._o)


class _Producer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.callbacks: list[Any] = []

    def produce(self, topic: str, data: bytes, **kw: Any) -> None:
        self.sent.append(data)
        self.callbacks.append(kw.get("on_delivery"))


def _packer() -> tuple[Packer, _Producer]:
    packer = Packer({"bootstrap.servers": "127.0.0.1:1"}, group_id="g", inputs=["in"],
                    logical={"in": SS}, packed_topic="packed", max_events=1000,
                    max_bytes=100_000, linger_ms=10_000, max_record_bytes=64 * 1024)
    fake = _Producer()
    packer._producer = fake  # type: ignore[assignment]
    return packer, fake


def test_no_input_offset_is_committed_past_an_envelope_that_was_not_delivered() -> None:
    packer, fake = _packer()
    for i in range(3):  # three envelopes of one partition
        packer._add([_Msg(i, b"S00000001", b"{}")])
        packer._emit(list(packer._open))
    ok, failed, later = fake.callbacks
    ok(None, None)
    failed("MSG_TIMED_OUT", None)
    later(None, None)  # delivered after the failed one: must not move the commit point
    assert packer._delivered == {("in", 0): 0}
    assert packer._failed is not None and "offset 1" in packer._failed


def test_packer_stubs_oversize_records_and_never_exceeds_its_byte_limit() -> None:
    packer, fake = _packer()
    sizes = [700_000, 800_000, 990_000, 1_000_000, 5_000_000, 60_000, 60_000, 100]
    packer._add([_Msg(i, b"S00000001", b"v" * n) for i, n in enumerate(sizes)])
    packer._emit(list(packer._open))
    envelopes = [unpack(d) for d in fake.sent]
    assert all(len(d) <= 100_000 + 64 * 1024 for d in fake.sent)
    records = [r for env in envelopes for r in env.records()]
    assert [r[0] for r in records] == list(range(len(sizes))), "every record, in order"
    stubs = [r for r in records if isinstance(r[2], Oversize)]
    assert [s[2].value_bytes for s in stubs] == sizes[:5]
    assert all(len(s[3]) == HEAD_BYTES for s in stubs)
