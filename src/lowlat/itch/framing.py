"""ITCH framings, shared by both decoders: the daily-file form and MoldUDP64 packets.

* File form (NASDAQ's daily ``*.NASDAQ_ITCH50`` files, SoupBinTCP payloads): every message is
  preceded by its length as a 2-byte big-endian integer.
* MoldUDP64 (the multicast feed): a 20-byte header -- session (10 ASCII bytes), sequence number of
  the first message (u64), message count (u16) -- followed by ``count`` message blocks, each a
  2-byte big-endian length and the message. A count of 0 is a heartbeat and 0xFFFF the end of the
  session; neither carries messages.

:class:`Batch` is what the batch decoders return; the encoders here build feeds for tests and
for users who want to write their own.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterable, NamedTuple

import numpy as np

from . import spec

__all__ = [
    "Batch",
    "MOLD_END_OF_SESSION",
    "MOLD_HEADER_SIZE",
    "MoldHeader",
    "MoldRequest",
    "MOLD_REQUEST_SIZE",
    "decode_mold_with",
    "frame",
    "encode_mold",
    "mold_header",
    "encode_mold_request",
    "decode_mold_request",
]

MOLD_HEADER_SIZE = 20
MOLD_END_OF_SESSION = 0xFFFF
MOLD_REQUEST_SIZE = 20
_MOLD = struct.Struct(">10sQH")
_MAX_POSITION = (1 << 63) - 1


class Batch(dict):
    """Decoded messages: ``{type char: numpy structured array}`` plus what the walk counted.

    Keys are the requested types (all of :data:`spec.TYPES` by default), each an array of
    :func:`spec.dtype_of` records (possibly empty) in stream order. Attributes:

    * ``count``: framed messages walked, of every type (known, unknown and filtered out);
    * ``unknown``: messages of a type ITCH 5.0 does not define, skipped (forward compatibility);
    * ``consumed``: bytes consumed from the input (less than its length only for a streaming
      decoder holding back an incomplete message);
    * ``next_position``: the ``position`` the next message of the stream will get.
    """

    count: int
    unknown: int
    consumed: int
    next_position: int

    def __init__(self, arrays=(), *, count: int = 0, unknown: int = 0, consumed: int = 0, next_position: int = 0) -> None:
        super().__init__(arrays)
        self.count = count
        self.unknown = unknown
        self.consumed = consumed
        self.next_position = next_position

    def ordered(self) -> list[tuple[str, int]]:
        """Return ``(type, row)`` for every decoded message in stream (``position``) order."""
        keys = [(int(p), t, i) for t, arr in self.items() for i, p in enumerate(arr["position"])]
        keys.sort()
        return [(t, i) for _, t, i in keys]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{t}: {len(a)}" for t, a in self.items() if len(a))
        return f"Batch({{{sizes}}}, count={self.count}, unknown={self.unknown}, consumed={self.consumed})"

    @staticmethod
    def concatenate(batches: "Iterable[Batch]") -> "Batch":
        """Return one batch holding every message of ``batches`` (same types), in order."""
        batches = list(batches)
        if not batches:
            return Batch()
        types = list(batches[0])
        merged = Batch(
            {t: np.concatenate([b[t] for b in batches]) for t in types},
            count=sum(b.count for b in batches),
            unknown=sum(b.unknown for b in batches),
            consumed=sum(b.consumed for b in batches),
            next_position=batches[-1].next_position,
        )
        return merged


def requested_types(types) -> tuple[str, ...]:
    """Validate ``types`` (None, a str of type chars or an iterable of them); return the tuple."""
    if types is None:
        return spec.TYPES
    if isinstance(types, (bytes, bytearray)):
        types = types.decode("ascii")
    out = []
    for t in types:
        if isinstance(t, (bytes, bytearray)):
            t = t.decode("ascii")
        if not isinstance(t, str) or t not in spec.TYPES:
            raise ValueError(f"types must hold ITCH 5.0 message type chars, got {t!r}")
        if t not in out:
            out.append(t)
    return tuple(out)


def frame(messages: Iterable[bytes]) -> bytes:
    """Return ``messages`` in the file form: each preceded by its 2-byte big-endian length."""
    parts = []
    for m in messages:
        if len(m) > 0xFFFF:
            raise ValueError(f"messages must be at most 65535 bytes, got {len(m)}")
        parts.append(len(m).to_bytes(2, "big"))
        parts.append(bytes(m))
    return b"".join(parts)


class MoldHeader(NamedTuple):
    """The header of a MoldUDP64 packet."""

    session: bytes
    sequence: int
    count: int  # type: ignore[assignment]  # the spec's Message Count; shadows tuple.count on purpose

    @property
    def is_heartbeat(self) -> bool:
        return self.count == 0

    @property
    def is_end_of_session(self) -> bool:
        return self.count == MOLD_END_OF_SESSION


def encode_mold(session: bytes, sequence: int, messages: Iterable[bytes] = (), *, end_of_session: bool = False) -> bytes:
    """Return one MoldUDP64 packet carrying ``messages`` (none: a heartbeat) from ``sequence`` on."""
    session = bytes(session)
    if len(session) > 10:
        raise ValueError(f"session must be at most 10 bytes, got {len(session)}")
    messages = list(messages)
    if end_of_session:
        if messages:
            raise ValueError("messages must be empty in an end-of-session packet")
        count = MOLD_END_OF_SESSION
    else:
        count = len(messages)
        if count >= MOLD_END_OF_SESSION:
            raise ValueError(f"messages must be fewer than 65535, got {count}")
    return _MOLD.pack(session.ljust(10, b" "), sequence, count) + frame(messages)


def mold_header(packet) -> MoldHeader:
    """Return the header of MoldUDP64 ``packet``; ``ValueError`` when it is shorter than 20 bytes."""
    view = memoryview(packet).cast("B")
    if len(view) < MOLD_HEADER_SIZE:
        raise ValueError(f"MoldUDP64 packet truncated at byte offset {len(view)}: the header needs 20 bytes")
    return MoldHeader(*_MOLD.unpack_from(view, 0))


class MoldRequest(NamedTuple):
    """A MoldUDP64 Request Packet: retransmit ``count`` messages of ``session`` from ``sequence`` on."""

    session: bytes
    sequence: int
    count: int  # type: ignore[assignment]  # the spec's Message Count; shadows tuple.count on purpose


def encode_mold_request(session: bytes, sequence: int, count: int) -> bytes:
    """Return the 20-byte Request Packet asking for ``count`` messages from ``sequence`` on."""
    session = bytes(session)
    if len(session) > 10:
        raise ValueError(f"session must be at most 10 bytes, got {len(session)}")
    if not 1 <= sequence < 1 << 64:
        raise ValueError(f"sequence must be in 1..2**64-1, got {sequence}")
    if not 1 <= count < MOLD_END_OF_SESSION:
        raise ValueError(f"count must be in 1..65534, got {count}")
    return _MOLD.pack(session.ljust(10, b" "), sequence, count)


def decode_mold_request(packet) -> MoldRequest:
    """Return the request in ``packet``; ``ValueError`` unless it is exactly 20 bytes asking for
    1..65534 messages from a sequence number of at least 1 (what a server can answer)."""
    view = memoryview(packet).cast("B")
    if len(view) != MOLD_REQUEST_SIZE:
        raise ValueError(f"MoldUDP64 request must be {MOLD_REQUEST_SIZE} bytes, got {len(view)}")
    request = MoldRequest(*_MOLD.unpack_from(view, 0))
    if request.sequence == 0:
        raise ValueError("MoldUDP64 request sequence number at byte offset 10 must be at least 1")
    if request.count in (0, MOLD_END_OF_SESSION):
        raise ValueError(f"MoldUDP64 request count at byte offset 18 must be in 1..65534, got {request.count}")
    return request


def decode_mold_with(decode_chunk: Callable, packet, types) -> tuple[MoldHeader, Batch]:
    """Decode MoldUDP64 ``packet`` with a backend's ``decode_chunk``: ``(header, batch)``.

    Each message's ``position`` is its sequence number. A heartbeat or end-of-session packet
    yields an empty batch. ``ValueError`` naming the byte offset (from the packet's start) when a
    block overruns the packet, the count disagrees with the blocks present, or bytes trail them.
    """
    header = mold_header(packet)
    view = memoryview(packet).cast("B")
    payload = view[MOLD_HEADER_SIZE:]
    if header.sequence + (header.count if header.count != MOLD_END_OF_SESSION else 0) > _MAX_POSITION:
        raise ValueError(f"MoldUDP64 sequence number {header.sequence} at byte offset 10 overflows the int64 position column")
    if header.count in (0, MOLD_END_OF_SESSION):
        if len(payload):
            raise ValueError(f"MoldUDP64 packet with count {header.count} carries data at byte offset {MOLD_HEADER_SIZE}")
        return header, decode_chunk(b"", types, header.sequence, MOLD_HEADER_SIZE, False, header.count)
    batch = decode_chunk(payload, types, header.sequence, MOLD_HEADER_SIZE, False, header.count)
    if batch.count != header.count:
        raise ValueError(
            f"MoldUDP64 packet count {header.count} overruns the packet: it ends after {batch.count} "
            f"messages at byte offset {MOLD_HEADER_SIZE + batch.consumed}"
        )
    if batch.consumed != len(payload):
        raise ValueError(
            f"MoldUDP64 packet has bytes after its {header.count} messages at byte offset {MOLD_HEADER_SIZE + batch.consumed}"
        )
    return header, batch
