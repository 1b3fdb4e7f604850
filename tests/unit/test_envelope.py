"""Envelopes carry records byte for byte; anything else is refused, never misread."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.envelope import EnvelopeError, Oversize, pack, unpack

stubs = st.builds(lambda k, v: Oversize.of(k, v, max_value_bytes=100),
                  st.one_of(st.none(), st.binary(max_size=2000)), st.binary(max_size=300))
records = st.lists(st.tuples(st.integers(0, 2**62), st.integers(0, 2**62),
                             st.one_of(st.none(), st.binary(max_size=40), stubs),
                             st.binary(max_size=300)), max_size=60)


@given(records, st.integers(0, 2**31), st.text(min_size=1, max_size=40))
def test_round_trip(recs, partition, topic) -> None:
    data = pack(topic, partition, [r[0] for r in recs], [r[1] for r in recs],
                [r[2] for r in recs], [r[3] for r in recs])
    env = unpack(data)
    assert (env.topic, env.partition) == (topic, partition)
    # a stub travels in the key's place; the value carried is what the stub kept
    want = [(o, t, k, k.value_head if isinstance(k, Oversize) else v) for o, t, k, v in recs]
    assert list(env.records()) == want


@given(st.binary(max_size=200))
def test_random_bytes_are_refused_cleanly(data) -> None:
    with contextlib.suppress(EnvelopeError):
        unpack(data)


def test_truncated_envelope_is_refused() -> None:
    data = pack("t", 0, [1, 2], [0, 0], [b"k", b"k"], [b"abc", b"def"])
    with pytest.raises(EnvelopeError):
        unpack(data[:-1])
    with pytest.raises(EnvelopeError):
        unpack(data + b"x")


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError):
        pack("t", 0, [1], [], [None], [b""])
