"""The envelope: many input records of one source partition carried by one Kafka message.

Faust pays about 60 µs of stream machinery per Kafka message; packing a few hundred input
records into one message makes that cost a fraction of a microsecond per event (see
docs/architecture.md). The envelope keeps each record's source offset, timestamp, key and
raw value bytes untouched, so validation, dead-lettering and deduplication downstream work
on the original input, and replaying an envelope is idempotent.

Layout (little endian)::

    magic "FSE1" | u16 topic_len | topic utf-8 | u32 partition | u32 count
    | count x i64 offset | count x i64 timestamp_ms | count x i32 key_len (-1 = null)
    | count x u32 value_len | keys... | values...
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from sys import byteorder

MAGIC = b"FSE1"
_HEAD = struct.Struct("<4sH")
_PART = struct.Struct("<II")
_NEEDS_SWAP = byteorder != "little"


class EnvelopeError(ValueError):
    """The bytes are not an envelope (wrong magic or truncated)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """Decoded envelope: parallel sequences, one entry per input record."""

    topic: str
    partition: int
    offsets: Sequence[int]
    timestamps: Sequence[int]
    keys: Sequence[bytes | None]
    values: Sequence[bytes]

    def __len__(self) -> int:
        return len(self.offsets)

    def records(self) -> Iterator[tuple[int, int, bytes | None, bytes]]:
        """(offset, timestamp_ms, key, value) in source order."""
        return zip(self.offsets, self.timestamps, self.keys, self.values, strict=True)


def _arr(code: str, items: Sequence[int]) -> bytes:
    a = array(code, items)
    if _NEEDS_SWAP:  # pragma: no cover - big-endian hosts only
        a.byteswap()
    return a.tobytes()


def pack(
    topic: str,
    partition: int,
    offsets: Sequence[int],
    timestamps: Sequence[int],
    keys: Sequence[bytes | None],
    values: Sequence[bytes],
) -> bytes:
    """Serialise one source partition's records into an envelope.

    >>> env = unpack(pack("call-events", 3, [7, 8], [1000, 1001], [b"k", None], [b"{}", b"x"]))
    >>> env.topic, env.partition, list(env.records())
    ('call-events', 3, [(7, 1000, b'k', b'{}'), (8, 1001, None, b'x')])
    """
    n = len(offsets)
    if not (len(timestamps) == len(keys) == len(values) == n):
        raise ValueError("offsets, timestamps, keys and values must have the same length")
    t = topic.encode()
    key_lens = [-1 if k is None else len(k) for k in keys]
    return b"".join((
        _HEAD.pack(MAGIC, len(t)), t, _PART.pack(partition, n),
        _arr("q", offsets), _arr("q", timestamps), _arr("i", key_lens),
        _arr("I", [len(v) for v in values]),
        b"".join(k for k in keys if k is not None), b"".join(values),
    ))


def unpack(data: bytes) -> Envelope:
    """Parse an envelope; raises :class:`EnvelopeError` on anything else."""
    mv = memoryview(data)
    try:
        magic, tlen = _HEAD.unpack_from(mv, 0)
        if magic != MAGIC:
            raise EnvelopeError("not a Foresight envelope (bad magic)")
        pos = _HEAD.size
        topic = bytes(mv[pos:pos + tlen]).decode()
        pos += tlen
        partition, n = _PART.unpack_from(mv, pos)
        pos += _PART.size
        offsets = _read(mv, "q", pos, n)
        pos += 8 * n
        timestamps = _read(mv, "q", pos, n)
        pos += 8 * n
        key_lens = _read(mv, "i", pos, n)
        pos += 4 * n
        value_lens = _read(mv, "I", pos, n)
        pos += 4 * n
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"truncated envelope: {exc}") from exc
    keys: list[bytes | None] = []
    for kl in key_lens:
        if kl < 0:
            keys.append(None)
        else:
            keys.append(bytes(mv[pos:pos + kl]))
            pos += kl
    values: list[bytes] = []
    for vl in value_lens:
        values.append(bytes(mv[pos:pos + vl]))
        pos += vl
    if pos != len(mv):
        raise EnvelopeError(f"envelope length mismatch: parsed {pos} of {len(mv)} bytes")
    return Envelope(topic, partition, offsets, timestamps, keys, values)


def _read(mv: memoryview, code: str, pos: int, n: int) -> array:
    a = array(code)
    end = pos + a.itemsize * n
    if end > len(mv):
        raise EnvelopeError("truncated envelope")
    a.frombytes(mv[pos:end])
    if _NEEDS_SWAP:  # pragma: no cover
        a.byteswap()
    return a
