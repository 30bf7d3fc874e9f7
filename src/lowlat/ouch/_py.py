"""Pure-Python OUCH 4.2 codec: the twin of :mod:`lowlat.ouch._c` (same names, signatures, errors).

Encoders write one message into a caller's writable buffer at an offset and return the offset just
past it; decoders fill a reusable record. Layouts come from :mod:`lowlat.ouch.spec`. Sans-I/O: bytes
in, bytes out, no sockets.
"""

from __future__ import annotations

import operator
import struct

import numpy as np

from .spec import ALPHA, CHAR, CLIENT, EXCHANGE, FIELDS, MAX_LENGTH, MESSAGES, U32, U64, Layout, batch_dtype, by_type, wire_dtype
from .._twins import Final as _Final

__all__ = [
    "ClientMessage",
    "EnterOrderPacket",
    "ExchangeMessage",
    "decode_batch",
    "encode",
    "encode_cancel_order",
    "encode_enter_order",
    "encode_modify_order",
    "encode_replace_order",
]

_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF
_STRUCT_CODE = {ALPHA: "{}s", CHAR: "c", U32: "I", U64: "Q"}
_STRUCTS = {
    name: struct.Struct(">c" + "".join(_STRUCT_CODE[f.kind].format(f.width) for f, _ in layout.fields))
    for name, layout in MESSAGES.items()
}
_TYPE_BYTE = {name: layout.type.encode() for name, layout in MESSAGES.items()}
_BY_TYPE = {direction: {ord(letter): m for letter, m in by_type(direction).items()} for direction in (CLIENT, EXCHANGE)}
_PREFIX = struct.Struct(">H")


# Field conversion: the same checks, in the same order and with the same messages, as the compiled half.

def _text(value, name: str, width: int) -> bytes:
    if isinstance(value, str):
        if not value.isascii():
            raise ValueError(f"{name} must be ASCII, got {value!r}")
        raw = value.encode("ascii")
    elif isinstance(value, bytes):
        raw = value
    else:
        raise TypeError(f"{name} must be str or bytes, got {type(value).__name__}")
    if len(raw) > width:
        raise ValueError(f"{name} is {len(raw)} characters, at most {width} fit")
    return raw.ljust(width, b" ")


def _char(value, name: str) -> bytes:
    if isinstance(value, str):
        if not value.isascii():
            raise ValueError(f"{name} must be ASCII, got {value!r}")
        raw = value.encode("ascii")
    elif isinstance(value, bytes):
        raw = value
    else:
        raise TypeError(f"{name} must be str or bytes, got {type(value).__name__}")
    if len(raw) != 1:
        raise ValueError(f"{name} must be one character, got {len(raw)}")
    return raw


def _as_int(value, name: str) -> int:
    if isinstance(value, int):
        return value
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def _u32(value, name: str) -> int:
    value = _as_int(value, name)
    if not 0 <= value <= _U32_MAX:
        raise ValueError(f"{name} must be in [0, {_U32_MAX}], got {value}")
    return value


def _u64(value, name: str) -> int:
    value = _as_int(value, name)
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} must be in [0, {_U64_MAX}], got {value}")
    return value


def _convert(field, value):
    if field.kind == ALPHA:
        return _text(value, field.name, field.width)
    if field.kind == CHAR:
        return _char(value, field.name)
    if field.kind == U32:
        return _u32(value, field.name)
    return _u64(value, field.name)


def _writable(buffer) -> memoryview:
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError("buffer must be a writable contiguous buffer") from None
    if view.readonly or not view.c_contiguous:
        raise TypeError("buffer must be a writable contiguous buffer")
    return view.cast("B") if (view.format != "B" or view.ndim != 1) else view


def _readable(buffer) -> memoryview:
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError("buffer must be a contiguous buffer") from None
    if not view.c_contiguous:
        raise TypeError("buffer must be a contiguous buffer")
    return view.cast("B") if (view.format != "B" or view.ndim != 1) else view


def _check_offset(offset) -> None:
    operator.index(offset)  # the TypeError a C Py_ssize_t argument raises


def _put(buffer, offset: int, name: str, values: tuple) -> int:
    layout = MESSAGES[name]
    view = _writable(buffer)
    if offset < 0 or offset + layout.length > view.nbytes:
        raise ValueError(f"OUCH {layout.title} needs {layout.length} bytes at offset {offset}, the buffer has {view.nbytes}")
    _STRUCTS[name].pack_into(view, offset, _TYPE_BYTE[name], *values)
    return offset + layout.length


# The named encoders' fast path: text fields come from caches of padded bytes that only the checked
# path fills, integers go straight to struct (which refuses what does not fit), the message is packed
# whole before one copy into the buffer (so a failure never leaves half a message). Anything unusual
# -- a cache miss, a struct error, a bad buffer -- falls through to the checked path, which raises
# exactly what the compiled half raises.
_CACHE_LIMIT = 4096
_TEXT_CACHE: dict[int, dict] = {4: {}, 8: {}}
_CHAR_CACHE: dict = {}
_ENTER, _REPLACE, _CANCEL, _MODIFY = (_STRUCTS[n] for n in ("enter_order", "replace_order", "cancel_order", "modify_order"))
_COPY = {m.length: struct.Struct(f"{m.length}s") for m in MESSAGES.values()}


def _remember(cache: dict, value, raw: bytes) -> bytes:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[value] = raw
    return raw


def _cached_text(value, name: str, width: int) -> bytes:
    return _remember(_TEXT_CACHE[width], value, _text(value, name, width))


def _cached_char(value, name: str) -> bytes:
    return _remember(_CHAR_CACHE, value, _char(value, name))


def encode_enter_order(buffer, offset, order_token, side, shares, stock, price, time_in_force=99998, firm="",
                       display="Y", capacity="A", intermarket_sweep="N", minimum_quantity=0, cross_type="N",
                       customer_type=" "):
    """Write an OUCH 4.2 Enter Order ('O', 49 bytes) into ``buffer`` at ``offset``; return the end offset.

    ``buffer`` is any writable contiguous buffer (bytearray, numpy array, mmap...); nothing is
    allocated per order by the compiled backend. Text fields take str (ASCII) or bytes and are
    space-padded; ``price`` is an int with 4 implied decimals. A value of the wrong type ->
    ``TypeError``, out of range or too long -> ``ValueError`` naming the field (checked before the
    buffer is touched); a message that does not fit at ``offset`` -> ``ValueError``.
    """
    try:
        token = order_token.encode("ascii")
        if len(token) <= 14 and offset >= 0:
            chars = _CHAR_CACHE
            message = _ENTER.pack(b"O", token.ljust(14), chars[side], shares, _TEXT_CACHE[8][stock], price,
                                  time_in_force, _TEXT_CACHE[4][firm], chars[display], chars[capacity],
                                  chars[intermarket_sweep], minimum_quantity, chars[cross_type], chars[customer_type])
            _COPY[49].pack_into(buffer, offset, message)
            return offset + 49
    except Exception:  # noqa: BLE001 - the checked path below raises the precise error
        pass
    _check_offset(offset)
    values = (
        _text(order_token, "order_token", 14), _cached_char(side, "side"), _u32(shares, "shares"),
        _cached_text(stock, "stock", 8), _u32(price, "price"), _u32(time_in_force, "time_in_force"),
        _cached_text(firm, "firm", 4), _cached_char(display, "display"), _cached_char(capacity, "capacity"),
        _cached_char(intermarket_sweep, "intermarket_sweep"), _u32(minimum_quantity, "minimum_quantity"),
        _cached_char(cross_type, "cross_type"), _cached_char(customer_type, "customer_type"),
    )
    return _put(buffer, offset, "enter_order", values)


class EnterOrderPacket:
    """One Enter Order in its SoupBinTCP Unsequenced Data packet, rewritten in place per order.

    ``packet`` is a 52-byte bytearray: the SoupBinTCP header (length 50, ``'U'``) and an Enter
    Order. Calling ``packet_writer(order_token, side, shares, stock, price)`` encodes the order
    into it as :func:`encode_enter_order` does -- with this object's ``time_in_force`` (default 0:
    immediate or cancel) and the other fields at their defaults -- and returns ``packet``, ready
    for ``socket.send``: one call, nothing allocated per order. A bad argument raises as
    :func:`encode_enter_order` does, before the packet is touched. The next call overwrites the
    packet: send (or copy) it first.
    """

    __slots__ = ("_packet", "_time_in_force")

    def __init__(self, time_in_force=0):
        _u32(time_in_force, "time_in_force")
        self._time_in_force = time_in_force
        self._packet = bytearray(b"\x00\x32U") + bytearray(49)

    @property
    def packet(self) -> bytearray:
        return self._packet

    @property
    def time_in_force(self):
        return self._time_in_force

    def __call__(self, order_token, side, shares, stock, price):
        encode_enter_order(self._packet, 3, order_token, side, shares, stock, price, self._time_in_force)
        return self._packet


def encode_replace_order(buffer, offset, existing_order_token, replacement_order_token, shares, price,
                         time_in_force=99998, display="Y", intermarket_sweep="N", minimum_quantity=0):
    """Write an OUCH 4.2 Replace Order ('U', 47 bytes) into ``buffer`` at ``offset``; return the end offset.

    Same rules as :func:`encode_enter_order`.
    """
    try:
        existing = existing_order_token.encode("ascii")
        replacement = replacement_order_token.encode("ascii")
        if len(existing) <= 14 and len(replacement) <= 14 and offset >= 0:
            chars = _CHAR_CACHE
            message = _REPLACE.pack(b"U", existing.ljust(14), replacement.ljust(14), shares, price, time_in_force,
                                    chars[display], chars[intermarket_sweep], minimum_quantity)
            _COPY[47].pack_into(buffer, offset, message)
            return offset + 47
    except Exception:  # noqa: BLE001 - the checked path below raises the precise error
        pass
    _check_offset(offset)
    values = (
        _text(existing_order_token, "existing_order_token", 14),
        _text(replacement_order_token, "replacement_order_token", 14),
        _u32(shares, "shares"), _u32(price, "price"), _u32(time_in_force, "time_in_force"),
        _cached_char(display, "display"), _cached_char(intermarket_sweep, "intermarket_sweep"),
        _u32(minimum_quantity, "minimum_quantity"),
    )
    return _put(buffer, offset, "replace_order", values)


def encode_cancel_order(buffer, offset, order_token, shares=0):
    """Write an OUCH 4.2 Cancel Order ('X', 19 bytes) into ``buffer`` at ``offset``; return the end offset.

    ``shares`` is the order's new intended size: 0 cancels all of it. Same rules as
    :func:`encode_enter_order`.
    """
    try:
        token = order_token.encode("ascii")
        if len(token) <= 14 and offset >= 0:
            _COPY[19].pack_into(buffer, offset, _CANCEL.pack(b"X", token.ljust(14), shares))
            return offset + 19
    except Exception:  # noqa: BLE001 - the checked path below raises the precise error
        pass
    _check_offset(offset)
    values = (_text(order_token, "order_token", 14), _u32(shares, "shares"))
    return _put(buffer, offset, "cancel_order", values)


def encode_modify_order(buffer, offset, order_token, side, shares):
    """Write an OUCH 4.2 Modify Order ('M', 20 bytes) into ``buffer`` at ``offset``; return the end offset.

    Same rules as :func:`encode_enter_order`.
    """
    try:
        token = order_token.encode("ascii")
        if len(token) <= 14 and offset >= 0:
            _COPY[20].pack_into(buffer, offset, _MODIFY.pack(b"M", token.ljust(14), _CHAR_CACHE[side], shares))
            return offset + 20
    except Exception:  # noqa: BLE001 - the checked path below raises the precise error
        pass
    _check_offset(offset)
    values = (_text(order_token, "order_token", 14), _cached_char(side, "side"), _u32(shares, "shares"))
    return _put(buffer, offset, "modify_order", values)


def encode(buffer, offset, name, values):
    """Write any OUCH 4.2 message, client or exchange, named ``name`` (``"accepted"``...); return the end offset.

    ``values`` is a sequence of the message's fields in layout order, type letter excluded (what a
    record's ``values()`` returns). An unknown ``name`` or the wrong number of values ->
    ``ValueError``; field and buffer errors as in :func:`encode_enter_order`.
    """
    _check_offset(offset)
    layout = MESSAGES.get(name) if isinstance(name, str) else None
    if layout is None:
        raise ValueError(f"unknown OUCH message name {name!r}")
    values = tuple(values)
    if len(values) != len(layout.fields):
        raise ValueError(f"OUCH {layout.title} takes {len(layout.fields)} values, got {len(values)}")
    converted = tuple(_convert(field, value) for (field, _), value in zip(layout.fields, values))
    return _put(buffer, offset, name, converted)


def _message_at(view: memoryview, offset: int, length: int, table: dict, direction: str) -> Layout:
    """Return the layout of the message at ``offset`` after checking its type and length."""
    nbytes = view.nbytes
    if offset < 0 or offset >= nbytes:
        raise ValueError(f"no OUCH message at offset {offset}: the buffer has {nbytes} bytes")
    layout = table.get(view[offset])
    if layout is None:
        raise ValueError(f"unknown OUCH {direction} message type {chr(view[offset])!r} at offset {offset}")
    if length >= 0 and length != layout.length:
        raise ValueError(f"OUCH {layout.title} at offset {offset} is {length} bytes, expected {layout.length}")
    if offset + layout.length > nbytes:
        raise ValueError(f"OUCH {layout.title} at offset {offset} is truncated: {nbytes - offset} of {layout.length} bytes")
    return layout


class _Record:
    """A reusable decoded OUCH message: ``decode`` refills it, fields read from its own copy."""

    __slots__ = ("_data", "_layout", "_offsets")
    _DIRECTION = EXCHANGE

    def __init__(self):
        self._data = bytes(MAX_LENGTH)
        self._layout = None
        self._offsets = {}

    def decode(self, buffer, offset=0, length=-1):
        """Decode the message at ``offset`` of ``buffer`` into this record; return the offset past it.

        ``length`` (when not -1) is the length the framing gave the message; it must be the
        layout's. An unknown type, a wrong length or a truncated message -> ``ValueError`` naming
        the offset, and the record keeps its previous message. The message's bytes are copied, so
        the buffer may be reused at once. O(1); the compiled record allocates nothing here.
        """
        _check_offset(offset)
        operator.index(length)
        view = _readable(buffer)
        layout = _message_at(view, offset, length, _BY_TYPE[self._DIRECTION], self._DIRECTION)
        self._data = bytes(view[offset:offset + layout.length])
        self._layout = layout
        self._offsets = _OFFSETS[layout.name]
        return offset + layout.length

    @property
    def name(self):
        """The decoded message's name (``"accepted"``...), or None before the first decode."""
        return None if self._layout is None else self._layout.name

    @property
    def type(self):
        """The decoded message's type letter, or None before the first decode."""
        return None if self._layout is None else self._layout.type

    @property
    def length(self):
        """The decoded message's length in bytes, 0 before the first decode."""
        return 0 if self._layout is None else self._layout.length

    def _get(self, index):
        where = self._offsets.get(index)
        if where is None:
            return None
        field = FIELDS[index]
        raw = self._data[where:where + field.width]
        if field.kind == ALPHA:
            return raw.decode("latin-1").rstrip(" ")
        if field.kind == CHAR:
            return raw.decode("latin-1")
        return int.from_bytes(raw, "big")

    def values(self):
        """Return the decoded message's fields in layout order (type excluded): ``encode``'s ``values``."""
        if self._layout is None:
            return ()
        return tuple(self._get(_FIELD_NUMBER[f.name]) for f, _ in self._layout.fields)

    def as_dict(self):
        """Return ``{"type": letter, field: value...}`` for the decoded message ({} before any)."""
        if self._layout is None:
            return {}
        out = {"type": self._layout.type}
        for field, _ in self._layout.fields:
            out[field.name] = self._get(_FIELD_NUMBER[field.name])
        return out


_FIELD_NUMBER = {f.name: i for i, f in enumerate(FIELDS)}
_OFFSETS = {name: {_FIELD_NUMBER[f.name]: off for f, off in layout.fields} for name, layout in MESSAGES.items()}


def _field_property(index):
    return property(lambda self: self._get(index), doc=FIELDS[index].doc)


for _index, _field in enumerate(FIELDS):
    setattr(_Record, _field.name, _field_property(_index))
del _index, _field


class ClientMessage(_Record, _Final):
    """A reusable record for the messages a client sends: Enter, Replace, Cancel and Modify Order.

    Fields a message does not carry read as None. Text fields read as str without their padding,
    integers as int (prices with 4 implied decimals). Not thread-safe: one decoding thread.
    """

    __slots__ = ()
    _DIRECTION = CLIENT


class ExchangeMessage(_Record, _Final):
    """A reusable record for the messages the exchange sends: Accepted, Executed, Canceled...

    Fields a message does not carry read as None. Text fields read as str without their padding,
    integers as int (prices with 4 implied decimals). Not thread-safe: one decoding thread.
    """

    __slots__ = ()
    _DIRECTION = EXCHANGE


def _walk(view: memoryview, direction: str):
    """Yield ``(layout, message offset)`` for every length-prefixed message, checking each first."""
    table = _BY_TYPE[direction]
    nbytes, position = view.nbytes, 0
    found = []
    while position < nbytes:
        if nbytes - position < 2:
            raise ValueError(f"truncated OUCH length prefix at offset {position}")
        length = _PREFIX.unpack_from(view, position)[0]
        start = position + 2
        if start + length > nbytes:
            raise ValueError(f"OUCH message at offset {start} is truncated: {nbytes - start} of {length} bytes")
        if length == 0:
            raise ValueError(f"empty OUCH message at offset {start}")
        found.append((_message_at(view, start, length, table, direction), start))
        position = start + length
    return found


def decode_batch(buffer, direction="exchange"):
    """Decode a buffer of 2-byte-length-prefixed messages into one numpy array per message name.

    Returns ``{name: array}`` for every message of ``direction`` (``"exchange"`` or ``"client"``),
    empty arrays included; each row is ``position`` (the message's index in the buffer) then its
    fields (``spec.batch_dtype``: native integers, alpha fields as padded ``S`` bytes). The whole
    buffer is checked before anything is allocated: a wrong length, an unknown type or a truncated
    message -> ``ValueError`` naming its offset. Write such buffers with ``spec.frame``.
    """
    if direction not in (CLIENT, EXCHANGE):
        raise ValueError(f"direction must be 'client' or 'exchange', got {direction!r}")
    view = _readable(buffer)
    found = _walk(view, direction)
    grouped = {layout.name: [] for layout in _BY_TYPE[direction].values()}
    for index, (layout, start) in enumerate(found):
        grouped[layout.name].append((index, start))
    out = {}
    for name, items in grouped.items():
        length = MESSAGES[name].length
        rows = np.zeros(len(items), dtype=batch_dtype(name))
        if items:
            wire = np.frombuffer(b"".join(view[s:s + length] for _, s in items), dtype=wire_dtype(name))
            rows["position"] = [index for index, _ in items]
            for field, _ in MESSAGES[name].fields:
                rows[field.name] = wire[field.name]
        out[name] = rows
    return out
