# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled OUCH 4.2 codec: the twin of :mod:`lowlat.ouch._py` (same names, signatures, errors).

Encoders write one message into a caller's writable buffer at an offset and return the offset just
past it; decoders fill a reusable record. Layouts come from :mod:`lowlat.ouch.spec`. Sans-I/O: bytes
in, bytes out, no sockets.

Buffers are taken through the buffer protocol (never through ``len()`` or attributes); every write
and read is checked against the size the exporter reports. Encoders convert every field into a
stack scratch message first and only then acquire the buffer, so a bad field never leaves a
half-written message. Every index below is checked against the buffer or a table size, which is
why bounds checking is off module-wide.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLong, PyLong_Check
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeLatin1
from libc.stdint cimport int8_t, int16_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from lowlat._bigendian cimport (load_u32 as _load_u32, load_u64 as _load_u64, store_u32 as _store_u32,
                                store_u64 as _store_u64)

cimport numpy as cnp
import numpy as np
from operator import index as _operator_index

from lowlat.ouch.spec import ALPHA, CHAR, CLIENT, EXCHANGE, FIELDS, MAX_LENGTH, MESSAGES, U32, U64, batch_dtype, by_type

cnp.import_array()

cdef extern from "Python.h":
    # The ASCII fast path: compact ASCII str objects hold their characters as one byte each.
    bint PyUnicode_IS_ASCII(object) nogil
    void* PyUnicode_DATA(object) nogil
    Py_ssize_t PyUnicode_GET_LENGTH(object) nogil
    # Declared without Cython's except clause so a failure can be turned into our own TypeError.
    int _get_buffer "PyObject_GetBuffer"(object, Py_buffer*, int)
    void PyErr_Clear()

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

cdef enum:
    N_FIELDS_MAX = 64      # table sizes: spec.FIELDS and spec.MESSAGES must fit (checked at import)
    N_MESSAGES_MAX = 32
    SCRATCH = 128          # the stack scratch message: spec.MAX_LENGTH must fit

cdef enum Kind:
    K_ALPHA = 0
    K_CHAR = 1
    K_U32 = 2
    K_U64 = 3

# The layout tables, filled once at import from lowlat.ouch.spec (the only place offsets are written).
cdef int _n_fields = len(FIELDS)
cdef int _n_messages = len(MESSAGES)
cdef uint8_t _field_kind[N_FIELDS_MAX]
cdef uint8_t _field_width[N_FIELDS_MAX]
cdef int16_t _offset_of[N_MESSAGES_MAX][N_FIELDS_MAX]     # message, field -> offset, or -1 when absent
cdef int16_t _message_length[N_MESSAGES_MAX]
cdef uint8_t _message_letter[N_MESSAGES_MAX]
cdef int16_t _message_nfields[N_MESSAGES_MAX]
cdef int16_t _message_field[N_MESSAGES_MAX][N_FIELDS_MAX]   # message, k -> field number of its k-th field
cdef int8_t _by_letter[2][256]                             # direction (0 client, 1 exchange), letter -> message
cdef list _names = list(MESSAGES)
cdef list _titles = [m.title for m in MESSAGES.values()]
cdef list _field_names = [f.name for f in FIELDS]
cdef dict _message_number = {name: i for i, name in enumerate(MESSAGES)}
cdef list _type_strings = [m.type for m in MESSAGES.values()]
# as_dict's starting point per message: "type" and every field name, in order (values filled in).
cdef list _dict_templates = [{"type": m.type, **{f.name: None for f, _ in m.fields}} for m in MESSAGES.values()]

_KINDS = {ALPHA: K_ALPHA, CHAR: K_CHAR, U32: K_U32, U64: K_U64}


def _fill_tables():
    cdef int i, k, m
    assert _n_fields <= N_FIELDS_MAX and _n_messages <= N_MESSAGES_MAX and MAX_LENGTH <= SCRATCH
    field_number = {f.name: i for i, f in enumerate(FIELDS)}
    for i, f in enumerate(FIELDS):
        _field_kind[i] = _KINDS[f.kind]
        _field_width[i] = f.width
    memset(_by_letter, 0xFF, sizeof(_by_letter))
    for m, layout in enumerate(MESSAGES.values()):
        for i in range(N_FIELDS_MAX):
            _offset_of[m][i] = -1
        _message_length[m] = layout.length
        _message_letter[m] = ord(layout.type)
        _message_nfields[m] = len(layout.fields)
        for k, (f, offset) in enumerate(layout.fields):
            _offset_of[m][field_number[f.name]] = offset
            _message_field[m][k] = field_number[f.name]
        _by_letter[0 if layout.direction == CLIENT else 1][ord(layout.type)] = m


_fill_tables()

cdef int M_ENTER = _message_number["enter_order"]
cdef int M_REPLACE = _message_number["replace_order"]
cdef int M_CANCEL = _message_number["cancel_order"]
cdef int M_MODIFY = _message_number["modify_order"]
# The named encoders below write these lengths as constants.
assert (_message_length[M_ENTER], _message_length[M_REPLACE], _message_length[M_CANCEL], _message_length[M_MODIFY]) == (49, 47, 19, 20)


# Field conversion: each writes one field into the scratch message or raises naming the field. The
# raising lives in separate functions so that the inline fast paths stay a few instructions long.

cdef int _bad_text(object value, Py_ssize_t width, str name) except -1:
    if PyUnicode_Check(value) or PyBytes_Check(value):
        if PyUnicode_Check(value) and not PyUnicode_IS_ASCII(value):
            raise ValueError(f"{name} must be ASCII, got {value!r}")
        raise ValueError(f"{name} is {len(value)} characters, at most {width} fit")
    raise TypeError(f"{name} must be str or bytes, got {type(value).__name__}")


cdef int _bad_char(object value, str name) except -1:
    if PyUnicode_Check(value) or PyBytes_Check(value):
        if PyUnicode_Check(value) and not PyUnicode_IS_ASCII(value):
            raise ValueError(f"{name} must be ASCII, got {value!r}")
        raise ValueError(f"{name} must be one character, got {len(value)}")
    raise TypeError(f"{name} must be str or bytes, got {type(value).__name__}")


cdef int _bad_int(object value, str name, str largest) except -1:
    if not PyLong_Check(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    raise ValueError(f"{name} must be in [0, {largest}], got {value}")


cdef inline int _put_text(unsigned char* p, object value, Py_ssize_t width, str name) except -1:
    cdef const char* chars
    cdef Py_ssize_t n, i
    if PyUnicode_Check(value) and PyUnicode_IS_ASCII(value):
        chars = <const char*>PyUnicode_DATA(value)
        n = PyUnicode_GET_LENGTH(value)
    elif PyBytes_Check(value):
        chars = PyBytes_AS_STRING(value)
        n = PyBytes_GET_SIZE(value)
    else:
        return _bad_text(value, width, name)
    if n > width:
        return _bad_text(value, width, name)
    # Alpha fields are left-justified and space-padded. Inlined, width is a constant, so the fill is
    # a few stores; the copy is a short loop (at most 14 bytes) rather than a libc call.
    memset(p, 32, width)
    for i in range(n):
        p[i] = chars[i]
    return 0


cdef inline int _put_char(unsigned char* p, object value, str name) except -1:
    if PyUnicode_Check(value) and PyUnicode_IS_ASCII(value) and PyUnicode_GET_LENGTH(value) == 1:
        p[0] = (<const unsigned char*>PyUnicode_DATA(value))[0]
        return 0
    if PyBytes_Check(value) and PyBytes_GET_SIZE(value) == 1:
        p[0] = <unsigned char>PyBytes_AS_STRING(value)[0]
        return 0
    return _bad_char(value, name)


cdef object _as_int(object value, str name):
    """Return ``value.__index__()`` (numpy integers...), or raise the int TypeError naming ``name``."""
    try:
        return _operator_index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


cdef int _put_u32_index(unsigned char* p, object value, str name) except -1:
    """The slow path of ``_put_u32`` for objects that are not ints but have ``__index__``."""
    cdef int overflow = 0
    cdef long long x
    number = _as_int(value, name)
    x = PyLong_AsLongLongAndOverflow(number, &overflow)
    if overflow != 0 or x < 0 or x > <long long>0xFFFFFFFFU:
        return _bad_int(number, name, "4294967295")
    _store_u32(p, <uint32_t>x)
    return 0


cdef inline int _put_u32(unsigned char* p, object value, str name) except -1:
    cdef int overflow = 0
    cdef long long x
    if not PyLong_Check(value):
        return _put_u32_index(p, value, name)
    x = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow != 0 or x < 0 or x > <long long>0xFFFFFFFFU:
        return _bad_int(value, name, "4294967295")
    _store_u32(p, <uint32_t>x)
    return 0


cdef int _put_u64(unsigned char* p, object value, str name) except -1:
    cdef int overflow = 0
    cdef long long x
    cdef uint64_t u
    if not PyLong_Check(value):
        return _put_u64(p, _as_int(value, name), name)
    x = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow == 0 and x >= 0:
        u = <uint64_t>x
    elif overflow > 0 and value <= 0xFFFFFFFFFFFFFFFF:
        u = PyLong_AsUnsignedLongLong(value)
    else:
        return _bad_int(value, name, "18446744073709551615")
    _store_u64(p, u)
    return 0


cdef int _put_field(unsigned char* message, int m, int field, object value) except -1:
    cdef unsigned char* p = message + _offset_of[m][field]
    cdef int kind = _field_kind[field]
    name = _field_names[field]
    if kind == K_ALPHA:
        return _put_text(p, value, _field_width[field], name)
    if kind == K_CHAR:
        return _put_char(p, value, name)
    if kind == K_U32:
        return _put_u32(p, value, name)
    return _put_u64(p, value, name)


cdef int _bad_buffer(object buffer, Py_ssize_t offset, int m) except -1:
    cdef Py_buffer view
    if _get_buffer(buffer, &view, PyBUF_WRITABLE) != 0:
        PyErr_Clear()
        raise TypeError("buffer must be a writable contiguous buffer")
    nbytes = view.len
    PyBuffer_Release(&view)
    raise ValueError(f"OUCH {_titles[m]} needs {_message_length[m]} bytes at offset {offset}, the buffer has {nbytes}")


cdef inline Py_ssize_t _write(object buffer, Py_ssize_t offset, int m, Py_ssize_t length,
                              const unsigned char* message) except -1:
    """Copy the finished scratch ``message`` into ``buffer`` at ``offset``; return the end offset.

    ``length`` is the message's length (``_message_length[m]``); the named encoders pass it as a
    constant so the copy compiles to a few moves.
    """
    cdef Py_buffer view
    if _get_buffer(buffer, &view, PyBUF_WRITABLE) != 0:
        PyErr_Clear()
        return _bad_buffer(buffer, offset, m)
    if offset < 0 or offset + length > view.len:
        PyBuffer_Release(&view)
        return _bad_buffer(buffer, offset, m)
    memcpy(<unsigned char*>view.buf + offset, message, length)
    PyBuffer_Release(&view)
    return offset + length


def encode_enter_order(object buffer, Py_ssize_t offset, object order_token, object side, object shares,
                       object stock, object price, object time_in_force=99998, object firm="",
                       object display="Y", object capacity="A", object intermarket_sweep="N",
                       object minimum_quantity=0, object cross_type="N", object customer_type=" "):
    """Write an OUCH 4.2 Enter Order ('O', 49 bytes) into ``buffer`` at ``offset``; return the end offset.

    ``buffer`` is any writable contiguous buffer (bytearray, numpy array, mmap...); nothing is
    allocated per order by the compiled backend. Text fields take str (ASCII) or bytes and are
    space-padded; ``price`` is an int with 4 implied decimals. A value of the wrong type ->
    ``TypeError``, out of range or too long -> ``ValueError`` naming the field (checked before the
    buffer is touched); a message that does not fit at ``offset`` -> ``ValueError``.
    """
    cdef unsigned char message[SCRATCH]
    _enter_order(message, order_token, side, shares, stock, price, time_in_force, firm, display, capacity,
                 intermarket_sweep, minimum_quantity, cross_type, customer_type)
    return _write(buffer, offset, M_ENTER, 49, message)


cdef int _enter_order(unsigned char* message, object order_token, object side, object shares, object stock,
                      object price, object time_in_force, object firm, object display, object capacity,
                      object intermarket_sweep, object minimum_quantity, object cross_type,
                      object customer_type) except -1:
    """An Enter Order's 49 bytes into the scratch ``message``, every field checked."""
    message[0] = b'O'
    _put_text(message + 1, order_token, 14, "order_token")
    _put_char(message + 15, side, "side")
    _put_u32(message + 16, shares, "shares")
    _put_text(message + 20, stock, 8, "stock")
    _put_u32(message + 28, price, "price")
    _put_u32(message + 32, time_in_force, "time_in_force")
    _put_text(message + 36, firm, 4, "firm")
    _put_char(message + 40, display, "display")
    _put_char(message + 41, capacity, "capacity")
    _put_char(message + 42, intermarket_sweep, "intermarket_sweep")
    _put_u32(message + 43, minimum_quantity, "minimum_quantity")
    _put_char(message + 47, cross_type, "cross_type")
    _put_char(message + 48, customer_type, "customer_type")
    return 0


cdef class EnterOrderPacket:
    """One Enter Order in its SoupBinTCP Unsequenced Data packet, rewritten in place per order.

    ``packet`` is a 52-byte bytearray: the SoupBinTCP header (length 50, ``'U'``) and an Enter
    Order. Calling ``packet_writer(order_token, side, shares, stock, price)`` encodes the order
    into it as :func:`encode_enter_order` does -- with this object's ``time_in_force`` (default 0:
    immediate or cancel) and the other fields at their defaults -- and returns ``packet``, ready
    for ``socket.send``: one call, nothing allocated per order. A bad argument raises as
    :func:`encode_enter_order` does, before the packet is touched. The next call overwrites the
    packet: send (or copy) it first.
    """

    cdef readonly bytearray packet
    cdef readonly object time_in_force

    def __init__(self, time_in_force=0):
        cdef unsigned char check[4]
        _put_u32(check, time_in_force, "time_in_force")
        self.time_in_force = time_in_force
        self.packet = bytearray(b"\x00\x32U") + bytearray(49)

    def __call__(self, order_token, side, shares, stock, price):
        cdef unsigned char message[SCRATCH]
        _enter_order(message, order_token, side, shares, stock, price, self.time_in_force, "", "Y", "A", "N", 0,
                     "N", " ")
        _write(self.packet, 3, M_ENTER, 49, message)
        return self.packet


def encode_replace_order(object buffer, Py_ssize_t offset, object existing_order_token,
                         object replacement_order_token, object shares, object price,
                         object time_in_force=99998, object display="Y", object intermarket_sweep="N",
                         object minimum_quantity=0):
    """Write an OUCH 4.2 Replace Order ('U', 47 bytes) into ``buffer`` at ``offset``; return the end offset.

    Same rules as :func:`encode_enter_order`.
    """
    cdef unsigned char message[SCRATCH]
    message[0] = b'U'
    _put_text(message + 1, existing_order_token, 14, "existing_order_token")
    _put_text(message + 15, replacement_order_token, 14, "replacement_order_token")
    _put_u32(message + 29, shares, "shares")
    _put_u32(message + 33, price, "price")
    _put_u32(message + 37, time_in_force, "time_in_force")
    _put_char(message + 41, display, "display")
    _put_char(message + 42, intermarket_sweep, "intermarket_sweep")
    _put_u32(message + 43, minimum_quantity, "minimum_quantity")
    return _write(buffer, offset, M_REPLACE, 47, message)


def encode_cancel_order(object buffer, Py_ssize_t offset, object order_token, object shares=0):
    """Write an OUCH 4.2 Cancel Order ('X', 19 bytes) into ``buffer`` at ``offset``; return the end offset.

    ``shares`` is the order's new intended size: 0 cancels all of it. Same rules as
    :func:`encode_enter_order`.
    """
    cdef unsigned char message[SCRATCH]
    message[0] = b'X'
    _put_text(message + 1, order_token, 14, "order_token")
    _put_u32(message + 15, shares, "shares")
    return _write(buffer, offset, M_CANCEL, 19, message)


def encode_modify_order(object buffer, Py_ssize_t offset, object order_token, object side, object shares):
    """Write an OUCH 4.2 Modify Order ('M', 20 bytes) into ``buffer`` at ``offset``; return the end offset.

    Same rules as :func:`encode_enter_order`.
    """
    cdef unsigned char message[SCRATCH]
    message[0] = b'M'
    _put_text(message + 1, order_token, 14, "order_token")
    _put_char(message + 15, side, "side")
    _put_u32(message + 16, shares, "shares")
    return _write(buffer, offset, M_MODIFY, 20, message)


def encode(object buffer, Py_ssize_t offset, object name, object values):
    """Write any OUCH 4.2 message, client or exchange, named ``name`` (``"accepted"``...); return the end offset.

    ``values`` is a sequence of the message's fields in layout order, type letter excluded (what a
    record's ``values()`` returns). An unknown ``name`` or the wrong number of values ->
    ``ValueError``; field and buffer errors as in :func:`encode_enter_order`.
    """
    cdef unsigned char message[SCRATCH]
    cdef int m, k
    number = _message_number.get(name) if isinstance(name, str) else None
    if number is None:
        raise ValueError(f"unknown OUCH message name {name!r}")
    m = number
    # A tuple copy: converting a field can run Python code (__index__), which must not be able to
    # shrink the sequence under the loop.
    items = tuple(values)
    if len(items) != _message_nfields[m]:
        raise ValueError(f"OUCH {_titles[m]} takes {_message_nfields[m]} values, got {len(items)}")
    message[0] = _message_letter[m]
    for k in range(_message_nfields[m]):
        _put_field(message, m, _message_field[m][k], items[k])
    return _write(buffer, offset, m, _message_length[m], message)


cdef int _message_at(const unsigned char* data, Py_ssize_t nbytes, Py_ssize_t offset, Py_ssize_t length,
                     int direction) except -1:
    """Return the message number at ``offset`` after checking its type and length."""
    cdef int m
    if offset < 0 or offset >= nbytes:
        raise ValueError(f"no OUCH message at offset {offset}: the buffer has {nbytes} bytes")
    m = _by_letter[direction][data[offset]]
    if m < 0:
        raise ValueError(f"unknown OUCH {(CLIENT, EXCHANGE)[direction]} message type {chr(data[offset])!r} at offset {offset}")
    if length >= 0 and length != _message_length[m]:
        raise ValueError(f"OUCH {_titles[m]} at offset {offset} is {length} bytes, expected {_message_length[m]}")
    if offset + _message_length[m] > nbytes:
        raise ValueError(f"OUCH {_titles[m]} at offset {offset} is truncated: {nbytes - offset} of {_message_length[m]} bytes")
    return m


cdef class _Record:
    """A reusable decoded OUCH message: ``decode`` refills it, fields read from its own copy."""

    cdef unsigned char _data[SCRATCH]
    cdef int _message          # message number, -1 before the first decode
    cdef int _direction        # 0 client, 1 exchange

    def __cinit__(self):
        self._message = -1
        self._direction = 1

    def decode(self, object buffer, Py_ssize_t offset=0, Py_ssize_t length=-1):
        """Decode the message at ``offset`` of ``buffer`` into this record; return the offset past it.

        ``length`` (when not -1) is the length the framing gave the message; it must be the
        layout's. An unknown type, a wrong length or a truncated message -> ``ValueError`` naming
        the offset, and the record keeps its previous message. The message's bytes are copied, so
        the buffer may be reused at once. O(1); the compiled record allocates nothing here.
        """
        cdef Py_buffer view
        cdef int m
        if _get_buffer(buffer, &view, PyBUF_SIMPLE) != 0:
            PyErr_Clear()
            raise TypeError("buffer must be a contiguous buffer")
        try:
            m = _message_at(<const unsigned char*>view.buf, view.len, offset, length, self._direction)
            memcpy(self._data, <const unsigned char*>view.buf + offset, _message_length[m])
            self._message = m
        finally:
            PyBuffer_Release(&view)
        return offset + _message_length[m]

    @property
    def name(self):
        """The decoded message's name (``"accepted"``...), or None before the first decode."""
        return None if self._message < 0 else _names[self._message]

    @property
    def type(self):
        """The decoded message's type letter, or None before the first decode."""
        return None if self._message < 0 else _type_strings[self._message]

    @property
    def length(self):
        """The decoded message's length in bytes, 0 before the first decode."""
        return 0 if self._message < 0 else _message_length[self._message]

    cdef object _get(self, int field):
        cdef int offset, kind, width
        cdef const unsigned char* p
        if self._message < 0:
            return None
        offset = _offset_of[self._message][field]
        if offset < 0:
            return None
        p = self._data + offset
        kind = _field_kind[field]
        if kind == K_U32:
            return _load_u32(p)
        if kind == K_U64:
            return _load_u64(p)
        width = _field_width[field]
        if kind == K_ALPHA:
            while width > 0 and p[width - 1] == 32:  # drop the padding
                width -= 1
        return PyUnicode_DecodeLatin1(<const char*>p, width, NULL)

    def values(self):
        """Return the decoded message's fields in layout order (type excluded): ``encode``'s ``values``."""
        cdef int k
        if self._message < 0:
            return ()
        return tuple([self._get(_message_field[self._message][k]) for k in range(_message_nfields[self._message])])

    def as_dict(self):
        """Return ``{"type": letter, field: value...}`` for the decoded message ({} before any)."""
        cdef int k, field
        if self._message < 0:
            return {}
        # A copy of the message's own dict of keys (its table sized once), the values set in place.
        out = (<dict>_dict_templates[self._message]).copy()
        for k in range(_message_nfields[self._message]):
            field = _message_field[self._message][k]
            out[<str>_field_names[field]] = self._get(field)
        return out

    # One property per field of lowlat.ouch.spec.FIELDS (index = position there); None when absent.

    @property
    def timestamp(self):
        """Nanoseconds since midnight (exchange messages)."""
        return self._get(0)

    @property
    def order_token(self):
        """The client's order token (14 alpha, trailing spaces removed)."""
        return self._get(1)

    @property
    def existing_order_token(self):
        """Replace Order: the token of the order being replaced."""
        return self._get(2)

    @property
    def replacement_order_token(self):
        """Replace Order / Replaced: the new order's token."""
        return self._get(3)

    @property
    def previous_order_token(self):
        """Replaced: the token of the order that was replaced."""
        return self._get(4)

    @property
    def side(self):
        """Buy/Sell Indicator: 'B' buy, 'S' sell, 'T' sell short, 'E' sell short exempt."""
        return self._get(5)

    @property
    def shares(self):
        """Shares (Cancel Order: the new intended size, 0 cancels all)."""
        return self._get(6)

    @property
    def stock(self):
        """Symbol (8 alpha, trailing spaces removed)."""
        return self._get(7)

    @property
    def price(self):
        """Price, an int with 4 implied decimals."""
        return self._get(8)

    @property
    def time_in_force(self):
        """Seconds; 0 immediate-or-cancel, 99998 market hours, 99999 system hours."""
        return self._get(9)

    @property
    def firm(self):
        """Firm (MPID)."""
        return self._get(10)

    @property
    def display(self):
        """Display: 'Y' visible, 'N' hidden, 'A' attributable, 'P' post-only, ..."""
        return self._get(11)

    @property
    def capacity(self):
        """Capacity: 'A' agency, 'P' principal, 'R' riskless, 'O' other."""
        return self._get(12)

    @property
    def intermarket_sweep(self):
        """Intermarket Sweep Eligibility: 'Y' or 'N'."""
        return self._get(13)

    @property
    def minimum_quantity(self):
        """Minimum quantity, 0 for none."""
        return self._get(14)

    @property
    def cross_type(self):
        """Cross type: 'N' none, 'O' opening, 'C' closing, 'H' halt/IPO, ..."""
        return self._get(15)

    @property
    def customer_type(self):
        """Customer type: 'R' retail, 'N' not retail, ' ' port default."""
        return self._get(16)

    @property
    def order_reference_number(self):
        """The exchange's day-unique order reference number."""
        return self._get(17)

    @property
    def order_state(self):
        """Order state: 'L' live, 'D' dead."""
        return self._get(18)

    @property
    def bbo_weight_indicator(self):
        """BBO weight indicator: '0'-'3', 'S', 'N' or ' '."""
        return self._get(19)

    @property
    def event_code(self):
        """System event: 'S' start of day, 'E' end of day."""
        return self._get(20)

    @property
    def decrement_shares(self):
        """Shares taken off the order."""
        return self._get(21)

    @property
    def reason(self):
        """The message's reason code (cancel, reject, broken trade, correction)."""
        return self._get(22)

    @property
    def quantity_prevented_from_trading(self):
        """AIQ Canceled: shares prevented from trading."""
        return self._get(23)

    @property
    def executed_shares(self):
        """Shares executed."""
        return self._get(24)

    @property
    def execution_price(self):
        """Execution price, 4 implied decimals."""
        return self._get(25)

    @property
    def new_execution_price(self):
        """Price Correction: the corrected execution price."""
        return self._get(26)

    @property
    def liquidity_flag(self):
        """Liquidity flag ('A' added, 'R' removed, ...)."""
        return self._get(27)

    @property
    def match_number(self):
        """The exchange's day-unique execution number."""
        return self._get(28)

    @property
    def reference_price(self):
        """Executed with Reference Price: the reference price."""
        return self._get(29)

    @property
    def reference_price_type(self):
        """Executed with Reference Price: the reference price's type."""
        return self._get(30)


@cython.final
cdef class ClientMessage(_Record):
    """A reusable record for the messages a client sends: Enter, Replace, Cancel and Modify Order.

    Fields a message does not carry read as None. Text fields read as str without their padding,
    integers as int (prices with 4 implied decimals). Not thread-safe: one decoding thread.
    """

    def __cinit__(self):
        self._direction = 0


@cython.final
cdef class ExchangeMessage(_Record):
    """A reusable record for the messages the exchange sends: Accepted, Executed, Canceled...

    Fields a message does not carry read as None. Text fields read as str without their padding,
    integers as int (prices with 4 implied decimals). Not thread-safe: one decoding thread.
    """

    def __cinit__(self):
        self._direction = 1


# The batch decoder's row layouts (spec.batch_dtype), as byte offsets into each row.
cdef Py_ssize_t _row_size[N_MESSAGES_MAX]
cdef Py_ssize_t _row_offset[N_MESSAGES_MAX][N_FIELDS_MAX]   # message, k -> offset of its k-th field in a row
cdef list _row_dtypes = []


def _fill_row_tables():
    cdef int m, k
    for m, name in enumerate(MESSAGES):
        dtype = batch_dtype(name)
        _row_dtypes.append(dtype)
        _row_size[m] = dtype.itemsize
        for k in range(_message_nfields[m]):
            _row_offset[m][k] = dtype.fields[_field_names[_message_field[m][k]]][1]


_fill_row_tables()


cdef inline void _store_le64(unsigned char* p, uint64_t x) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = <unsigned char>(x >> (8 * i))


cdef inline void _store_le32(unsigned char* p, uint32_t x) noexcept nogil:
    p[0] = <unsigned char>x
    p[1] = <unsigned char>(x >> 8)
    p[2] = <unsigned char>(x >> 16)
    p[3] = <unsigned char>(x >> 24)


cdef Py_ssize_t _walk(const unsigned char* data, Py_ssize_t nbytes, int direction, Py_ssize_t* counts) except -1:
    """Check every length-prefixed message and count them per message number; return the total."""
    cdef Py_ssize_t position = 0, start, length, total = 0
    cdef int m
    while position < nbytes:
        if nbytes - position < 2:
            raise ValueError(f"truncated OUCH length prefix at offset {position}")
        length = (<Py_ssize_t>data[position] << 8) | data[position + 1]
        start = position + 2
        if start + length > nbytes:
            raise ValueError(f"OUCH message at offset {start} is truncated: {nbytes - start} of {length} bytes")
        if length == 0:
            raise ValueError(f"empty OUCH message at offset {start}")
        m = _message_at(data, nbytes, start, length, direction)
        counts[m] += 1
        total += 1
        position = start + length
    return total


def decode_batch(object buffer, object direction="exchange"):
    """Decode a buffer of 2-byte-length-prefixed messages into one numpy array per message name.

    Returns ``{name: array}`` for every message of ``direction`` (``"exchange"`` or ``"client"``),
    empty arrays included; each row is ``position`` (the message's index in the buffer) then its
    fields (``spec.batch_dtype``: native integers, alpha fields as padded ``S`` bytes). The whole
    buffer is checked before anything is allocated: a wrong length, an unknown type or a truncated
    message -> ``ValueError`` naming its offset. Write such buffers with ``spec.frame``.
    """
    cdef Py_buffer view
    cdef int d, m, k, field, kind
    cdef Py_ssize_t counts[N_MESSAGES_MAX]
    cdef Py_ssize_t filled[N_MESSAGES_MAX]
    cdef unsigned char* rows[N_MESSAGES_MAX]
    cdef Py_ssize_t position, start, index
    cdef const unsigned char* data
    cdef const unsigned char* src
    cdef unsigned char* row
    if direction == CLIENT:
        d = 0
    elif direction == EXCHANGE:
        d = 1
    else:
        raise ValueError(f"direction must be 'client' or 'exchange', got {direction!r}")
    if _get_buffer(buffer, &view, PyBUF_SIMPLE) != 0:
        PyErr_Clear()
        raise TypeError("buffer must be a contiguous buffer")
    try:
        data = <const unsigned char*>view.buf
        memset(counts, 0, sizeof(counts))
        memset(filled, 0, sizeof(filled))
        _walk(data, view.len, d, counts)
        out = {}
        for m in range(_n_messages):
            if _by_letter[d][_message_letter[m]] == m:
                array = np.zeros(counts[m], dtype=_row_dtypes[m])
                out[_names[m]] = array
                rows[m] = <unsigned char*>cnp.PyArray_DATA(array)
        # The allocations above could run Python code (a collection, a finaliser) that rewrites the
        # buffer's bytes: the second pass re-checks every message and never writes past a count.
        position, index = 0, 0
        while position < view.len:
            start = position + 2
            m = _message_at(data, view.len, start, (<Py_ssize_t>data[position] << 8) | data[position + 1], d)
            if filled[m] >= counts[m]:
                raise RuntimeError("the buffer changed while decode_batch read it")
            row = rows[m] + filled[m] * _row_size[m]
            filled[m] += 1
            _store_le64(row, <uint64_t>index)
            src = data + start
            for k in range(_message_nfields[m]):
                field = _message_field[m][k]
                kind = _field_kind[field]
                if kind == K_U32:
                    _store_le32(row + _row_offset[m][k], _load_u32(src + _offset_of[m][field]))
                elif kind == K_U64:
                    _store_le64(row + _row_offset[m][k], _load_u64(src + _offset_of[m][field]))
                elif kind == K_CHAR:
                    row[_row_offset[m][k]] = src[_offset_of[m][field]]
                else:
                    memcpy(row + _row_offset[m][k], src + _offset_of[m][field], _field_width[field])
            index += 1
            position = start + _message_length[m]
    finally:
        PyBuffer_Release(&view)
    return out
