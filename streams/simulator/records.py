"""Where records go when they are not going to Kafka: memory, and the record file.

The record file (``--record``) is JSONL, one produced record per line::

    {"topic": "call-events", "key": "S12345678", "value": "{...}", "timestamp_ms": 1748736000123}

``value`` is the exact value as a UTF-8 string (``value_b64`` instead when the bytes are
not UTF-8, e.g. a deliberately broken record); ``topic`` is the logical name (no
prefix); ``timestamp_ms`` is the record's event time. Decoding ``value`` and encoding it
back gives the original bytes, so ``foresight replay`` is byte-exact.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from schemas.registry import CONTRACTS
from streams.simulator.errors import ReplayFileError

Record = tuple[str, str | None, bytes, int]


class MemorySink:
    """Keeps every record in order (tests and ``--no-kafka`` dry runs of small size)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.records: list[Record] = []
        self.delivered: Counter[str] = Counter()
        self.failed = 0

    def send(self, topic: str, key: str | None, value: bytes, timestamp_ms: int) -> None:
        """Keep the record (if ``keep``) and count it as delivered."""
        if self.keep:
            self.records.append((topic, key, value, timestamp_ms))
        self.delivered[topic] += 1

    def poll(self) -> None:
        """Nothing to serve: memory delivers synchronously."""

    def close(self) -> int:
        """Nothing is ever pending in memory."""
        return 0


def record_line(topic: str, key: str | None, value: bytes, timestamp_ms: int) -> bytes:
    """One record-file line (with its newline)."""
    line: dict[str, Any] = {"topic": topic, "key": key}
    try:
        line["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        line["value_b64"] = base64.b64encode(value).decode("ascii")
    line["timestamp_ms"] = timestamp_ms
    return orjson.dumps(line) + b"\n"


class RecordWriter:
    """Appends every produced record to a record file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file: BinaryIO = path.open("wb", buffering=1 << 20)
        except OSError as exc:
            raise ReplayFileError(f"cannot write record file {path}: {exc.strerror}") from exc

    def write(self, topic: str, key: str | None, value: bytes, timestamp_ms: int) -> None:
        """Append one record line."""
        self._file.write(record_line(topic, key, value, timestamp_ms))

    def close(self) -> None:
        self._file.close()


def _parse(path: Path, number: int, raw: bytes) -> Record:
    where = f"record file {path} line {number}"
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ReplayFileError(f"{where}: not JSON ({exc}); was it written by "
                              "'foresight simulate --record'?") from exc
    if not isinstance(line, dict):
        raise ReplayFileError(f"{where}: expected a JSON object with topic, key, value")
    topic = line.get("topic")
    if topic not in CONTRACTS:
        raise ReplayFileError(f"{where}: unknown topic {topic!r}; expected one of "
                              f"{', '.join(sorted(CONTRACTS))} (logical names, no prefix)")
    key = line.get("key")
    if key is not None and not isinstance(key, str):
        raise ReplayFileError(f"{where}: key must be a string or null")
    if isinstance(line.get("value"), str):
        value = line["value"].encode("utf-8")
    elif isinstance(line.get("value_b64"), str):
        try:
            value = base64.b64decode(line["value_b64"], validate=True)
        except ValueError as exc:
            raise ReplayFileError(f"{where}: value_b64 is not base64") from exc
    else:
        raise ReplayFileError(f"{where}: needs a string 'value' or 'value_b64'")
    ts = line.get("timestamp_ms", 0)
    if not isinstance(ts, int):
        raise ReplayFileError(f"{where}: timestamp_ms must be an integer")
    return topic, key, value, ts


def read_records(path: Path) -> Iterator[Record]:
    """Records of a record file, in order; errors name the line."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ReplayFileError(f"cannot read record file {path}: {exc.strerror}") from exc
    with fh:
        for number, raw in enumerate(fh, 1):
            if raw.strip():
                yield _parse(path, number, raw)


def scan_records(path: Path) -> Counter[str]:
    """Validate a whole record file before replaying it; returns records per topic."""
    counts: Counter[str] = Counter()
    for topic, _, _, _ in read_records(path):
        counts[topic] += 1
    return counts
