"""Bad input never raises: it becomes a dead letter with its bytes and the reason."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.examples import INPUT_EXAMPLES
from schemas.registry import INPUT_TOPICS
from streams.decoding import Rejected, dead_letter, decode_record

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=20)


@settings(max_examples=300)
@given(st.sampled_from(INPUT_TOPICS), st.binary(max_size=2000), st.one_of(st.none(), st.binary(max_size=20)))
def test_arbitrary_bytes_never_crash(topic, value, key) -> None:
    result = decode_record(topic, key, value, 1024)
    if isinstance(result, Rejected):
        dl = dead_letter(result, topic=topic, partition=0, offset=7, timestamp_ms=1, key=key,
                         value=value, worker="w", now=datetime.now(UTC))
        assert base64.b64decode(dl.value_b64) == value
        assert dl.reason == result.reason


@settings(max_examples=300)
@given(st.sampled_from(INPUT_TOPICS), json_values)
def test_arbitrary_json_never_crashes(topic, doc) -> None:
    result = decode_record(topic, None, orjson.dumps(doc), 64 * 1024)
    assert isinstance(result, Rejected)
    assert result.reason in ("invalid", "not_json")


def test_reasons() -> None:
    ok = orjson.dumps(INPUT_EXAMPLES["complaints"][0])
    assert decode_record("complaints", b"S00000001", ok, 4096).kind == "complaint"
    assert decode_record("complaints", None, b"", 4096).reason == "empty"
    assert decode_record("complaints", None, ok, 10).reason == "oversize"
    assert decode_record("complaints", None, b"{", 4096).reason == "not_json"
    assert decode_record("complaints", None, b"[]", 4096).reason == "invalid"


def test_key_must_match_payload() -> None:
    ok = orjson.dumps(INPUT_EXAMPLES["call-events"][0])
    wrong = decode_record("call-events", b"S99999999", ok, 4096)
    assert isinstance(wrong, Rejected) and "does not match" in wrong.error
    kpi = orjson.dumps(INPUT_EXAMPLES["network-kpis"][0])
    assert decode_record("network-kpis", b"C-00042", kpi, 4096).kind == "cell_kpi"
