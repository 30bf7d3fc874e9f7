"""Pure-Python ITCH 5.0 decoder: the twin of :mod:`lowlat.itch._c` (same names, signatures, errors).

The batch decoder walks the length prefixes in Python, remembering each message's offset per
type, then lets numpy gather every type's messages into a big-endian view of the wire layout
and convert it column by column: one Python step per message, none per field.
"""

from __future__ import annotations

import struct

import numpy as np

from . import spec
from .framing import Batch, MoldHeader, decode_mold_with, requested_types
from .stream import StreamDecoderBase, read_with
from .._twins import Final as _Final

__all__ = ["Message", "StreamDecoder", "decode", "decode_chunk", "decode_mold", "read"]

_SIZE_BY_CODE = {ord(m.type): m.size for m in spec.MESSAGES}


def _empty(types) -> dict:
    return {t: np.empty(0, dtype=spec.dtype_of(t)) for t in types}


def decode_chunk(buffer, types, first_position, base_offset, allow_partial, max_count):
    """Decode file-form ``buffer``; the worker behind :func:`decode`, streaming and MoldUDP64.

    ``types``: a tuple from ``requested_types``; ``first_position``: the first message's
    position; ``base_offset``: added to byte offsets in errors; ``allow_partial``: stop before an
    incomplete message at the end instead of raising; ``max_count``: stop after that many
    messages (-1: no limit).
    """
    view = memoryview(buffer).cast("B")
    n = len(view)
    sizes = _SIZE_BY_CODE
    wanted = {ord(t): ([], []) for t in types}
    off = 0
    index = 0
    unknown = 0
    while off + 2 <= n and index != max_count:
        length = view[off] << 8 | view[off + 1]
        end = off + 2 + length
        if end > n:
            break
        if length == 0:
            raise ValueError(f"empty message (length 0) at byte offset {base_offset + off}")
        code = view[off + 2]
        size = sizes.get(code)
        if size is None:
            unknown += 1
        elif size != length:
            raise ValueError(
                f"message type {chr(code)!r} has length {length}, expected {size}, at byte offset {base_offset + off}"
            )
        else:
            lists = wanted.get(code)
            if lists is not None:
                lists[0].append(off + 2)
                lists[1].append(first_position + index)
        index += 1
        off = end
    if off < n and index != max_count and not allow_partial:
        raise ValueError(f"truncated message at byte offset {base_offset + off}: {n - off} bytes left")
    raw = np.frombuffer(view, dtype=np.uint8) if n else np.empty(0, dtype=np.uint8)
    arrays = {}
    for t in types:
        offsets, positions = wanted[ord(t)]
        arrays[t] = _gather(raw, t, offsets, positions)
    return Batch(arrays, count=index, unknown=unknown, consumed=off, next_position=first_position + index)


def _gather(raw: np.ndarray, message_type: str, offsets: list, positions: list) -> np.ndarray:
    dtype = spec.dtype_of(message_type)
    out = np.empty(len(offsets), dtype=dtype)
    if not offsets:
        return out
    wire_dtype = spec.wire_dtype_of(message_type)
    rows = raw[np.asarray(offsets, dtype=np.intp)[:, None] + np.arange(wire_dtype.itemsize)]
    wire = rows.view(wire_dtype)[:, 0]
    out["position"] = positions
    names = dtype.names
    assert names is not None  # spec.dtype_of always builds a structured dtype: position, then fields
    for name in names[1:]:
        if name == "timestamp":
            out[name] = (wire["timestamp_high"].astype(np.int64) << 32) | wire["timestamp_low"].astype(np.int64)
        else:
            out[name] = wire[name]
    return out


def decode(buffer, *, types=None) -> Batch:
    """Decode every message of file-form ``buffer`` (2-byte big-endian length, message, ...).

    Return a :class:`Batch`: ``{type char: structured array}`` for each of ``types`` (all ITCH
    5.0 types by default; a str such as ``"AFEXDU"`` or an iterable of chars), native-endian
    columns as :func:`lowlat.itch.spec.dtype_of` describes, ``position`` numbering every message
    of the buffer from 0. Messages of an unknown type are skipped and counted in
    ``batch.unknown``. ``ValueError`` naming the byte offset when a message is truncated at the
    end, has length 0, or has a length that does not match its type. O(len(buffer)).
    """
    return decode_chunk(buffer, requested_types(types), 0, 0, False, -1)


def decode_mold(packet, *, types=None) -> tuple[MoldHeader, Batch]:
    """Decode one MoldUDP64 packet: return ``(header, batch)``, ``position`` = sequence number.

    A heartbeat (count 0) or end-of-session (count 0xFFFF) packet gives an empty batch.
    ``ValueError`` naming the byte offset when the header is short, a block or the count overruns
    the packet, or bytes trail the last block.
    """
    return decode_mold_with(decode_chunk, packet, requested_types(types))


class StreamDecoder(StreamDecoderBase):
    __doc__ = StreamDecoderBase.__doc__
    _decode_chunk = staticmethod(decode_chunk)


def read(path, chunk_size: int = 1 << 20, *, types=None, progress=None):
    """Yield a :class:`Batch` per ``chunk_size`` bytes of file-form ITCH file ``path``.

    Memory is bounded by ``chunk_size`` (one reused buffer) whatever the file size; a progress
    line goes to stderr when it is a terminal and the file is long (``progress`` forces it on or
    off). ``ValueError`` naming the byte offset on bad framing or a file ending inside a message.
    """
    return read_with(StreamDecoder, path, chunk_size, types=types, progress=progress)


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U48 = struct.Struct(">HI")
_UNPACK = {2: _U16.unpack_from, 4: _U32.unpack_from, 8: _U64.unpack_from}


def _field_table(message_spec: spec.MessageSpec) -> dict:
    table = {}
    offset = 1
    for f in message_spec.all_fields:
        table[f.name] = (offset, f.width, f.kind)
        offset += f.width
    return table


_FIELDS = {ord(m.type): _field_table(m) for m in spec.MESSAGES}
_SPECS = {ord(m.type): m for m in spec.MESSAGES}
_RECORD_BYTES = max(m.size for m in spec.MESSAGES)


class Message(_Final):
    """One ITCH message decoded into a reusable record: parse into it again and again.

    ``parse(data, offset=0)`` copies the raw message (no length prefix) starting at ``offset``
    into the record and returns its size; fields are read on access by their spec name
    (``msg.stock_locate``, ``msg.timestamp``, ``msg.order_reference_number``, ``msg.price``...):
    integers and prices as int (prices are the wire's integer; see
    :func:`lowlat.itch.spec.price_to_float`), alpha fields as bytes. A name the current type
    does not have raises ``AttributeError``. One thread at a time.
    """

    __slots__ = ("_buffer", "_code", "_size")

    def __init__(self) -> None:
        self._buffer = bytearray(_RECORD_BYTES)
        self._code = 0
        self._size = 0

    def parse(self, data, offset: int = 0) -> int:
        """Copy the raw message at ``data[offset:]`` into this record; return its size in bytes.

        ``ValueError`` naming the byte offset when ``offset`` is out of range, the type is not
        ITCH 5.0, or ``data`` ends before the type's size. The record is unchanged on error.
        """
        view = memoryview(data).cast("B")
        n = len(view)
        if offset < 0 or offset >= n:
            raise ValueError(f"offset {offset} is outside the data (length {n})")
        code = view[offset]
        message_spec = _SPECS.get(code)
        if message_spec is None:
            raise ValueError(f"unknown message type {chr(code)!r} at byte offset {offset}")
        size = message_spec.size
        if offset + size > n:
            raise ValueError(f"truncated message at byte offset {offset}: type {chr(code)!r} needs {size} bytes, {n - offset} left")
        self._buffer[:size] = view[offset : offset + size]
        self._code = code
        self._size = size
        return size

    @property
    def type(self) -> str:
        """The message type char ('' before the first parse)."""
        return chr(self._code) if self._code else ""

    @property
    def size(self) -> int:
        """The wire size of the current message in bytes (0 before the first parse)."""
        return self._size

    @property
    def stock_locate(self) -> int:
        self._check()
        return _U16.unpack_from(self._buffer, 1)[0]

    @property
    def tracking_number(self) -> int:
        self._check()
        return _U16.unpack_from(self._buffer, 3)[0]

    @property
    def timestamp(self) -> int:
        """Nanoseconds since midnight (the 6-byte wire timestamp)."""
        self._check()
        high, low = _U48.unpack_from(self._buffer, 5)
        return high << 32 | low

    def _check(self) -> None:
        if not self._code:
            raise AttributeError("the record holds no message yet: call parse() first")

    def __getattr__(self, name: str):
        table = _FIELDS.get(self._code)
        if table is None or name not in table:
            raise AttributeError(f"message type {self.type!r} has no field {name!r}")
        offset, width, kind = table[name]
        if kind == spec.ALPHA:
            return bytes(self._buffer[offset : offset + width])
        return _UNPACK[width](self._buffer, offset)[0]

    def to_dict(self) -> dict[str, int | bytes | str]:
        """Return every field of the current message by name, ``type`` first."""
        self._check()
        out: dict[str, int | bytes | str] = {"type": self.type}
        for name in _FIELDS[self._code]:
            out[name] = self.timestamp if name == "timestamp" else getattr(self, name)
        return out

    def to_bytes(self) -> bytes:
        """Return the current raw message (no length prefix)."""
        return bytes(self._buffer[: self._size])

    def __repr__(self) -> str:
        if not self._code:
            return "Message()"
        return f"Message({self.to_dict()!r})"
