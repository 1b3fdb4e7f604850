"""Streaming writer of the ground-truth JSONL (the reader and its models are in ``truth``).

Truth lines are plain dicts serialised with orjson: the generators write thousands of
them and pydantic stays off that path; ``truth.load_truth`` validates them when read.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import orjson


class TruthLog:
    """Writes truth records as they become final; counts them per type.

    ``keep=True`` also keeps every record in :attr:`records` (tests, small runs).
    """

    def __init__(self, path: Path | None = None, *, keep: bool = False) -> None:
        self.path = path
        self._file: BinaryIO | None = path.open("wb", buffering=1 << 20) if path else None
        self.keep = keep
        self.records: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.closed = False

    def write(self, record: dict[str, Any]) -> None:
        """Write one truth record (a plain dict with a ``type``)."""
        self.counts[record["type"]] += 1
        if self.keep:
            self.records.append(record)
        if self._file is not None:
            self._file.write(orjson.dumps(record) + b"\n")

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._file is not None and not self.closed:
            self._file.close()
        self.closed = True
