"""Which model describes which topic, and the JSON Schema export for other languages.

The topic names here are the contract of DESIGN.md. Decoding goes straight from bytes to
models with pydantic's JSON parser (``validate_json``), which is faster than ``orjson.loads``
followed by ``model_validate`` and reports precise locations on failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.call_events import CallEvent
from schemas.common import SCHEMA_VERSION
from schemas.complaints import Complaint
from schemas.contacts import ContactOutcome, ContactRequest, DoNotDisturb
from schemas.models import ModelExample, ModelSnapshot
from schemas.network_kpis import NetworkKpi
from schemas.outputs import AgentHint, Alert, CareEntry, ContactDecision, DeadLetter, WorkOrder
from schemas.subscriber_state import SubscriberStateEvent

SUBSCRIBER_STATE = "subscriber-state"
CALL_EVENTS = "call-events"
COMPLAINTS = "complaints"
NETWORK_KPIS = "network-kpis"
CONTACT_REQUESTS = "contact-requests"
CONTACT_OUTCOMES = "contact-outcomes"
DO_NOT_DISTURB = "do-not-disturb"
ALERTS = "alerts"
AGENT_HINTS = "agent-hints"
WORK_ORDERS = "work-orders"
CONTACT_DECISIONS = "contact-decisions"
CARE_LIST = "care-list"
DEAD_LETTERS = "dead-letters"
MODEL_EXAMPLES = "model-examples"
MODELS = "models"


@dataclass(frozen=True)
class TopicContract:
    """A topic's name, what its key is, and the type of its values."""

    name: str
    key: str
    type: Any
    inbound: bool
    description: str

    @property
    def adapter(self) -> TypeAdapter[Any]:
        return _adapter(self.name)


CONTRACTS: dict[str, TopicContract] = {
    c.name: c
    for c in (
        TopicContract(SUBSCRIBER_STATE, "subscriber id", SubscriberStateEvent, True,
                      "state changes reported by BSS, HSS, billing, VAS, PCRF, MNP"),
        TopicContract(CALL_EVENTS, "subscriber id", CallEvent, True,
                      "network call records and contact-center call legs"),
        TopicContract(COMPLAINTS, "subscriber id", Complaint, True,
                      "complaints and consultations from every channel"),
        TopicContract(NETWORK_KPIS, "cell id or line id", NetworkKpi, True,
                      "cell KPIs per window and broadband line measurements"),
        TopicContract(CONTACT_REQUESTS, "subscriber id", ContactRequest, True,
                      "outbound contact tasks to allow or suppress"),
        TopicContract(CONTACT_OUTCOMES, "subscriber id", ContactOutcome, True,
                      "surveys, retention and offer outcomes, online-channel contacts"),
        TopicContract(DO_NOT_DISTURB, "subscriber id", DoNotDisturb, True,
                      "the operator's do-not-disturb list (compacted)"),
        TopicContract(ALERTS, "fingerprint", Alert, False,
                      "technician alerts, firing -> resolved"),
        TopicContract(AGENT_HINTS, "subscriber id", AgentHint, False,
                      "screen-pop material for contact-center agents"),
        TopicContract(WORK_ORDERS, "cell id / line id", WorkOrder, False,
                      "prioritised network and broadband work orders"),
        TopicContract(CONTACT_DECISIONS, "subscriber id", ContactDecision, False,
                      "allow / suppress decisions with reason codes"),
        TopicContract(CARE_LIST, "subscriber id", CareEntry, False,
                      "subscribers to reach proactively"),
        TopicContract(DEAD_LETTERS, "source topic", DeadLetter, False,
                      "inputs that could not be parsed or validated"),
        TopicContract(MODEL_EXAMPLES, "model name", ModelExample, False,
                      "labelled examples from every worker, for the Foresee learner"),
        TopicContract(MODELS, "model name", ModelSnapshot, False,
                      "versioned Foresee model snapshots (compacted), loaded by workers"),
    )
}

INPUT_TOPICS: tuple[str, ...] = tuple(n for n, c in CONTRACTS.items() if c.inbound)
OUTPUT_TOPICS: tuple[str, ...] = tuple(n for n, c in CONTRACTS.items() if not c.inbound)

_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(topic: str) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(topic)
    if adapter is None:
        adapter = _ADAPTERS[topic] = TypeAdapter(CONTRACTS[topic].type)
    return adapter


def decode(topic: str, raw: bytes) -> Any:
    """Validate raw JSON bytes against ``topic``'s contract (raises ``ValidationError``)."""
    return _adapter(topic).validate_json(raw)


def export_json_schemas(directory: Path) -> list[Path]:
    """Write one JSON Schema file per topic (plus an index) for producers in other languages."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "topics": {}}
    for name, contract in CONTRACTS.items():
        schema = _adapter(name).json_schema(mode="validation" if contract.inbound else "serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://foresight.dev/schemas/v{SCHEMA_VERSION}/{name}.json"
        schema.setdefault("title", name)
        schema["description"] = contract.description
        schema["x-kafka-key"] = contract.key
        schema["x-direction"] = "input" if contract.inbound else "output"
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
        index["topics"][name] = {"file": path.name, "key": contract.key,
                                 "direction": schema["x-direction"]}
    index_path = directory / "index.json"
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    written.append(index_path)
    return written
