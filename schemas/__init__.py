"""The wire contract of every Foresight topic: pydantic v2 models, one source of truth.

``schemas.registry`` maps topic names to models; ``foresight schemas export DIR`` writes
JSON Schema for producers in other languages.
"""

from schemas.common import SCHEMA_VERSION, mask_msisdn, mask_name
from schemas.registry import CONTRACTS, INPUT_TOPICS, OUTPUT_TOPICS, decode, export_json_schemas

__all__ = [
    "CONTRACTS",
    "INPUT_TOPICS",
    "OUTPUT_TOPICS",
    "SCHEMA_VERSION",
    "decode",
    "export_json_schemas",
    "mask_msisdn",
    "mask_name",
]
