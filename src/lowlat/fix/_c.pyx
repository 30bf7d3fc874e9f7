# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""FIX 4.2 / 4.4 encoder and validating streaming reader, compiled: the twin of ``_py.py``.

Same names, signatures, docstrings, bytes and errors as :mod:`lowlat.fix._py` (tested). Every
index into a buffer below is checked against a length taken from the buffer protocol or from
this module's own allocation, so bounds checks are off module-wide. Anything unusual (an int
subclass, a non-ASCII string, an odd number format) goes to the shared plain-Python code in
:mod:`lowlat.fix.spec`, which accepts or rejects it exactly as the pure twin does.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from libc.math cimport floor, isfinite
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

from lowlat.fix import spec as _spec
from lowlat.fix.spec import FixError, Reason

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    object PyUnicode_DecodeLatin1(const char* s, Py_ssize_t size, const char* errors)

__all__ = ["FixEncoder", "FixMessage", "FixReader"]

cdef enum:
    _SLOTS = 1024  # tags below this are found through a direct table; the rest by a scan
    _MAX_REQUIRED = 32

cdef int64_t _MAX_INT = 999_999_999_999_999_999
cdef int64_t _MAX_TIMESTAMP_NS = _spec.MAX_TIMESTAMP_NS
cdef int64_t _NS_PER_DAY = 86_400_000_000_000
cdef int64_t _POW10[19]
_p = 1
for _i in range(19):
    _POW10[_i] = _p
    _p *= 10

_PRECISIONS_42 = (0, 3)
_PRECISIONS_44 = (0, 3, 6)
cdef str _STALE = "FixMessage is stale: the reader has moved on (copy what you keep, e.g. raw(), before the next call)"
cdef str _ENDS_EARLY = "the stream ends before the CheckSum (10)"
cdef str _BUFFER_TYPE = "buffer must be a writable contiguous bytes-like object"

# Required tags per (version, one-character MsgType), copied from spec.REQUIRED at import.
cdef int _REQUIRED[2][128][_MAX_REQUIRED]
cdef int _REQUIRED_COUNT[2][128]
cdef int _HEADER_REQUIRED[_MAX_REQUIRED]
cdef int _HEADER_COUNT = len(_spec.HEADER_REQUIRED)
for _v, _name in enumerate((_spec.FIX42, _spec.FIX44)):
    for _c in range(128):
        _tags = _spec.required_tags(_name, chr(_c))
        assert len(_tags) <= _MAX_REQUIRED
        _REQUIRED_COUNT[_v][_c] = len(_tags)
        for _i, _t in enumerate(_tags):
            _REQUIRED[_v][_c][_i] = _t
for _i, _t in enumerate(_spec.HEADER_REQUIRED):
    _HEADER_REQUIRED[_i] = _t


# --- small C helpers ----------------------------------------------------------------------------

cdef inline Py_ssize_t _find(const unsigned char* b, Py_ssize_t start, Py_ssize_t end,
                             const char* pattern, Py_ssize_t length) noexcept nogil:
    """Return the first i in [start, end - length] where ``pattern`` begins, else -1 (bytearray.find)."""
    cdef const unsigned char* hit
    cdef Py_ssize_t i = start
    if i < 0:
        i = 0
    while i + length <= end:
        hit = <const unsigned char*>memchr(b + i, pattern[0], <size_t>(end - length + 1 - i))
        if hit == NULL:
            return -1
        i = hit - b
        if memcmp(hit, pattern, <size_t>length) == 0:
            return i
        i += 1
    return -1


cdef inline bint _digit(unsigned char c) noexcept nogil:
    return 0x30 <= c <= 0x39


cdef inline int _write_uint(unsigned char* out, uint64_t value) noexcept nogil:
    """Write ``value`` in decimal at ``out``; return the digits written (at most 20)."""
    cdef unsigned char tmp[20]
    cdef int n = 0, i
    while True:
        tmp[n] = <unsigned char>(0x30 + value % 10)
        n += 1
        value //= 10
        if value == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline void _civil_from_days(int64_t days, int* year, int* month, int* day) noexcept nogil:
    # Howard Hinnant's algorithm; days >= 0 here, so C division is floor division.
    cdef int64_t z = days + 719468
    cdef int64_t era = z // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t y = yoe + era * 400
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t d = doy - (153 * mp + 2) // 5 + 1
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    year[0] = <int>(y + 1 if m <= 2 else y)
    month[0] = <int>m
    day[0] = <int>d


cdef inline int64_t _days_from_civil(int64_t year, int64_t month, int64_t day) noexcept nogil:
    # Years 0..9999 only (the caller checks), so every quotient is of a non-negative number.
    cdef int64_t y = year - 1 if month <= 2 else year
    cdef int64_t era, yoe, mp, doy, doe
    if y < 0:
        era = -1
    else:
        era = y // 400
    yoe = y - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int _days_in_month(int64_t year, int64_t month) noexcept nogil:
    if month == 2:
        return 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    if month == 4 or month == 6 or month == 9 or month == 11:
        return 30
    return 31


cdef inline int64_t _two(const unsigned char* s) noexcept nogil:
    return (s[0] - 0x30) * 10 + (s[1] - 0x30)


cdef int64_t _int_arg(object value, str name, int64_t low) except -1:
    """An int field argument in [low, 10**18 - 1]; anything else is judged by spec.check_int."""
    cdef int overflow = 0
    cdef long long v
    if type(value) is int:
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0 and low <= v <= _MAX_INT:
            return v
    return _spec.check_int(name, value, low)


cdef int64_t _time_arg(object value, str name) except -1:
    cdef int overflow = 0
    cdef long long v
    if type(value) is int:
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0 and 0 <= v <= _MAX_TIMESTAMP_NS:
            return v
    return _spec.check_int(name, value, 0, _spec.MAX_TIMESTAMP_NS)


# --- the encoder ----------------------------------------------------------------------------------

@cython.final
cdef class FixEncoder:
    """FixEncoder(sender_comp_id, target_comp_id, begin_string='FIX.4.4', *, price_decimals=4, timestamp_precision=3)
--

Encode the FIX messages of one session into a caller's preallocated buffer.

    ``FixEncoder(sender_comp_id, target_comp_id, begin_string="FIX.4.4", *, price_decimals=4,
    timestamp_precision=3)`` holds what every message of a session repeats: BeginString (8),
    SenderCompID (49), TargetCompID (56). Each method writes one whole message at ``offset`` of
    ``buffer`` (any writable contiguous bytes-like object: ``bytearray``, ``memoryview``, numpy
    array) and returns the number of bytes written; the compiled path allocates nothing per
    message but that int. A message that does not fit raises ``ValueError`` and writes nothing.

    Every method takes ``seq_num`` (MsgSeqNum 34, >= 1) and ``sending_time_ns`` (SendingTime 52,
    ns since the Unix epoch, UTC; written with ``timestamp_precision`` decimals: 0 or 3, and 6 for
    FIX.4.4 only; truncated, never rounded). Header order: 8, 9, 35, 49, 56, 34, 52; CheckSum (10)
    last with three digits.

    Field types: quantities and counts are ints >= 0; prices are an ``int`` with
    ``price_decimals`` implied decimals (``1234500`` is 123.45 at 4) or a ``float`` rounded half
    up to ``price_decimals`` decimals, written in the shortest exact form (``123.45``, ``100``);
    strings are non-empty printable ASCII; char fields (side, ord_type, ...) one character, e.g.
    :class:`~lowlat.fix.spec.Side` ``.BUY``. An optional field left ``None`` is not written.
    Bad arguments raise ``TypeError``/``ValueError`` naming the argument. Not thread-safe: one
    encoder per thread (it keeps a cached date).
    """

    cdef bytes _begin          # b"8=FIX.4.4\x019="
    cdef bytes _ids            # b"\x0149=SENDER\x0156=TARGET\x0134="
    cdef bytes _sender
    cdef bytes _target_id
    cdef str _begin_string
    cdef bint _fix42
    cdef int _decimals
    cdef int _precision
    cdef unsigned char* _body  # the body is built here, then copied out behind its header
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _len
    cdef bint _busy
    cdef int64_t _cached_day   # the date text of this day (since the epoch) is in _date
    cdef unsigned char _date[9]

    def __cinit__(self, sender_comp_id, target_comp_id, begin_string="FIX.4.4", *, price_decimals=4,
                  timestamp_precision=3):
        self._body = NULL
        self._cached_day = -1

    def __init__(self, sender_comp_id, target_comp_id, begin_string="FIX.4.4", *, price_decimals=4,
                 timestamp_precision=3):
        sender = _spec.check_str("sender_comp_id", sender_comp_id)
        target = _spec.check_str("target_comp_id", target_comp_id)
        if begin_string not in _spec.BEGIN_STRINGS:
            raise ValueError(f"begin_string must be one of {_spec.BEGIN_STRINGS}, got {begin_string!r}")
        _spec.check_int("price_decimals", price_decimals, 0, 9)
        allowed = _PRECISIONS_44 if begin_string == _spec.FIX44 else _PRECISIONS_42
        if timestamp_precision not in allowed:
            raise ValueError(f"timestamp_precision must be one of {allowed} for {begin_string}, got {timestamp_precision!r}")
        self._begin = b"8=" + begin_string.encode("ascii") + b"\x019="
        self._sender = sender
        self._target_id = target
        self._ids = b"\x0149=" + sender + b"\x0156=" + target + b"\x0134="
        self._fix42 = begin_string == _spec.FIX42
        self._begin_string = begin_string
        self._decimals = int(price_decimals)
        self._precision = int(timestamp_precision)
        if self._body == NULL:
            self._body = <unsigned char*>malloc(512)
            if self._body == NULL:
                raise MemoryError()
            self._capacity = 512

    def __dealloc__(self):
        free(self._body)

    @property
    def begin_string(self):
        """BeginString (8) of every message: ``"FIX.4.2"`` or ``"FIX.4.4"``."""
        return self._begin_string

    @property
    def sender_comp_id(self):
        """SenderCompID (49) of every message."""
        return self._sender.decode("ascii")

    @property
    def target_comp_id(self):
        """TargetCompID (56) of every message."""
        return self._target_id.decode("ascii")

    @property
    def price_decimals(self):
        """Implied decimals of int prices."""
        return self._decimals

    @property
    def timestamp_precision(self):
        """Decimals of the second in UTC timestamps: 0, 3 or 6."""
        return self._precision

    # -- writing the body into the scratch buffer ------------------------------------------------

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t want = self._len + extra
        cdef Py_ssize_t size = self._capacity
        cdef unsigned char* grown
        if self._body == NULL:
            raise ValueError("FixEncoder is not initialised")
        if want <= size:
            return 0
        while size < want:
            size *= 2
        grown = <unsigned char*>realloc(self._body, <size_t>size)
        if grown == NULL:
            raise MemoryError()
        self._body = grown
        self._capacity = size
        return 0

    cdef inline int _tag(self, int tag) except -1:
        # "tag=" (the caller has reserved room)
        self._len += _write_uint(self._body + self._len, <uint64_t>tag)
        self._body[self._len] = 0x3D
        self._len += 1
        return 0

    cdef int _put_int(self, int tag, object value, str name, int64_t low) except -1:
        cdef int64_t v = _int_arg(value, name, low)
        self._reserve(32)
        self._tag(tag)
        self._len += _write_uint(self._body + self._len, <uint64_t>v)
        self._body[self._len] = 1
        self._len += 1
        return 0

    cdef int _put_literal(self, const char* text, Py_ssize_t length) except -1:
        self._reserve(length)
        memcpy(self._body + self._len, text, <size_t>length)
        self._len += length
        return 0

    cdef int _put_bytes(self, int tag, const unsigned char* data, Py_ssize_t length) except -1:
        self._reserve(length + 12)
        self._tag(tag)
        memcpy(self._body + self._len, data, <size_t>length)
        self._len += length
        self._body[self._len] = 1
        self._len += 1
        return 0

    cdef int _put_str(self, int tag, object value, str name, bint one_char) except -1:
        cdef const unsigned char* data
        cdef Py_ssize_t length, i
        cdef bint ok = False
        cdef bytes checked
        if type(value) is str and PyUnicode_IS_ASCII(value):
            data = <const unsigned char*>PyUnicode_DATA(value)
            length = PyUnicode_GET_LENGTH(value)
            ok = length == 1 if one_char else length >= 1
            if ok:
                for i in range(length):
                    if not 0x20 <= data[i] <= 0x7E:
                        ok = False
                        break
            if ok:
                return self._put_bytes(tag, data, length)
        checked = _spec.check_char(name, value) if one_char else _spec.check_str(name, value)
        return self._put_bytes(tag, <const unsigned char*>PyBytes_AS_STRING(checked), PyBytes_GET_SIZE(checked))

    cdef int _put_price(self, int tag, object value, str name) except -1:
        cdef int overflow = 0
        cdef long long scaled = 0
        cdef double product
        cdef bint ok = False
        cdef uint64_t magnitude, whole, frac, divisor
        cdef int d = self._decimals, digits, i
        cdef unsigned char text[24]
        if type(value) is int:
            scaled = PyLong_AsLongLongAndOverflow(value, &overflow)
            ok = overflow == 0 and -_MAX_INT <= scaled <= _MAX_INT
        elif type(value) is float:
            product = <double>value
            if isfinite(product):
                product = product * <double>_POW10[d] + 0.5
                if -1e18 < product < 1e18:
                    scaled = <long long>floor(product)
                    ok = -_MAX_INT <= scaled <= _MAX_INT
        if not ok:
            scaled = _spec.scale_price(name, value, d)
        self._reserve(48)
        self._tag(tag)
        if scaled < 0:
            self._body[self._len] = 0x2D
            self._len += 1
            magnitude = <uint64_t>(-scaled)
        else:
            magnitude = <uint64_t>scaled
        divisor = <uint64_t>_POW10[d]
        whole = magnitude // divisor
        frac = magnitude % divisor
        self._len += _write_uint(self._body + self._len, whole)
        if frac:
            digits = d
            while frac % 10 == 0:
                frac //= 10
                digits -= 1
            self._body[self._len] = 0x2E
            self._len += 1
            for i in range(digits - 1, -1, -1):
                text[i] = <unsigned char>(0x30 + frac % 10)
                frac //= 10
            memcpy(self._body + self._len, text, <size_t>digits)
            self._len += digits
        self._body[self._len] = 1
        self._len += 1
        return 0

    cdef int _put_time(self, int tag, object value, str name) except -1:
        cdef int64_t ns = _time_arg(value, name)
        cdef int64_t days = ns // _NS_PER_DAY
        cdef int64_t rest = ns - days * _NS_PER_DAY
        cdef int64_t secs = rest // 1_000_000_000
        cdef int64_t frac = rest - secs * 1_000_000_000
        cdef int year, month, day, i, hh, mm, ss
        cdef unsigned char* out
        if days != self._cached_day:
            _civil_from_days(days, &year, &month, &day)
            for i in range(3, -1, -1):
                self._date[i] = <unsigned char>(0x30 + year % 10)
                year //= 10
            self._date[4] = <unsigned char>(0x30 + month // 10)
            self._date[5] = <unsigned char>(0x30 + month % 10)
            self._date[6] = <unsigned char>(0x30 + day // 10)
            self._date[7] = <unsigned char>(0x30 + day % 10)
            self._date[8] = 0x2D
            self._cached_day = days
        self._reserve(48)
        self._tag(tag)
        out = self._body + self._len
        memcpy(out, self._date, 9)
        hh = <int>(secs // 3600)
        mm = <int>(secs // 60 % 60)
        ss = <int>(secs % 60)
        out[9] = <unsigned char>(0x30 + hh // 10)
        out[10] = <unsigned char>(0x30 + hh % 10)
        out[11] = 0x3A
        out[12] = <unsigned char>(0x30 + mm // 10)
        out[13] = <unsigned char>(0x30 + mm % 10)
        out[14] = 0x3A
        out[15] = <unsigned char>(0x30 + ss // 10)
        out[16] = <unsigned char>(0x30 + ss % 10)
        i = 17
        if self._precision:
            out[17] = 0x2E
            frac //= _POW10[9 - self._precision]
            for i in range(17 + self._precision, 17, -1):
                out[i] = <unsigned char>(0x30 + frac % 10)
                frac //= 10
            i = 18 + self._precision
        out[i] = 1
        self._len += i + 1
        return 0

    cdef int _start(self, char msg_type, object seq_num, object sending_time_ns) except -1:
        cdef int64_t seq
        if self._body == NULL:
            raise ValueError("FixEncoder is not initialised")
        if self._busy:
            raise RuntimeError("FixEncoder is not re-entrant")
        self._busy = True
        self._len = 0
        seq = _int_arg(seq_num, "seq_num", 1)
        self._reserve(PyBytes_GET_SIZE(self._ids) + 32)
        self._body[0] = 0x33
        self._body[1] = 0x35
        self._body[2] = 0x3D
        self._body[3] = <unsigned char>msg_type
        self._len = 4
        memcpy(self._body + 4, PyBytes_AS_STRING(self._ids), <size_t>PyBytes_GET_SIZE(self._ids))
        self._len += PyBytes_GET_SIZE(self._ids)
        self._len += _write_uint(self._body + self._len, <uint64_t>seq)
        self._body[self._len] = 1
        self._len += 1
        self._put_time(52, sending_time_ns, "sending_time_ns")
        return 0

    cdef Py_ssize_t _finish(self, Py_buffer* view, Py_ssize_t offset) except -1:
        cdef Py_ssize_t begin_len = PyBytes_GET_SIZE(self._begin)
        cdef unsigned char digits[20]
        cdef int ndigits = _write_uint(digits, <uint64_t>self._len)
        cdef Py_ssize_t total = begin_len + ndigits + 1 + self._len + 7
        cdef Py_ssize_t room = view.len - offset
        cdef unsigned char* out
        cdef unsigned int checksum = 0
        cdef Py_ssize_t i
        if total > room:
            raise ValueError(f"buffer has {room} bytes from offset {offset}, the message needs {total}")
        out = <unsigned char*>view.buf + offset
        memcpy(out, PyBytes_AS_STRING(self._begin), <size_t>begin_len)
        memcpy(out + begin_len, digits, <size_t>ndigits)
        out[begin_len + ndigits] = 1
        memcpy(out + begin_len + ndigits + 1, self._body, <size_t>self._len)
        for i in range(total - 7):
            checksum += out[i]
        checksum &= 0xFF
        out += total - 7
        out[0] = 0x31
        out[1] = 0x30
        out[2] = 0x3D
        out[3] = <unsigned char>(0x30 + checksum // 100)
        out[4] = <unsigned char>(0x30 + checksum // 10 % 10)
        out[5] = <unsigned char>(0x30 + checksum % 10)
        out[6] = 1
        return total

    cdef Py_ssize_t _target(self, object buffer, object offset, Py_buffer* view) except -1:
        """Acquire ``buffer`` writable into ``view`` and return the checked offset."""
        cdef int overflow = 0
        cdef long long at
        try:
            PyObject_GetBuffer(buffer, view, PyBUF_WRITABLE)
        except (TypeError, BufferError):
            raise TypeError(_BUFFER_TYPE) from None
        try:
            if type(offset) is int:
                at = PyLong_AsLongLongAndOverflow(offset, &overflow)
                if overflow == 0 and 0 <= at <= view.len:
                    return at
            return _spec.check_int("offset", offset, 0, view.len)
        except BaseException:
            PyBuffer_Release(view)
            raise

    # -- session messages ------------------------------------------------------------------------

    def logon(self, buffer, offset, seq_num, sending_time_ns, heart_bt_int=30, *, reset_seq_num=False,
              encrypt_method=0):
        """Write a Logon (A): EncryptMethod (98), HeartBtInt (108) in s, ResetSeqNumFlag (141=Y) if asked.

        Return the bytes written.
        """
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"A", seq_num, sending_time_ns)
            self._put_int(98, encrypt_method, "encrypt_method", 0)
            self._put_int(108, heart_bt_int, "heart_bt_int", 0)
            if reset_seq_num:
                self._put_literal(b"141=Y\x01", 6)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def heartbeat(self, buffer, offset, seq_num, sending_time_ns, test_req_id=None):
        """Write a Heartbeat (0), with TestReqID (112) when it answers a TestRequest. Return the bytes written."""
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"0", seq_num, sending_time_ns)
            if test_req_id is not None:
                self._put_str(112, test_req_id, "test_req_id", False)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def test_request(self, buffer, offset, seq_num, sending_time_ns, test_req_id):
        """Write a TestRequest (1) with TestReqID (112). Return the bytes written."""
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"1", seq_num, sending_time_ns)
            self._put_str(112, test_req_id, "test_req_id", False)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def resend_request(self, buffer, offset, seq_num, sending_time_ns, begin_seq_no, end_seq_no):
        """Write a ResendRequest (2): BeginSeqNo (7), EndSeqNo (16; 0 = infinity). Return the bytes written."""
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"2", seq_num, sending_time_ns)
            self._put_int(7, begin_seq_no, "begin_seq_no", 1)
            self._put_int(16, end_seq_no, "end_seq_no", 0)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def reject(self, buffer, offset, seq_num, sending_time_ns, ref_seq_num, *, ref_tag_id=None,
               session_reject_reason=None, text=None):
        """Write a session Reject (3): RefSeqNum (45), RefTagID (371), SessionRejectReason (373), Text (58).

        Return the bytes written.
        """
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"3", seq_num, sending_time_ns)
            self._put_int(45, ref_seq_num, "ref_seq_num", 1)
            if ref_tag_id is not None:
                self._put_int(371, ref_tag_id, "ref_tag_id", 1)
            if session_reject_reason is not None:
                self._put_int(373, session_reject_reason, "session_reject_reason", 0)
            if text is not None:
                self._put_str(58, text, "text", False)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def sequence_reset(self, buffer, offset, seq_num, sending_time_ns, new_seq_no, *, gap_fill=False):
        """Write a SequenceReset (4): GapFillFlag (123=Y) if ``gap_fill``, NewSeqNo (36). Return the bytes written."""
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"4", seq_num, sending_time_ns)
            if gap_fill:
                self._put_literal(b"123=Y\x01", 6)
            self._put_int(36, new_seq_no, "new_seq_no", 1)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def logout(self, buffer, offset, seq_num, sending_time_ns, text=None):
        """Write a Logout (5), with Text (58) when given. Return the bytes written."""
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"5", seq_num, sending_time_ns)
            if text is not None:
                self._put_str(58, text, "text", False)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    # -- application messages ------------------------------------------------------------------

    cdef int _put_order(self, cl_ord_id, account, symbol, side, transact_time_ns, quantity, ord_type, price,
                        time_in_force) except -1:
        # The fields NewOrderSingle and OrderCancelReplaceRequest share, from ClOrdID (11) on.
        self._put_str(11, cl_ord_id, "cl_ord_id", False)
        if account is not None:
            self._put_str(1, account, "account", False)
        if self._fix42:
            self._put_literal(b"21=1\x01", 5)
        self._put_str(55, symbol, "symbol", False)
        self._put_str(54, side, "side", True)
        self._put_time(60, transact_time_ns, "transact_time_ns")
        self._put_int(38, quantity, "quantity", 0)
        self._put_str(40, ord_type, "ord_type", True)
        if price is not None:
            self._put_price(44, price, "price")
        if time_in_force is not None:
            self._put_str(59, time_in_force, "time_in_force", True)
        return 0

    def new_order_single(self, buffer, offset, seq_num, sending_time_ns, cl_ord_id, symbol, side, quantity,
                         ord_type, price=None, *, time_in_force=None, account=None, transact_time_ns=None):
        """Write a NewOrderSingle (D). Return the bytes written.

        Fields in order: ClOrdID (11), Account (1), HandlInst (21=1, FIX.4.2 only, where it is
        required), Symbol (55), Side (54), TransactTime (60; ``sending_time_ns`` when None),
        OrderQty (38), OrdType (40), Price (44), TimeInForce (59).
        """
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"D", seq_num, sending_time_ns)
            self._put_order(cl_ord_id, account, symbol, side,
                            sending_time_ns if transact_time_ns is None else transact_time_ns,
                            quantity, ord_type, price, time_in_force)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def order_cancel_request(self, buffer, offset, seq_num, sending_time_ns, orig_cl_ord_id, cl_ord_id, symbol,
                             side, quantity, *, order_id=None, transact_time_ns=None):
        """Write an OrderCancelRequest (F). Return the bytes written.

        Fields in order: OrigClOrdID (41), OrderID (37), ClOrdID (11), Symbol (55), Side (54),
        TransactTime (60; ``sending_time_ns`` when None), OrderQty (38).
        """
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"F", seq_num, sending_time_ns)
            self._put_str(41, orig_cl_ord_id, "orig_cl_ord_id", False)
            if order_id is not None:
                self._put_str(37, order_id, "order_id", False)
            self._put_str(11, cl_ord_id, "cl_ord_id", False)
            self._put_str(55, symbol, "symbol", False)
            self._put_str(54, side, "side", True)
            self._put_time(60, sending_time_ns if transact_time_ns is None else transact_time_ns, "transact_time_ns")
            self._put_int(38, quantity, "quantity", 0)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def order_cancel_replace_request(self, buffer, offset, seq_num, sending_time_ns, orig_cl_ord_id, cl_ord_id,
                                     symbol, side, quantity, ord_type, price=None, *, time_in_force=None,
                                     account=None, order_id=None, transact_time_ns=None):
        """Write an OrderCancelReplaceRequest (G). Return the bytes written.

        Fields in order: OrderID (37), OrigClOrdID (41), ClOrdID (11), Account (1), HandlInst
        (21=1, FIX.4.2 only), Symbol (55), Side (54), TransactTime (60; ``sending_time_ns`` when
        None), OrderQty (38), OrdType (40), Price (44), TimeInForce (59).
        """
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"G", seq_num, sending_time_ns)
            if order_id is not None:
                self._put_str(37, order_id, "order_id", False)
            self._put_str(41, orig_cl_ord_id, "orig_cl_ord_id", False)
            self._put_order(cl_ord_id, account, symbol, side,
                            sending_time_ns if transact_time_ns is None else transact_time_ns,
                            quantity, ord_type, price, time_in_force)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def execution_report(self, buffer, offset, seq_num, sending_time_ns, order_id, exec_id, exec_type, ord_status,
                         symbol, side, leaves_qty, cum_qty, avg_px, *, cl_ord_id=None, orig_cl_ord_id=None,
                         order_qty=None, price=None, last_qty=None, last_px=None, text=None, transact_time_ns=None):
        """Write an ExecutionReport (8). Return the bytes written.

        Fields in order: OrderID (37), ClOrdID (11), OrigClOrdID (41), ExecID (17), ExecTransType
        (20=0, FIX.4.2 only), ExecType (150), OrdStatus (39), Symbol (55), Side (54), OrderQty
        (38), Price (44), LastQty (32; LastShares in 4.2), LastPx (31), LeavesQty (151), CumQty
        (14), AvgPx (6), TransactTime (60; ``sending_time_ns`` when None), Text (58).
        """
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"8", seq_num, sending_time_ns)
            self._put_str(37, order_id, "order_id", False)
            if cl_ord_id is not None:
                self._put_str(11, cl_ord_id, "cl_ord_id", False)
            if orig_cl_ord_id is not None:
                self._put_str(41, orig_cl_ord_id, "orig_cl_ord_id", False)
            self._put_str(17, exec_id, "exec_id", False)
            if self._fix42:
                self._put_literal(b"20=0\x01", 5)
            self._put_str(150, exec_type, "exec_type", True)
            self._put_str(39, ord_status, "ord_status", True)
            self._put_str(55, symbol, "symbol", False)
            self._put_str(54, side, "side", True)
            if order_qty is not None:
                self._put_int(38, order_qty, "order_qty", 0)
            if price is not None:
                self._put_price(44, price, "price")
            if last_qty is not None:
                self._put_int(32, last_qty, "last_qty", 0)
            if last_px is not None:
                self._put_price(31, last_px, "last_px")
            self._put_int(151, leaves_qty, "leaves_qty", 0)
            self._put_int(14, cum_qty, "cum_qty", 0)
            self._put_price(6, avg_px, "avg_px")
            self._put_time(60, sending_time_ns if transact_time_ns is None else transact_time_ns, "transact_time_ns")
            if text is not None:
                self._put_str(58, text, "text", False)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    def order_cancel_reject(self, buffer, offset, seq_num, sending_time_ns, order_id, cl_ord_id, orig_cl_ord_id,
                            ord_status, cxl_rej_response_to, *, cxl_rej_reason=None, text=None):
        """Write an OrderCancelReject (9). Return the bytes written.

        Fields in order: OrderID (37), ClOrdID (11), OrigClOrdID (41), OrdStatus (39),
        CxlRejResponseTo (434), CxlRejReason (102), Text (58).
        """
        cdef Py_buffer view
        cdef Py_ssize_t at = self._target(buffer, offset, &view)
        try:
            self._start(b"9", seq_num, sending_time_ns)
            self._put_str(37, order_id, "order_id", False)
            self._put_str(11, cl_ord_id, "cl_ord_id", False)
            self._put_str(41, orig_cl_ord_id, "orig_cl_ord_id", False)
            self._put_str(39, ord_status, "ord_status", True)
            self._put_str(434, cxl_rej_response_to, "cxl_rej_response_to", True)
            if cxl_rej_reason is not None:
                self._put_int(102, cxl_rej_reason, "cxl_rej_reason", 0)
            if text is not None:
                self._put_str(58, text, "text", False)
            return self._finish(&view, at)
        finally:
            self._busy = False
            PyBuffer_Release(&view)


# --- the message view -------------------------------------------------------------------------------

@cython.final
cdef class FixMessage:
    """FixMessage()
--

A read-only view of the last message a :class:`FixReader` returned, with typed access.

    The reader reuses one view for every message (no per-message dict on the compiled path): it
    is valid until the reader returns another event or is fed, finished or reset, after which
    every access raises ``ValueError`` (stale). Keep ``raw()`` (a bytes copy) to hold a
    message longer. A tag that is absent raises ``KeyError``; a value that is not of the asked
    type raises ``ValueError`` naming the tag. Lookups are O(1) for tags below 1024.
    """

    cdef FixReader _owner
    cdef uint64_t _generation
    cdef Py_ssize_t _start        # the frame in the owner's buffer
    cdef Py_ssize_t _end
    cdef int _begin_length        # length of the BeginString value
    cdef int _count               # body fields
    cdef int _capacity
    cdef int* _tags
    cdef Py_ssize_t* _value_start  # relative to _start
    cdef Py_ssize_t* _value_end
    cdef uint16_t _slot[_SLOTS]   # tag -> field index + 1, for tags below _SLOTS

    def __cinit__(self):
        self._tags = NULL
        self._value_start = NULL
        self._value_end = NULL

    def __init__(self):
        pass

    def __dealloc__(self):
        free(self._tags)
        free(self._value_start)
        free(self._value_end)

    cdef int _allocate(self, int capacity) except -1:
        self._tags = <int*>malloc(capacity * sizeof(int))
        self._value_start = <Py_ssize_t*>malloc(capacity * sizeof(Py_ssize_t))
        self._value_end = <Py_ssize_t*>malloc(capacity * sizeof(Py_ssize_t))
        if self._tags == NULL or self._value_start == NULL or self._value_end == NULL:
            raise MemoryError()
        self._capacity = capacity
        return 0

    cdef inline void _clear(self) noexcept:
        cdef int i
        for i in range(self._count):
            if self._tags[i] < _SLOTS:
                self._slot[self._tags[i]] = 0
        self._count = 0

    cdef inline int _live(self) except -1:
        if self._owner is None or self._owner._generation != self._generation:
            raise ValueError(_STALE)
        return 0

    cdef inline const unsigned char* _data(self) noexcept:
        return self._owner._buf + self._start

    cdef int _index(self, object tag) except -2:
        """Field index of ``tag``, -1 when absent."""
        cdef int overflow = 0
        cdef long long t
        cdef int i
        self._live()
        if type(tag) is not int:
            raise TypeError(f"tag must be an int, got {type(tag).__name__}")
        t = PyLong_AsLongLongAndOverflow(tag, &overflow)
        if overflow != 0 or t <= 0 or t > 2_000_000_000:
            return -1
        if t < _SLOTS:
            return <int>self._slot[t] - 1
        for i in range(self._count):
            if self._tags[i] == t:
                return i
        return -1

    cdef int _field(self, object tag) except -1:
        cdef int i = self._index(tag)
        if i < 0:
            raise KeyError(tag)
        return i

    cdef bytes _value(self, object tag):
        cdef int i = self._field(tag)
        return PyBytes_FromStringAndSize(<const char*>self._data() + self._value_start[i],
                                         self._value_end[i] - self._value_start[i])

    @property
    def begin_string(self):
        """BeginString (8): ``"FIX.4.2"`` or ``"FIX.4.4"``."""
        self._live()
        return PyUnicode_DecodeLatin1(<const char*>self._data() + 2, self._begin_length, NULL)

    @property
    def msg_type(self):
        """MsgType (35), e.g. ``"D"``."""
        cdef int i = self._field(35)
        return PyUnicode_DecodeLatin1(<const char*>self._data() + self._value_start[i],
                                      self._value_end[i] - self._value_start[i], NULL)

    @property
    def seq_num(self):
        """MsgSeqNum (34) as an int."""
        return self.get_int(34)

    @property
    def field_count(self):
        """Number of fields between BodyLength (9) and CheckSum (10)."""
        self._live()
        return self._count

    def has(self, tag, /):
        """Return whether the message carries ``tag`` (8, 9 and 10 are not body fields)."""
        return self._index(tag) >= 0

    def get_bytes(self, tag, /):
        """Return the raw value of ``tag``."""
        return self._value(tag)

    def get_str(self, tag, /):
        """Return the value of ``tag`` decoded as Latin-1 (every byte maps; ASCII is unchanged)."""
        cdef int i = self._field(tag)
        return PyUnicode_DecodeLatin1(<const char*>self._data() + self._value_start[i],
                                      self._value_end[i] - self._value_start[i], NULL)

    def get_int(self, tag, /):
        """Return the value of ``tag`` as an int (``[-]digits``, at most 18 digits)."""
        cdef int i = self._field(tag)
        cdef const unsigned char* s = self._data() + self._value_start[i]
        cdef Py_ssize_t n = self._value_end[i] - self._value_start[i], k = 0
        cdef bint negative = False
        cdef int64_t value = 0
        if n and s[0] == 0x2D:
            negative = True
            k = 1
        if 1 <= n - k <= 18:
            while k < n and _digit(s[k]):
                value = value * 10 + (s[k] - 0x30)
                k += 1
            if k == n:
                return PyLong_FromLongLong(-value if negative else value)
        return _spec.parse_int(tag, self._value(tag))

    def get_price(self, tag, decimals, /):
        """Return the value of ``tag`` as an int with ``decimals`` implied decimals, exactly.

        ``"123.45"`` is ``1234500`` at 4 decimals; ``ValueError`` when the value has more
        non-zero decimals than ``decimals`` or is not ``[-]digits[.digits]``.
        """
        cdef int i = self._field(tag)
        cdef const unsigned char* s = self._data() + self._value_start[i]
        cdef Py_ssize_t n = self._value_end[i] - self._value_start[i], k = 0, whole_digits = 0, frac_digits = 0
        cdef bint negative = False, ok = True, any_digit = False
        cdef int64_t whole = 0, frac = 0
        cdef int d, overflow = 0
        cdef long long dd = -1
        if type(decimals) is int:
            dd = PyLong_AsLongLongAndOverflow(decimals, &overflow)
        if overflow != 0 or not 0 <= dd <= 9:
            dd = _spec.check_int("decimals", decimals, 0, 9)
        d = <int>dd
        if n and s[0] == 0x2D:
            negative = True
            k = 1
        while k < n and s[k] == 0x30:  # leading zeros count for nothing
            k += 1
            any_digit = True
        while k < n and _digit(s[k]):
            if whole_digits < 18:
                whole = whole * 10 + (s[k] - 0x30)
            whole_digits += 1
            k += 1
            any_digit = True
        if k < n and s[k] == 0x2E:
            k += 1
            while k < n and _digit(s[k]):
                if frac_digits < d:
                    frac = frac * 10 + (s[k] - 0x30)
                elif s[k] != 0x30:
                    ok = False  # a non-zero decimal beyond ``decimals``: spec words the error
                frac_digits += 1
                k += 1
                any_digit = True
        if ok and any_digit and k == n and whole_digits + d <= 18:
            if frac_digits < d:
                frac *= _POW10[d - frac_digits]
            whole = whole * _POW10[d] + frac
            return PyLong_FromLongLong(-whole if negative else whole)
        return _spec.price_to_int(tag, self._value(tag), d)

    def get_float(self, tag, /):
        """Return the value of ``tag`` (``[-]digits[.digits]``) as the nearest float."""
        return _spec.parse_float(tag, self._value(tag))

    def get_decimal(self, tag, /):
        """Return the value of ``tag`` (``[-]digits[.digits]``) as an exact ``decimal.Decimal``."""
        return _spec.parse_decimal(tag, self._value(tag))

    def get_timestamp_ns(self, tag, /):
        """Return the UTCTimestamp of ``tag`` (``YYYYMMDD-HH:MM:SS[.d{1,9}]``) as ns since the epoch."""
        cdef int i = self._field(tag)
        cdef const unsigned char* s = self._data() + self._value_start[i]
        cdef Py_ssize_t n = self._value_end[i] - self._value_start[i], k
        cdef int64_t year, month, day, hour, minute, second, nanos = 0
        cdef bint ok = n >= 17 and (n == 17 or (n >= 19 and n <= 27 and s[17] == 0x2E))
        if ok:
            for k in range(17):
                if k == 8:
                    ok = ok and s[k] == 0x2D
                elif k == 11 or k == 14:
                    ok = ok and s[k] == 0x3A
                else:
                    ok = ok and _digit(s[k])
            for k in range(18, n):
                ok = ok and _digit(s[k])
                nanos = nanos * 10 + (s[k] - 0x30)
        if ok:
            year = _two(s) * 100 + _two(s + 2)
            ok = 1970 <= year <= 2261  # ns since the epoch fit in 64 bits; other years go to spec
        if ok:
            month = _two(s + 4)
            day = _two(s + 6)
            hour = _two(s + 9)
            minute = _two(s + 12)
            second = _two(s + 15)
            if n > 17:
                nanos *= _POW10[27 - n]
            if (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month) and hour < 24 and minute < 60
                    and second < 60):
                return PyLong_FromLongLong(
                    ((_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second)
                     * 1_000_000_000) + nanos)
        return _spec.parse_timestamp(tag, self._value(tag))

    def fields(self):
        """Return ``(tag, value)`` of every body field in wire order (8, 9 and 10 excluded)."""
        cdef int i
        cdef const unsigned char* data
        self._live()
        data = self._data()
        return [
            (self._tags[i], PyBytes_FromStringAndSize(<const char*>data + self._value_start[i],
                                                      self._value_end[i] - self._value_start[i]))
            for i in range(self._count)
        ]

    def raw(self):
        """Return a copy of the whole message, ``8=`` through the CheckSum's SOH."""
        self._live()
        return PyBytes_FromStringAndSize(<const char*>self._data(), self._end - self._start)

    def __repr__(self):
        if self._owner is None or self._owner._generation != self._generation:
            return "<FixMessage (stale)>"
        return f"<FixMessage {self.raw().decode('latin-1').replace(chr(1), '|')}>"


# --- the reader ---------------------------------------------------------------------------------------

cdef const char* _START = b"8=FIX"
cdef const char* _NEXT_START = b"\x018=FIX"
cdef const char* _TRAILER = b"\x0110="


@cython.final
cdef class FixReader:
    """FixReader(max_message_size=65536, max_fields=256)
--

Split a FIX byte stream into validated messages: feed bytes in any split, take events out.

    ``feed(data)`` appends bytes; ``next_event()`` returns the next :class:`FixMessage` (the
    reader's one reusable view), a :class:`~lowlat.fix.spec.FixError` for a rejected span, or
    ``None`` when more bytes are needed. Iterating the reader yields events until ``None``.

    Validation: BeginString (8) must be FIX.4.2 or FIX.4.4 and first, BodyLength (9) second and
    equal to the real length, CheckSum (10) last with three digits and equal to the byte sum,
    MsgType (35) third, every field ``tag=value`` with a non-empty value, no tag twice
    (repeating groups are not supported), and every tag the message type requires present
    (:func:`~lowlat.fix.spec.required_tags`). A message failing any check comes out as one
    ``FixError`` (reason, tag, text, stream offset, bytes) covering it up to its own CheckSum or
    to the next ``8=FIX``, whichever comes first; bytes between messages that are not one come out
    as one ``garbage`` error. The stream goes on with the next ``8=FIX``: an intact message is
    never lost or returned twice, whatever precedes it. Nothing about the peer's bytes raises.

    The end of a message is looked for within ``max_message_size`` bytes; a span that long with
    no end is reported (``too_long``) and skipped. ``finish()`` marks the end of the stream: what
    is left then comes out as errors. Not thread-safe: one reader per connection and thread.
    Complexity: O(bytes) per message; the compiled half allocates only for errors and ``feed``
    growth.
    """

    cdef unsigned char* _buf
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _len
    cdef Py_ssize_t _pos
    cdef int64_t _base         # stream offset of _buf[0]
    cdef bint _eof
    cdef uint64_t _generation
    cdef int64_t _messages
    cdef int64_t _errors
    cdef Py_ssize_t _max
    cdef int _max_fields
    cdef FixMessage _view

    def __cinit__(self, max_message_size=65536, max_fields=256):
        self._buf = NULL

    def __init__(self, max_message_size=65536, max_fields=256):
        cdef FixMessage view
        self._max = _spec.check_int("max_message_size", max_message_size, 64, 1 << 30)
        self._max_fields = _spec.check_int("max_fields", max_fields, 8, 4096)
        if self._buf == NULL:
            self._buf = <unsigned char*>malloc(4096)
            if self._buf == NULL:
                raise MemoryError()
            self._capacity = 4096
        self._len = 0
        self._pos = 0
        self._base = 0
        self._eof = False
        view = FixMessage()
        view._allocate(self._max_fields)
        self._view = view

    def __dealloc__(self):
        free(self._buf)

    @property
    def max_message_size(self):
        """Longest span searched for a message's end before it is reported ``too_long``."""
        return self._max

    @property
    def max_fields(self):
        """Most body fields a message may have (more is a ``too_many_fields`` error)."""
        return self._max_fields

    @property
    def buffered(self):
        """Bytes fed and not yet returned as a message or an error."""
        return self._len - self._pos

    @property
    def offset(self):
        """Stream offset of the first byte not yet returned (every byte ever fed counts)."""
        return self._base + self._pos

    @property
    def message_count(self):
        """Messages returned so far."""
        return self._messages

    @property
    def error_count(self):
        """Errors returned so far."""
        return self._errors

    def feed(self, data, /):
        """Append ``data`` (any bytes-like object) to the stream. ``ValueError`` after ``finish()``."""
        cdef Py_buffer view
        cdef Py_ssize_t want, size
        cdef unsigned char* grown
        if self._eof:
            raise ValueError("feed() after finish(): call reset() to start a new stream")
        if self._buf == NULL:
            raise ValueError("FixReader is not initialised")
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            raise TypeError(f"data must be a bytes-like object, got {type(data).__name__}") from None
        try:
            self._generation += 1
            if self._pos and self._pos * 2 >= self._len:
                memmove(self._buf, self._buf + self._pos, <size_t>(self._len - self._pos))
                self._base += self._pos
                self._len -= self._pos
                self._pos = 0
            want = self._len + view.len
            if want > self._capacity:
                size = self._capacity
                while size < want:
                    size *= 2
                grown = <unsigned char*>realloc(self._buf, <size_t>size)
                if grown == NULL:
                    raise MemoryError()
                self._buf = grown
                self._capacity = size
            memcpy(self._buf + self._len, view.buf, <size_t>view.len)
            self._len = want
        finally:
            PyBuffer_Release(&view)

    def finish(self):
        """Mark the end of the stream: what remains comes out of ``next_event`` as errors."""
        self._generation += 1
        self._eof = True

    def reset(self):
        """Drop everything buffered and start a new stream at offset 0."""
        self._generation += 1
        self._len = 0
        self._pos = 0
        self._base = 0
        self._eof = False

    def __iter__(self):
        return self

    def __next__(self):
        event = self._next()
        if event is None:
            raise StopIteration
        return event

    def next_event(self):
        """Return the next message (the reusable view), error, or ``None`` when more bytes are needed.

        A message or an error ends the previous message's view; ``None`` leaves it valid.
        """
        return self._next()

    cdef object _next(self):
        cdef Py_ssize_t p = self._pos, n = self._len, q
        if p >= n:
            return None
        if n - p < 5 or memcmp(self._buf + p, _START, 5) != 0:
            q = _find(self._buf, p, n, _START, 5)
            if q < 0:
                if self._eof:
                    q = n
                elif n - p > self._max:
                    q = n - 4  # the last 4 bytes may begin an 8=FIX
                else:
                    return None
            return self._error(Reason.GARBAGE, 0, f"{q - p} bytes that are not a FIX message", p, q)
        return self._frame(p, n)

    # -- internals -------------------------------------------------------------------------------

    cdef object _error(self, str reason, int tag, str text, Py_ssize_t start, Py_ssize_t end):
        self._generation += 1
        self._pos = end
        self._errors += 1
        return FixError(reason, tag, text, self._base + start,
                        PyBytes_FromStringAndSize(<const char*>self._buf + start, end - start))

    cdef Py_ssize_t _scan_end(self, Py_ssize_t p, Py_ssize_t n, bint strict, bint* by_trailer, Py_ssize_t* at) noexcept:
        """Where the frame at ``p`` ends (the pure twin's ``_scan_end``); -1 when not yet known."""
        cdef const unsigned char* b = self._buf
        cdef Py_ssize_t k = _find(b, p, n, _TRAILER, 4), trailer_end = -1, start, s
        while k >= 0 and k + 8 <= n:
            if _digit(b[k + 4]) and _digit(b[k + 5]) and _digit(b[k + 6]) and b[k + 7] == 1:
                trailer_end = k + 8
                break
            k = _find(b, k + 1, n, _TRAILER, 4)
        if strict:
            s = _find(b, p, n, _NEXT_START, 6)
            start = s + 1 if s >= 0 else -1
        else:
            start = _find(b, p + 1, n, _START, 5)
        if start >= 0 and (trailer_end < 0 or start < trailer_end):
            by_trailer[0] = False
            at[0] = start
            return start
        by_trailer[0] = trailer_end >= 0
        at[0] = k
        return trailer_end

    cdef object _bad(self, str reason, int tag, str text, Py_ssize_t p, Py_ssize_t n):
        cdef bint by_trailer
        cdef Py_ssize_t k
        cdef Py_ssize_t end = self._scan_end(p, n, False, &by_trailer, &k)
        if end < 0:
            if not self._eof and n - p <= self._max:
                return None
            end = n
        return self._error(reason, tag, text, p, end)

    cdef inline Py_ssize_t _cut(self, Py_ssize_t p, Py_ssize_t end) noexcept:
        cdef Py_ssize_t s = _find(self._buf, p + 1, end, _START, 5)
        return s if s >= 0 else end

    cdef object _frame(self, Py_ssize_t p, Py_ssize_t n):
        cdef const unsigned char* b = self._buf
        cdef bint eof = self._eof, by_trailer
        cdef Py_ssize_t e8, q, e9, length = 0, body, t, end, k, i, j, eq
        cdef int version, count, tag, m
        cdef unsigned int computed = 0, declared
        cdef const unsigned char* hit
        cdef FixMessage view
        cdef int* required
        # BeginString (8)
        hit = <const unsigned char*>memchr(b + p, 1, <size_t>(min(n, p + 16) - p))
        if hit == NULL:
            if n - p < 16:
                return self._error(Reason.TRUNCATED, 10, _ENDS_EARLY, p, n) if eof else None
            return self._bad(Reason.BEGIN_STRING, 8, "BeginString (8) is not FIX.4.2 or FIX.4.4", p, n)
        e8 = hit - b
        if e8 - p == 9 and memcmp(b + p, b"8=FIX.4.4", 9) == 0:
            version = 1
        elif e8 - p == 9 and memcmp(b + p, b"8=FIX.4.2", 9) == 0:
            version = 0
        else:
            begin = PyBytes_FromStringAndSize(<const char*>b + p + 2, e8 - p - 2) if e8 >= p + 2 else b""
            return self._bad(Reason.BEGIN_STRING, 8, f"BeginString (8) {begin!r} is not FIX.4.2 or FIX.4.4", p, n)
        # BodyLength (9)
        q = e8 + 1
        e9 = -1
        if min(n, q + 11) > q:
            hit = <const unsigned char*>memchr(b + q, 1, <size_t>(min(n, q + 11) - q))
            if hit != NULL:
                e9 = hit - b
        if e9 < 0:
            if n - q < 11:
                return self._error(Reason.TRUNCATED, 10, _ENDS_EARLY, p, n) if eof else None
            return self._bad(Reason.BODY_LENGTH, 9, "BodyLength (9) is missing or not a number", p, n)
        if not (e9 - q - 2 >= 1 and e9 - q - 2 <= 8 and b[q] == 0x39 and b[q + 1] == 0x3D):
            return self._bad(Reason.BODY_LENGTH, 9, "BodyLength (9) is missing or not a number", p, n)
        for i in range(q + 2, e9):
            if not _digit(b[i]):
                return self._bad(Reason.BODY_LENGTH, 9, "BodyLength (9) is missing or not a number", p, n)
            length = length * 10 + (b[i] - 0x30)
        body = e9 + 1
        t = body + length  # where "10=" must begin
        if length > self._max:
            return self._bad(Reason.BODY_LENGTH, 9, f"BodyLength (9) {length} exceeds max_message_size {self._max}", p, n)
        if n < t + 7:
            # Not all there, or BodyLength is wrong: conclusive only when the real end shows up early.
            if self._scan_end(p, n, True, &by_trailer, &k) < 0:
                if eof:
                    return self._error(Reason.TRUNCATED, 10, _ENDS_EARLY, p, n)
                if n - p > self._max:
                    return self._error(Reason.TOO_LONG, 0, f"no message end within {self._max} bytes", p, n)
                return None
            # The frame is bad: now any 8=FIX ends it (its final SOH may be what was damaged).
            end = self._scan_end(p, n, False, &by_trailer, &k)
            if by_trailer:
                return self._error(Reason.BODY_LENGTH, 9, f"BodyLength (9) is {length}, the body has {k + 1 - body} bytes", p, end)
            return self._error(Reason.TRUNCATED, 10, "the next 8=FIX begins before the CheckSum (10)", p, end)
        if not (b[t - 1] == 1 and b[t] == 0x31 and b[t + 1] == 0x30 and b[t + 2] == 0x3D and _digit(b[t + 3])
                and _digit(b[t + 4]) and _digit(b[t + 5]) and b[t + 6] == 1):
            end = self._scan_end(p, n, False, &by_trailer, &k)
            if end < 0:
                if eof:
                    return self._error(Reason.TRUNCATED, 10, _ENDS_EARLY, p, n)
                if n - p > self._max:
                    return self._error(Reason.TOO_LONG, 0, f"no message end within {self._max} bytes", p, n)
                return None
            if b[t - 1] == 1 and b[t] == 0x31 and b[t + 1] == 0x30 and b[t + 2] == 0x3D:
                return self._error(Reason.CHECKSUM, 10, "CheckSum (10) is not three digits and SOH", p, end)
            if by_trailer:
                return self._error(Reason.BODY_LENGTH, 9, f"BodyLength (9) is {length}, the body has {k + 1 - body} bytes", p, end)
            return self._error(Reason.TRUNCATED, 10, "the next 8=FIX begins before the CheckSum (10)", p, end)
        end = t + 7
        declared = (b[t + 3] - 0x30) * 100 + (b[t + 4] - 0x30) * 10 + (b[t + 5] - 0x30)
        for i in range(p, t):
            computed += b[i]
        computed &= 0xFF
        if declared != computed:
            return self._error(Reason.CHECKSUM, 10, f"CheckSum (10) is {declared:03d}, the bytes sum to {computed:03d}", p, self._cut(p, end))
        # Body fields, into the reusable view (its old contents are stale from here on).
        view = self._view
        view._clear()
        count = 0
        i = body
        while i < t:
            j = <const unsigned char*>memchr(b + i, 1, <size_t>(t - i)) - b
            eq = i
            while eq < j and _digit(b[eq]):
                eq += 1
            if eq >= j or b[eq] != 0x3D or eq - i < 1 or eq - i > 9 or b[i] == 0x30:
                field = PyBytes_FromStringAndSize(<const char*>b + i, j - i)
                return self._error(Reason.MALFORMED_FIELD, 0, f"field {field!r} is not tag=value", p, self._cut(p, end))
            tag = 0
            for k in range(i, eq):
                tag = tag * 10 + (b[k] - 0x30)
            if eq + 1 == j:
                return self._error(Reason.MALFORMED_FIELD, tag, f"tag {tag} has an empty value", p, self._cut(p, end))
            if count == 0 and tag != 35:
                return self._error(Reason.MSG_TYPE, 35, "MsgType (35) is not the third field", p, self._cut(p, end))
            if tag == 8 or tag == 9 or tag == 10 or self._seen(view, tag, count):
                return self._error(Reason.REPEATED_TAG, tag, f"tag {tag} appears twice", p, self._cut(p, end))
            if count == self._max_fields:
                return self._error(Reason.TOO_MANY_FIELDS, tag, f"more than {self._max_fields} fields", p, self._cut(p, end))
            view._tags[count] = tag
            view._value_start[count] = eq + 1 - p
            view._value_end[count] = j - p
            count += 1
            view._count = count
            if tag < _SLOTS:
                view._slot[tag] = <uint16_t>count
            i = j + 1
        if count == 0:
            return self._error(Reason.MSG_TYPE, 35, "MsgType (35) is not the third field", p, end)
        # Required tags of this MsgType (the first field); MsgTypes of two characters need the header only.
        if view._value_end[0] - view._value_start[0] == 1 and b[p + view._value_start[0]] < 128:
            m = b[p + view._value_start[0]]
            required = _REQUIRED[version][m]
            count = _REQUIRED_COUNT[version][m]
        else:
            required = _HEADER_REQUIRED
            count = _HEADER_COUNT
        for i in range(count):
            if not self._seen(view, required[i], view._count):
                msg_type = PyUnicode_DecodeLatin1(<const char*>b + p + view._value_start[0],
                                                  view._value_end[0] - view._value_start[0], NULL)
                return self._error(Reason.MISSING_TAG, required[i], f"required tag {required[i]} is missing from MsgType {msg_type}", p, end)
        self._generation += 1
        view._owner = self
        view._generation = self._generation
        view._start = p
        view._end = end
        view._begin_length = 7
        self._pos = end
        self._messages += 1
        return view

    cdef inline bint _seen(self, FixMessage view, int tag, int count) noexcept:
        cdef int i
        if tag < _SLOTS:
            return view._slot[tag] != 0
        for i in range(count):
            if view._tags[i] == tag:
                return True
        return False
