"""The wire contract: valid examples pass, invalid ones fail loudly, JSON Schema agrees."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import orjson
import pytest
from pydantic import ValidationError

from schemas import CONTRACTS, INPUT_TOPICS, OUTPUT_TOPICS, decode, export_json_schemas
from schemas.common import mask_msisdn
from schemas.examples import INPUT_EXAMPLES
from schemas.outputs import Alert, DeadLetter
from streams.metrics import kinds_of

CASES = [(topic, ex) for topic, exs in INPUT_EXAMPLES.items() for ex in exs]


def test_every_kind_has_an_example() -> None:
    for topic in INPUT_TOPICS:
        assert sorted({e["kind"] for e in INPUT_EXAMPLES[topic]}) == sorted(kinds_of(topic)), topic


@pytest.mark.parametrize(("topic", "example"), CASES, ids=[f"{t}:{e['kind']}" for t, e in CASES])
def test_valid_example_round_trips(topic: str, example: dict) -> None:
    model = decode(topic, orjson.dumps(example))
    assert model.kind == example["kind"]
    again = decode(topic, model.model_dump_json().encode())
    assert again == model


@pytest.mark.parametrize(("topic", "example"), CASES[:6], ids=[e["kind"] for _, e in CASES[:6]])
def test_unknown_fields_are_ignored_inbound(topic: str, example: dict) -> None:
    model = decode(topic, orjson.dumps({**example, "added_in_v2": {"x": 1}}))
    assert not hasattr(model, "added_in_v2")


BROKEN = {
    "missing field": lambda e: {k: v for k, v in e.items() if k != "subscriber_id"},
    "naive timestamp": lambda e: {**e, "event_time": "2026-11-26T09:30:00"},
    "string for int": lambda e: {**e, "schema_version": "1"},
    "unknown kind": lambda e: {**e, "kind": "teleported"},
    "bad phone number": lambda e: {**e, "msisdn": "12ab"},
    "bad subscriber id": lambda e: {**e, "subscriber_id": "a b"},
    "schema version 0": lambda e: {**e, "schema_version": 0},
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_invalid_events_are_rejected(breakage: str) -> None:
    example = INPUT_EXAMPLES["subscriber-state"][6]  # product_ordered
    with pytest.raises(ValidationError):
        decode("subscriber-state", orjson.dumps(BROKEN[breakage](example)))


def test_unknown_enum_value_is_rejected() -> None:
    example = {**INPUT_EXAMPLES["call-events"][0], "result": "teleported"}
    with pytest.raises(ValidationError, match="result"):
        decode("call-events", orjson.dumps(example))


def test_outbound_models_forbid_unknown_fields() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError):
        DeadLetter(source_topic="x", source_partition=0, source_offset=1, value_b64="",
                   value_bytes=0, reason="empty", error="e", worker="w", detected_at=now,
                   surprise=1)  # type: ignore[call-arg]


def test_alert_round_trip() -> None:
    now = datetime.now(UTC)
    alert = Alert(fingerprint="0123456789abcdef", sequence=1, status="firing", rule_id="r",
                  severity="warning", starts_at=now, detected_at=now,
                  annotations={"summary": "s"})
    assert Alert.model_validate_json(alert.model_dump_json()) == alert


def test_json_schema_export_accepts_the_examples(tmp_path) -> None:
    written = export_json_schemas(tmp_path)
    assert len(written) == len(CONTRACTS) + 1
    index = json.loads((tmp_path / "index.json").read_text())
    assert set(index["topics"]) == set(INPUT_TOPICS) | set(OUTPUT_TOPICS)
    for topic, examples in INPUT_EXAMPLES.items():
        schema = json.loads((tmp_path / f"{topic}.schema.json").read_text())
        for ex in examples:
            jsonschema.validate(ex, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"kind": examples[0]["kind"]}, schema)


def test_masking_keeps_last_four_digits() -> None:
    assert mask_msisdn("8613800001234") == "*********1234"
    assert "1380000" not in mask_msisdn("8613800001234")
