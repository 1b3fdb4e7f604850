"""The envelope: many input records of one source partition carried by one Kafka message.

Faust pays about 60 µs of stream machinery per Kafka message; packing a few hundred input
records into one message makes that cost a fraction of a microsecond per event (see
docs/architecture.md). The envelope keeps each record's source offset, timestamp, key and
raw value bytes untouched, so validation, dead-lettering and deduplication downstream work
on the original input, and replaying an envelope is idempotent.

A record too large to carry whole (an oversize value or key, see :class:`Oversize`) is
replaced by the packer with a small stub: its size, its SHA-256 and its first bytes. The
worker turns it into a dead letter like any other rejected input; an envelope therefore
never grows past the packer's byte limit plus one record, whatever the operators produce.

Layout (little endian)::

    magic "FSE1" | u16 topic_len | topic utf-8 | u32 partition | u32 count
    | count x i64 offset | count x i64 timestamp_ms | count x i32 key_len (-1 = null,
    -2 = the value is an Oversize stub) | count x u32 value_len | keys... | values...
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from sys import byteorder

MAGIC = b"FSE1"
_HEAD = struct.Struct("<4sH")
_PART = struct.Struct("<II")
_NEEDS_SWAP = byteorder != "little"
_STUB = struct.Struct("<qi32sH")
_NULL_KEY, _STUB_KEY = -1, -2

#: Longer keys cannot be an id of the contract (40 characters at most): only their first
#: bytes travel, and the record becomes a dead letter.
KEY_LIMIT_BYTES = 1024
#: What a stub keeps of an oversize value: enough to recognise the record.
HEAD_BYTES = 4096


class EnvelopeError(ValueError):
    """The bytes are not an envelope (wrong magic or truncated)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """Decoded envelope: parallel sequences, one entry per input record."""

    topic: str
    partition: int
    offsets: Sequence[int]
    timestamps: Sequence[int]
    keys: Sequence[bytes | Oversize | None]
    values: Sequence[bytes]

    def __len__(self) -> int:
        return len(self.offsets)

    def records(self) -> Iterator[tuple[int, int, bytes | Oversize | None, bytes]]:
        """(offset, timestamp_ms, key, value) in source order."""
        return zip(self.offsets, self.timestamps, self.keys, self.values, strict=True)


@dataclass(frozen=True, slots=True)
class Oversize:
    """Stands in for a record too large to carry: sizes, digest and the first bytes.

    It travels in the key's place (so the per-record loop needs no extra field) and the
    worker dead-letters it with reason ``oversize`` (or ``key_mismatch`` when only the key
    was too long). The full record stays in its source topic, at its source offset.

    >>> stub = Oversize.of(b"S1", b"x" * 10_000, max_value_bytes=4096)
    >>> stub.value_bytes, len(stub.value_head), stub.value_sha256[:8]
    (10000, 4096, 'e4ee97ec')
    >>> Oversize.from_bytes(stub.to_bytes()) == stub
    True
    """

    value_bytes: int
    value_sha256: str
    key_bytes: int  # -1: the record had no key
    key_head: bytes | None
    value_head: bytes

    @classmethod
    def of(cls, key: bytes | None, value: bytes, *, max_value_bytes: int) -> Oversize:
        """The stub of ``(key, value)``; the value travels whole when within ``max_value_bytes``."""
        head = value if len(value) <= max_value_bytes else value[:HEAD_BYTES]
        return cls(len(value), hashlib.sha256(value).hexdigest(),
                   -1 if key is None else len(key),
                   None if key is None else key[:KEY_LIMIT_BYTES], head)

    @property
    def value_truncated(self) -> bool:
        return len(self.value_head) < self.value_bytes

    @property
    def key_truncated(self) -> bool:
        return self.key_head is not None and len(self.key_head) < self.key_bytes

    def to_bytes(self) -> bytes:
        key_head = self.key_head or b""
        return b"".join((_STUB.pack(self.value_bytes, self.key_bytes,
                                    bytes.fromhex(self.value_sha256), len(key_head)),
                         key_head, self.value_head))

    @classmethod
    def from_bytes(cls, data: bytes) -> Oversize:
        try:
            value_bytes, key_bytes, digest, klen = _STUB.unpack_from(data, 0)
        except struct.error as exc:
            raise EnvelopeError(f"truncated oversize stub: {exc}") from exc
        pos = _STUB.size
        key_head = data[pos:pos + klen] if key_bytes >= 0 else None
        return cls(value_bytes, digest.hex(), key_bytes, key_head, data[pos + klen:])


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
    keys: Sequence[bytes | Oversize | None],
    values: Sequence[bytes],
) -> bytes:
    """Serialise one source partition's records into an envelope.

    A record whose key is an :class:`Oversize` stub is carried as the stub (its value is
    ignored: the stub holds what is kept of it).

    >>> env = unpack(pack("call-events", 3, [7, 8], [1000, 1001], [b"k", None], [b"{}", b"x"]))
    >>> env.topic, env.partition, list(env.records())
    ('call-events', 3, [(7, 1000, b'k', b'{}'), (8, 1001, None, b'x')])
    """
    n = len(offsets)
    if not (len(timestamps) == len(keys) == len(values) == n):
        raise ValueError("offsets, timestamps, keys and values must have the same length")
    t = topic.encode()
    key_lens = []
    key_bytes = []
    carried = list(values)
    for i, k in enumerate(keys):
        if k is None:
            key_lens.append(_NULL_KEY)
        elif k.__class__ is Oversize:
            key_lens.append(_STUB_KEY)
            carried[i] = k.to_bytes()  # type: ignore[union-attr]
        else:
            key_lens.append(len(k))  # type: ignore[arg-type]
            key_bytes.append(k)
    return b"".join((
        _HEAD.pack(MAGIC, len(t)), t, _PART.pack(partition, n),
        _arr("q", offsets), _arr("q", timestamps), _arr("i", key_lens),
        _arr("I", [len(v) for v in carried]),
        b"".join(key_bytes), b"".join(carried),  # type: ignore[arg-type]
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
    keys: list[bytes | Oversize | None] = []
    stubs = []
    for i, kl in enumerate(key_lens):
        if kl >= 0:
            keys.append(bytes(mv[pos:pos + kl]))
            pos += kl
        else:
            keys.append(None)
            if kl == _STUB_KEY:
                stubs.append(i)
    values: list[bytes] = []
    for vl in value_lens:
        values.append(bytes(mv[pos:pos + vl]))
        pos += vl
    if pos != len(mv):
        raise EnvelopeError(f"envelope length mismatch: parsed {pos} of {len(mv)} bytes")
    for i in stubs:  # rare: only records too large to carry
        stub = Oversize.from_bytes(values[i])
        keys[i], values[i] = stub, stub.value_head
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
