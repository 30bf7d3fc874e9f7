# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled ITCH 5.0 decoder: the twin of :mod:`lowlat.itch._py` (same names, signatures, errors).

The batch decoder makes two passes over the buffer without the GIL: the first walks the length
prefixes, validates every message and counts each requested type; then one numpy array per type
is allocated at its exact size and the second pass converts every field straight from the wire
into its column through a per-type table of (source offset, destination offset, conversion)
built from :mod:`lowlat.itch.spec` at import. No Python object is created per message or field.
Every read is checked against the buffer's length (taken from the buffer protocol) before it is
made: a message is only converted after the first pass proved it complete and of its type's size.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

cimport numpy as cnp
import numpy as np
import struct as _struct

from . import spec as _spec
from .framing import Batch, MoldHeader, decode_mold_with, requested_types
from .stream import StreamDecoderBase, read_with

cnp.import_array()

__all__ = ["Message", "StreamDecoder", "decode", "decode_chunk", "decode_mold", "read"]

cdef enum Conversion:
    COPY = 0        # alpha: bytes as on the wire
    BE16 = 1
    BE32 = 2
    BE64 = 3
    BE48 = 4        # the timestamp: 6 bytes -> int64

cdef struct FieldOp:
    int source       # offset in the wire message
    int target       # offset in the output record
    int width        # wire width
    int conversion

DEF MAX_FIELDS = 24

cdef int _size[256]                     # wire size per type code; 0 = not ITCH 5.0
cdef FieldOp _ops[256][MAX_FIELDS]
cdef int _nops[256]
cdef int _position_target[256]


cdef inline uint16_t _be16(const unsigned char* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline uint32_t _be32(const unsigned char* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline uint64_t _be64(const unsigned char* p) noexcept nogil:
    return (<uint64_t>_be32(p) << 32) | _be32(p + 4)


cdef inline int64_t _be48(const unsigned char* p) noexcept nogil:
    return <int64_t>((<uint64_t>_be16(p) << 32) | _be32(p + 2))


cdef void _build_tables() except *:
    cdef int code, i
    memset(_size, 0, sizeof(_size))
    memset(_nops, 0, sizeof(_nops))
    for message in _spec.MESSAGES:
        code = ord(message.type)
        _size[code] = message.size
        dtype = _spec.dtype_of(message.type)
        _position_target[code] = dtype.fields["position"][1]
        source = 1
        i = 0
        for field in message.all_fields:
            if i >= MAX_FIELDS:
                raise RuntimeError("too many fields in an ITCH message spec")
            _ops[code][i].source = source
            _ops[code][i].target = dtype.fields[field.name][1]
            _ops[code][i].width = field.width
            if field.kind == _spec.ALPHA:
                _ops[code][i].conversion = COPY
            elif field.kind == _spec.TIMESTAMP:
                _ops[code][i].conversion = BE48
            else:
                _ops[code][i].conversion = {2: BE16, 4: BE32, 8: BE64}[field.width]
            source += field.width
            i += 1
        _nops[code] = i


_build_tables()


cdef inline void _convert(int code, const unsigned char* message, char* record, int64_t position) noexcept nogil:
    cdef int i
    cdef const FieldOp* op
    cdef uint16_t v16
    cdef uint32_t v32
    cdef uint64_t v64
    cdef int64_t s64
    memcpy(record + _position_target[code], &position, 8)
    for i in range(_nops[code]):
        op = &_ops[code][i]
        if op.conversion == BE32:
            v32 = _be32(message + op.source)
            memcpy(record + op.target, &v32, 4)
        elif op.conversion == BE64:
            v64 = _be64(message + op.source)
            memcpy(record + op.target, &v64, 8)
        elif op.conversion == BE16:
            v16 = _be16(message + op.source)
            memcpy(record + op.target, &v16, 2)
        elif op.conversion == BE48:
            s64 = _be48(message + op.source)
            memcpy(record + op.target, &s64, 8)
        else:
            memcpy(record + op.target, message + op.source, op.width)


cdef extern from *:
    """
    /* Straight-line converters for the order-flow types (nearly every message of a real feed).
       Each struct mirrors the numpy dtype spec.dtype_of(t) (align=True follows the C rules);
       the module checks every offset against the dtype at import and falls back to the
       table-driven converter for any type whose layout differs. */
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>
    static inline uint16_t ll_be16(const unsigned char* p) { return (uint16_t)((p[0] << 8) | p[1]); }
    static inline uint32_t ll_be32(const unsigned char* p) { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
    static inline uint64_t ll_be64(const unsigned char* p) { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
    static inline int64_t ll_be48(const unsigned char* p) { return (int64_t)(((uint64_t)ll_be16(p) << 32) | ll_be32(p + 2)); }

    #define LL_HEAD int64_t position; uint16_t stock_locate; uint16_t tracking_number; int64_t timestamp;
    typedef struct { LL_HEAD uint64_t ref; char side; uint32_t shares; char stock[8]; uint32_t price; } ll_A;
    typedef struct { LL_HEAD uint64_t ref; char side; uint32_t shares; char stock[8]; uint32_t price; char attribution[4]; } ll_F;
    typedef struct { LL_HEAD uint64_t ref; uint32_t executed; uint64_t match; } ll_E;
    typedef struct { LL_HEAD uint64_t ref; uint32_t executed; uint64_t match; char printable; uint32_t price; } ll_C;
    typedef struct { LL_HEAD uint64_t ref; uint32_t cancelled; } ll_X;
    typedef struct { LL_HEAD uint64_t ref; } ll_D;
    typedef struct { LL_HEAD uint64_t ref; uint64_t new_ref; uint32_t shares; uint32_t price; } ll_U;

    #define LL_FILL_HEAD(r, m, pos) (r)->position = (pos); (r)->stock_locate = ll_be16((m) + 1); \
        (r)->tracking_number = ll_be16((m) + 3); (r)->timestamp = ll_be48((m) + 5);

    static void ll_conv_A(const unsigned char* m, char* out, int64_t pos) {
        ll_A* r = (ll_A*)out; LL_FILL_HEAD(r, m, pos)
        r->ref = ll_be64(m + 11); r->side = (char)m[19]; r->shares = ll_be32(m + 20);
        memcpy(r->stock, m + 24, 8); r->price = ll_be32(m + 32);
    }
    static void ll_conv_F(const unsigned char* m, char* out, int64_t pos) {
        ll_F* r = (ll_F*)out; LL_FILL_HEAD(r, m, pos)
        r->ref = ll_be64(m + 11); r->side = (char)m[19]; r->shares = ll_be32(m + 20);
        memcpy(r->stock, m + 24, 8); r->price = ll_be32(m + 32); memcpy(r->attribution, m + 36, 4);
    }
    static void ll_conv_E(const unsigned char* m, char* out, int64_t pos) {
        ll_E* r = (ll_E*)out; LL_FILL_HEAD(r, m, pos)
        r->ref = ll_be64(m + 11); r->executed = ll_be32(m + 19); r->match = ll_be64(m + 23);
    }
    static void ll_conv_C(const unsigned char* m, char* out, int64_t pos) {
        ll_C* r = (ll_C*)out; LL_FILL_HEAD(r, m, pos)
        r->ref = ll_be64(m + 11); r->executed = ll_be32(m + 19); r->match = ll_be64(m + 23);
        r->printable = (char)m[31]; r->price = ll_be32(m + 32);
    }
    static void ll_conv_X(const unsigned char* m, char* out, int64_t pos) {
        ll_X* r = (ll_X*)out; LL_FILL_HEAD(r, m, pos)
        r->ref = ll_be64(m + 11); r->cancelled = ll_be32(m + 19);
    }
    static void ll_conv_D(const unsigned char* m, char* out, int64_t pos) {
        ll_D* r = (ll_D*)out; LL_FILL_HEAD(r, m, pos)
        r->ref = ll_be64(m + 11);
    }
    static void ll_conv_U(const unsigned char* m, char* out, int64_t pos) {
        ll_U* r = (ll_U*)out; LL_FILL_HEAD(r, m, pos)
        r->ref = ll_be64(m + 11); r->new_ref = ll_be64(m + 19); r->shares = ll_be32(m + 27); r->price = ll_be32(m + 31);
    }

    #define LL_OFF(T, f) ((long)offsetof(T, f))
    /* The layout of converter `type`: field offsets in dtype order (position first), -1 ends; the size. */
    static long ll_layout(char type, long* out) {
        int i = 0;
        #define LL_H(T) out[i++] = LL_OFF(T, position); out[i++] = LL_OFF(T, stock_locate); \
            out[i++] = LL_OFF(T, tracking_number); out[i++] = LL_OFF(T, timestamp);
        switch (type) {
        case 'A': LL_H(ll_A) out[i++] = LL_OFF(ll_A, ref); out[i++] = LL_OFF(ll_A, side); out[i++] = LL_OFF(ll_A, shares);
                  out[i++] = LL_OFF(ll_A, stock); out[i++] = LL_OFF(ll_A, price); out[i] = -1; return sizeof(ll_A);
        case 'F': LL_H(ll_F) out[i++] = LL_OFF(ll_F, ref); out[i++] = LL_OFF(ll_F, side); out[i++] = LL_OFF(ll_F, shares);
                  out[i++] = LL_OFF(ll_F, stock); out[i++] = LL_OFF(ll_F, price); out[i++] = LL_OFF(ll_F, attribution);
                  out[i] = -1; return sizeof(ll_F);
        case 'E': LL_H(ll_E) out[i++] = LL_OFF(ll_E, ref); out[i++] = LL_OFF(ll_E, executed); out[i++] = LL_OFF(ll_E, match);
                  out[i] = -1; return sizeof(ll_E);
        case 'C': LL_H(ll_C) out[i++] = LL_OFF(ll_C, ref); out[i++] = LL_OFF(ll_C, executed); out[i++] = LL_OFF(ll_C, match);
                  out[i++] = LL_OFF(ll_C, printable); out[i++] = LL_OFF(ll_C, price); out[i] = -1; return sizeof(ll_C);
        case 'X': LL_H(ll_X) out[i++] = LL_OFF(ll_X, ref); out[i++] = LL_OFF(ll_X, cancelled); out[i] = -1; return sizeof(ll_X);
        case 'D': LL_H(ll_D) out[i++] = LL_OFF(ll_D, ref); out[i] = -1; return sizeof(ll_D);
        case 'U': LL_H(ll_U) out[i++] = LL_OFF(ll_U, ref); out[i++] = LL_OFF(ll_U, new_ref); out[i++] = LL_OFF(ll_U, shares);
                  out[i++] = LL_OFF(ll_U, price); out[i] = -1; return sizeof(ll_U);
        }
        return -1;
    }
    typedef void (*ll_converter)(const unsigned char*, char*, int64_t);
    static ll_converter ll_converter_of(char type) {
        switch (type) {
        case 'A': return ll_conv_A; case 'F': return ll_conv_F; case 'E': return ll_conv_E; case 'C': return ll_conv_C;
        case 'X': return ll_conv_X; case 'D': return ll_conv_D; case 'U': return ll_conv_U;
        }
        return NULL;
    }
    """
    ctypedef void (*ll_converter)(const unsigned char*, char*, int64_t) noexcept nogil
    long ll_layout(char type, long* out) noexcept nogil
    ll_converter ll_converter_of(char type) noexcept nogil

cdef ll_converter _special[256]


cdef void _build_special() except *:
    cdef long offsets[32]
    cdef long size
    cdef int code, i
    memset(_special, 0, sizeof(_special))
    for t in "AFECXDU":
        code = ord(t)
        size = ll_layout(<char>code, offsets)
        dtype = _spec.dtype_of(t)
        expected = [dtype.fields[name][1] for name in dtype.names]
        got = []
        i = 0
        while offsets[i] != -1:
            got.append(offsets[i])
            i += 1
        if got == expected and size == dtype.itemsize:
            _special[code] = ll_converter_of(<char>code)


_build_special()


cdef enum Failure:
    NONE = 0
    EMPTY = 1
    BAD_LENGTH = 2


def decode_chunk(buffer, types, first_position, base_offset, allow_partial, max_count):
    """Decode file-form ``buffer``; the worker behind :func:`decode`, streaming and MoldUDP64.

    ``types``: a tuple from ``requested_types``; ``first_position``: the first message's
    position; ``base_offset``: added to byte offsets in errors; ``allow_partial``: stop before an
    incomplete message at the end instead of raising; ``max_count``: stop after that many
    messages (-1: no limit).
    """
    cdef Py_buffer view
    cdef const unsigned char* data
    cdef Py_ssize_t n, off = 0, end, index = 0, unknown = 0, limit = max_count
    cdef Py_ssize_t counts[256]
    cdef char* cursor[256]
    cdef Py_ssize_t itemsize[256]
    cdef unsigned char wanted[256]
    cdef int code, length, size, failure = NONE
    cdef int64_t position0 = first_position
    cdef bint partial_ok = bool(allow_partial)
    cdef Py_ssize_t base = base_offset
    memset(counts, 0, sizeof(counts))
    memset(wanted, 0, sizeof(wanted))
    memset(cursor, 0, sizeof(cursor))
    for t in types:
        wanted[<unsigned char>ord(t)] = 1
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    try:
        data = <const unsigned char*>view.buf
        n = view.len
        with nogil:
            while off + 2 <= n and index != limit:
                length = (data[off] << 8) | data[off + 1]
                end = off + 2 + length
                if end > n:
                    break
                if length == 0:
                    failure = EMPTY
                    break
                code = data[off + 2]
                size = _size[code]
                if size == 0:
                    unknown += 1
                elif size != length:
                    failure = BAD_LENGTH
                    break
                elif wanted[code]:
                    counts[code] += 1
                index += 1
                off = end
        if failure == EMPTY:
            raise ValueError(f"empty message (length 0) at byte offset {base + off}")
        if failure == BAD_LENGTH:
            raise ValueError(
                f"message type {chr(code)!r} has length {length}, expected {size}, at byte offset {base + off}"
            )
        if off < n and index != limit and not partial_ok:
            raise ValueError(f"truncated message at byte offset {base + off}: {n - off} bytes left")
        arrays = {}
        for t in types:
            code = ord(t)
            arr = np.empty(counts[code], dtype=_spec.dtype_of(t))
            arrays[t] = arr
            cursor[code] = <char*>cnp.PyArray_DATA(arr)
            itemsize[code] = arr.dtype.itemsize
        _fill(data, off, cursor, itemsize, wanted, position0)
    finally:
        PyBuffer_Release(&view)
    return Batch(arrays, count=index, unknown=unknown, consumed=off, next_position=first_position + index)


cdef void _fill(const unsigned char* data, Py_ssize_t stop, char** cursor, Py_ssize_t* itemsize,
                const unsigned char* wanted, int64_t position) noexcept nogil:
    # Every message below ``stop`` was validated by the first pass: complete, of its type's size.
    cdef Py_ssize_t off = 0
    cdef int code, length
    while off < stop:
        length = (data[off] << 8) | data[off + 1]
        code = data[off + 2]
        if wanted[code] and _size[code] != 0:
            if _special[code] != NULL:
                _special[code](data + off + 2, cursor[code], position)
            else:
                _convert(code, data + off + 2, cursor[code], position)
            cursor[code] += itemsize[code]
        position += 1
        off += 2 + length


def decode(buffer, *, types=None):
    """Decode every message of file-form ``buffer`` (2-byte big-endian length, message, ...).

    Return a :class:`Batch`: ``{type char: structured array}`` for each of ``types`` (all ITCH
    5.0 types by default; a str such as ``"AFEXDU"`` or an iterable of chars), native-endian
    columns as :func:`lowlat.itch.spec.dtype_of` describes, ``position`` numbering every message
    of the buffer from 0. Messages of an unknown type are skipped and counted in
    ``batch.unknown``. ``ValueError`` naming the byte offset when a message is truncated at the
    end, has length 0, or has a length that does not match its type. O(len(buffer)).
    """
    return decode_chunk(buffer, requested_types(types), 0, 0, False, -1)


def decode_mold(packet, *, types=None):
    """Decode one MoldUDP64 packet: return ``(header, batch)``, ``position`` = sequence number.

    A heartbeat (count 0) or end-of-session (count 0xFFFF) packet gives an empty batch.
    ``ValueError`` naming the byte offset when the header is short, a block or the count overruns
    the packet, or bytes trail the last block.
    """
    return decode_mold_with(decode_chunk, packet, requested_types(types))


class StreamDecoder(StreamDecoderBase):
    __doc__ = StreamDecoderBase.__doc__
    _decode_chunk = decode_chunk


def read(path, chunk_size=1 << 20, *, types=None, progress=None):
    """Yield a :class:`Batch` per ``chunk_size`` bytes of file-form ITCH file ``path``.

    Memory is bounded by ``chunk_size`` (one reused buffer) whatever the file size; a progress
    line goes to stderr when it is a terminal and the file is long (``progress`` forces it on or
    off). ``ValueError`` naming the byte offset on bad framing or a file ending inside a message.
    """
    return read_with(StreamDecoder, path, chunk_size, types=types, progress=progress)


# --- one message at a time ---------------------------------------------------------------------

DEF RECORD_BYTES = 64

cdef dict _FIELDS = {}
for _message in _spec.MESSAGES:
    _table = {}
    _offset = 1
    for _field in _message.all_fields:
        _table[_field.name] = (_offset, _field.width, _field.kind == _spec.ALPHA)
        _offset += _field.width
    _FIELDS[ord(_message.type)] = _table

# Hot fields read by offset without a dict lookup: -1 where the type has no such field.
cdef enum Hot:
    ORDER_REFERENCE = 0
    SHARES = 1
    PRICE = 2
    SIDE = 3
    STOCK = 4
    NEW_ORDER_REFERENCE = 5
    EXECUTED_SHARES = 6
    CANCELLED_SHARES = 7
    HOT_COUNT = 8

_HOT_NAMES = ("order_reference_number", "shares", "price", "buy_sell_indicator", "stock",
              "new_order_reference_number", "executed_shares", "cancelled_shares")
cdef int _hot_offset[256][8]
cdef int _hot_width[256][8]


cdef void _build_hot() except *:
    cdef int code, h
    for code in range(256):
        for h in range(HOT_COUNT):
            _hot_offset[code][h] = -1
            _hot_width[code][h] = 0
    for code, table in _FIELDS.items():
        for h, name in enumerate(_HOT_NAMES):
            if name in table:
                _hot_offset[code][h] = table[name][0]
                _hot_width[code][h] = table[name][1]


_build_hot()


@cython.final
cdef class Message:
    """One ITCH message decoded into a reusable record: parse into it again and again.

    ``parse(data, offset=0)`` copies the raw message (no length prefix) starting at ``offset``
    into the record and returns its size; fields are read on access by their spec name
    (``msg.stock_locate``, ``msg.timestamp``, ``msg.order_reference_number``, ``msg.price``...):
    integers and prices as int (prices are the wire's integer; see
    :func:`lowlat.itch.spec.price_to_float`), alpha fields as bytes. A name the current type
    does not have raises ``AttributeError``. One thread at a time.
    """

    cdef unsigned char _buffer[RECORD_BYTES]
    cdef int _code
    cdef int _size

    def __cinit__(self):
        self._code = 0
        self._size = 0

    def parse(self, data, Py_ssize_t offset=0):
        """Copy the raw message at ``data[offset:]`` into this record; return its size in bytes.

        ``ValueError`` naming the byte offset when ``offset`` is out of range, the type is not
        ITCH 5.0, or ``data`` ends before the type's size. The record is unchanged on error.
        """
        cdef Py_buffer view
        cdef const unsigned char* p
        cdef Py_ssize_t n
        cdef int code, size
        if type(data) is bytes:
            # The hot path: no buffer export for the commonest input.
            p = <const unsigned char*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
            return self._take(p, n, offset)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._take(<const unsigned char*>view.buf, view.len, offset)
        finally:
            PyBuffer_Release(&view)

    cdef int _take(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t offset) except -1:
        cdef int code, size
        if offset < 0 or offset >= n:
            raise ValueError(f"offset {offset} is outside the data (length {n})")
        code = p[offset]
        size = _size[code]
        if size == 0:
            raise ValueError(f"unknown message type {chr(code)!r} at byte offset {offset}")
        if offset + size > n:
            raise ValueError(f"truncated message at byte offset {offset}: type {chr(code)!r} needs {size} bytes, {n - offset} left")
        memcpy(self._buffer, p + offset, size)
        self._code = code
        self._size = size
        return size

    @property
    def type(self):
        """The message type char ('' before the first parse)."""
        return chr(self._code) if self._code else ""

    @property
    def size(self):
        """The wire size of the current message in bytes (0 before the first parse)."""
        return self._size

    cdef int _check(self) except -1:
        if not self._code:
            raise AttributeError("the record holds no message yet: call parse() first")
        return 0

    @property
    def stock_locate(self):
        self._check()
        return _be16(self._buffer + 1)

    @property
    def tracking_number(self):
        self._check()
        return _be16(self._buffer + 3)

    @property
    def timestamp(self):
        """Nanoseconds since midnight (the 6-byte wire timestamp)."""
        self._check()
        return _be48(self._buffer + 5)

    cdef object _hot(self, int h, str name):
        cdef int offset = _hot_offset[self._code][h]
        cdef int width = _hot_width[self._code][h]
        if offset < 0:
            raise AttributeError(f"message type {self.type!r} has no field {name!r}")
        if h == SIDE or h == STOCK:
            return (<char*>self._buffer)[offset:offset + width]
        if width == 4:
            return _be32(self._buffer + offset)
        return _be64(self._buffer + offset)

    @property
    def order_reference_number(self):
        return self._hot(ORDER_REFERENCE, "order_reference_number")

    @property
    def shares(self):
        return self._hot(SHARES, "shares")

    @property
    def price(self):
        return self._hot(PRICE, "price")

    @property
    def buy_sell_indicator(self):
        return self._hot(SIDE, "buy_sell_indicator")

    @property
    def stock(self):
        return self._hot(STOCK, "stock")

    @property
    def new_order_reference_number(self):
        return self._hot(NEW_ORDER_REFERENCE, "new_order_reference_number")

    @property
    def executed_shares(self):
        return self._hot(EXECUTED_SHARES, "executed_shares")

    @property
    def cancelled_shares(self):
        return self._hot(CANCELLED_SHARES, "cancelled_shares")

    def __getattr__(self, name):
        table = _FIELDS.get(self._code)
        if table is None or name not in table:
            raise AttributeError(f"message type {self.type!r} has no field {name!r}")
        offset, width, alpha = table[name]
        return self._read(offset, width, alpha)

    cdef object _read(self, int offset, int width, bint alpha):
        if alpha:
            return (<char*>self._buffer)[offset:offset + width]
        if width == 2:
            return _be16(self._buffer + offset)
        if width == 4:
            return _be32(self._buffer + offset)
        if width == 6:
            return _be48(self._buffer + offset)
        return _be64(self._buffer + offset)

    def to_dict(self):
        """Return every field of the current message by name, ``type`` first."""
        self._check()
        out = {"type": self.type}
        for name, (offset, width, alpha) in _FIELDS[self._code].items():
            out[name] = self._read(offset, width, alpha)
        return out

    def to_bytes(self):
        """Return the current raw message (no length prefix)."""
        return (<char*>self._buffer)[:self._size]

    def __repr__(self):
        if not self._code:
            return "Message()"
        return f"Message({self.to_dict()!r})"


def _specialised_types():
    """Return the type chars decoded by a straight-line converter (the rest use the table)."""
    return "".join(chr(c) for c in range(256) if _special[c] != NULL)
