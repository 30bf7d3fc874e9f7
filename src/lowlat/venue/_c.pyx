# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: cdivision=True
"""Compiled OUCH 4.2 book of the exchange simulator: the twin of :mod:`lowlat.venue._py`.

``OuchExchange().on_message(username, payload)`` takes one Enter / Replace / Cancel / Modify Order and
returns the answers as ``(username, payload)`` pairs (sequenced messages for each user, the
counterparty of a fill included); ``serve`` is the simulator's whole read of one SoupBinTCP
connection. The rules are in :mod:`lowlat.venue.rules`.

The fields of an incoming order are read straight from its bytes at the offsets
:mod:`lowlat.ouch.spec` gives (copied into C tables at import), and every answer is written
straight into its bytes object. Each side of a stock's book keeps its price levels in a sorted C
array, best price last, beside the level's queue (a ``deque`` of orders): the best price is one
load, a new level a binary search and a ``memmove``. The book runs no Python code of a caller's
while it works (usernames must be exact ``str``), and refuses to be re-entered (``RuntimeError``)
from a callback or a finaliser. Bounds checking stays on (module default) except where an index
is checked just before.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.errno cimport EAGAIN, EINTR, errno
from libc.math cimport ceil
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memmove, memset
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from lowlat._bigendian cimport load_u32 as _load_u32, store_u32 as _store_u32, store_u64 as _store_u64
from lowlat._clock cimport monotonic_ns

from collections import deque as _deque

from lowlat.exchange.simulator import Received as _Received
from lowlat.net.soupbintcp import SessionLog as _SessionLog, SessionState as _SessionState, UnsequencedData as _UnsequencedData
from lowlat.ouch.spec import ALPHA, CHAR, CLIENT, MESSAGES
from lowlat.venue.rules import DISPLAYS, MAX_PRICE, SELL_SIDES, SIDES, TIF_IOC, check_exchange, check_order

__all__ = ["OuchExchange", "RestingOrder"]

cdef extern from "<errno.h>":
    int EWOULDBLOCK

cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_recv "recv"(int fd, void* buf, size_t n, int flags)
    ssize_t c_send "send"(int fd, const void* buf, size_t n, int flags)
    int MSG_NOSIGNAL
    int MSG_DONTWAIT

cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/epoll.h>
    #define LOWLAT_HAVE_EPOLL 1
    #else
    struct epoll_event { unsigned int events; union { int fd; } data; };
    static int epoll_wait(int fd, struct epoll_event *e, int n, int ms) { errno = ENOSYS; return -1; }
    #define LOWLAT_HAVE_EPOLL 0
    #endif
    """
    ctypedef union epoll_data_t:
        int fd
    struct epoll_event:
        unsigned int events
        epoll_data_t data
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout) nogil

cdef extern from "Python.h":
    # Declared without Cython's except clause so a failure can be turned into our own TypeError.
    int _get_buffer "PyObject_GetBuffer"(object, Py_buffer*, int)
    void PyErr_Clear()

cdef enum:
    READ_SIZE = 65536          # one recv, as the simulator's general path reads
    MAX_EVENTS = 64            # epoll events taken per wait
    MAX_SPIN = 64              # connections a spinning serve_ready reads itself (the others: epoll)
    SPIN_EPOLL = 8             # a spinning serve_ready asks epoll about the rest every this many turns
    SCRATCH = 128              # the longest OUCH message (80 bytes) fits
    MAX_TEXT_SPANS = 16

cdef object _ACTIVE = _SessionState.ACTIVE
cdef uint64_t DAY_NS = 86400000000000ULL

# -- layouts, from lowlat.ouch.spec (the one place offsets are written) ---------------------------


cdef int _at(str message, str field) except -1:
    for f, offset in MESSAGES[message].fields:
        if f.name == field:
            return offset
    raise AssertionError(f"OUCH {message} has no {field}")


cdef int _length(str message) except -1:
    length = MESSAGES[message].length
    if length > SCRATCH:
        raise AssertionError(f"OUCH {message} is longer than {SCRATCH} bytes")
    return length


# Client messages: their lengths and the offsets read.
cdef int ENTER_LEN = _length("enter_order"), REPLACE_LEN = _length("replace_order")
cdef int CANCEL_LEN = _length("cancel_order"), MODIFY_LEN = _length("modify_order")
cdef int O_TOKEN = _at("enter_order", "order_token"), O_SIDE = _at("enter_order", "side")
cdef int O_SHARES = _at("enter_order", "shares"), O_STOCK = _at("enter_order", "stock")
cdef int O_PRICE = _at("enter_order", "price"), O_TIF = _at("enter_order", "time_in_force")
cdef int O_FIRM = _at("enter_order", "firm"), O_DISPLAY = _at("enter_order", "display")
cdef int O_CAPACITY = _at("enter_order", "capacity"), O_ISE = _at("enter_order", "intermarket_sweep")
cdef int O_MINQ = _at("enter_order", "minimum_quantity"), O_CROSS = _at("enter_order", "cross_type")
cdef int U_EXISTING = _at("replace_order", "existing_order_token")
cdef int U_REPLACEMENT = _at("replace_order", "replacement_order_token")
cdef int U_SHARES = _at("replace_order", "shares"), U_PRICE = _at("replace_order", "price")
cdef int U_TIF = _at("replace_order", "time_in_force"), U_DISPLAY = _at("replace_order", "display")
cdef int U_ISE = _at("replace_order", "intermarket_sweep"), U_MINQ = _at("replace_order", "minimum_quantity")
cdef int X_TOKEN = _at("cancel_order", "order_token"), X_SHARES = _at("cancel_order", "shares")
cdef int M_TOKEN = _at("modify_order", "order_token"), M_SIDE = _at("modify_order", "side")
cdef int M_SHARES = _at("modify_order", "shares")

# Exchange messages written.
cdef int A_LEN = _length("accepted"), R_LEN = _length("replaced"), C_LEN = _length("canceled")
cdef int E_LEN = _length("executed"), J_LEN = _length("rejected"), M_LEN = _length("order_modified")
cdef int A_AT[16]  # Accepted and Replaced share these fields (Replaced's token is its replacement token)
cdef int R_AT[16]
cdef int R_PREVIOUS = _at("replaced", "previous_order_token")
cdef int C_STAMP = _at("canceled", "timestamp"), C_TOKEN = _at("canceled", "order_token")
cdef int C_DECREMENT = _at("canceled", "decrement_shares"), C_REASON = _at("canceled", "reason")
cdef int E_STAMP = _at("executed", "timestamp"), E_TOKEN = _at("executed", "order_token")
cdef int E_SHARES = _at("executed", "executed_shares"), E_PRICE = _at("executed", "execution_price")
cdef int E_LIQUIDITY = _at("executed", "liquidity_flag"), E_MATCH = _at("executed", "match_number")
cdef int J_STAMP = _at("rejected", "timestamp"), J_TOKEN = _at("rejected", "order_token")
cdef int J_REASON = _at("rejected", "reason")
cdef int MM_STAMP = _at("order_modified", "timestamp"), MM_TOKEN = _at("order_modified", "order_token")
cdef int MM_SIDE = _at("order_modified", "side"), MM_SHARES = _at("order_modified", "shares")

_ACCEPTED_FIELDS = ("timestamp", "order_token", "side", "shares", "stock", "price", "time_in_force", "firm", "display",
                    "order_reference_number", "capacity", "intermarket_sweep", "minimum_quantity", "cross_type",
                    "order_state", "bbo_weight_indicator")
for _k, _name in enumerate(_ACCEPTED_FIELDS):
    A_AT[_k] = _at("accepted", _name)
    R_AT[_k] = _at("replaced", "replacement_order_token" if _name == "order_token" else _name)
cdef enum:  # indexes into A_AT / R_AT, in _ACCEPTED_FIELDS order
    F_STAMP = 0
    F_TOKEN = 1
    F_SIDE = 2
    F_SHARES = 3
    F_STOCK = 4
    F_PRICE = 5
    F_TIF = 6
    F_FIRM = 7
    F_DISPLAY = 8
    F_REFERENCE = 9
    F_CAPACITY = 10
    F_ISE = 11
    F_MINQ = 12
    F_CROSS = 13
    F_STATE = 14
    F_BBO = 15

# Text fields of each client message, (offset, width): a non-ASCII byte in one makes it not OUCH.
cdef int _text_spans[256][MAX_TEXT_SPANS][2]
cdef int _n_text_spans[256]
cdef int _client_length[256]
memset(_n_text_spans, 0, sizeof(_n_text_spans))
memset(_client_length, 0, sizeof(_client_length))
for _layout in MESSAGES.values():
    if _layout.direction != CLIENT:
        continue
    _letter = ord(_layout.type)
    _client_length[_letter] = _layout.length
    for _field, _offset in _layout.fields:
        if _field.kind in (ALPHA, CHAR):
            _text_spans[_letter][_n_text_spans[_letter]][0] = _offset
            _text_spans[_letter][_n_text_spans[_letter]][1] = _field.width
            _n_text_spans[_letter] += 1

cdef bint _is_side[256]
cdef bint _is_sell[256]
cdef bint _is_display[256]
memset(_is_side, 0, sizeof(_is_side))
memset(_is_sell, 0, sizeof(_is_sell))
memset(_is_display, 0, sizeof(_is_display))
for _c in SIDES:
    _is_side[ord(_c)] = True
for _c in SELL_SIDES:
    _is_sell[ord(_c)] = True
for _c in DISPLAYS:
    _is_display[ord(_c)] = True
cdef uint32_t C_MAX_PRICE = MAX_PRICE
cdef uint32_t C_TIF_IOC = TIF_IOC


# -- bytes helpers ------------------------------------------------------------------------------


cdef inline uint64_t _timestamp() noexcept nogil:
    """Nanoseconds since midnight UTC (the clock of ``time.time_ns()``), as OUCH stamps its messages."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return (<uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec) % DAY_NS


cdef inline double _monotonic() noexcept nogil:
    """``time.monotonic()``: CLOCK_MONOTONIC in seconds."""
    return <double>monotonic_ns() / 1e9


cdef inline str _text(const unsigned char* p, int width):
    """An alpha field as the codec decodes it: without its trailing spaces."""
    while width > 0 and p[width - 1] == 32:
        width -= 1
    return PyUnicode_DecodeLatin1(<const char*>p, width, NULL)


cdef inline str _char(unsigned char c):
    return PyUnicode_DecodeLatin1(<const char*>&c, 1, NULL)


cdef bint _all_ascii(const unsigned char* message) noexcept:
    cdef int k, i, letter = message[0]
    for k in range(_n_text_spans[letter]):
        for i in range(_text_spans[letter][k][0], _text_spans[letter][k][0] + _text_spans[letter][k][1]):
            if message[i] >= 0x80:
                return False
    return True


cdef void _pad(unsigned char* out, str value, int width) except *:
    """Write ASCII ``value`` (checked by the caller) space-padded to ``width`` bytes."""
    raw = value.encode("ascii")
    cdef Py_ssize_t n = len(raw)
    if n > width:
        raise ValueError(f"{value!r} is longer than {width} characters")
    memset(out, 32, width)
    memcpy(out, PyBytes_AS_STRING(raw), n)


cdef bint _whole_unsequenced(const unsigned char* data, Py_ssize_t size) noexcept nogil:
    """Whether ``data`` is whole Unsequenced Data packets and nothing else."""
    cdef Py_ssize_t position = 0, length
    while position < size:
        if size - position < 3:
            return False
        length = (<Py_ssize_t>data[position] << 8) | data[position + 1]
        if length == 0 or data[position + 2] != 0x55 or position + 2 + length > size:  # 0x55: "U"
            return False
        position += 2 + length
    return True


cdef object _received(object at, object peer, str username, bytes payload):
    """``Received(at, peer, username, UnsequencedData(payload))``, without running the two dataclass
    ``__init__`` frames: both classes are plain ``slots`` dataclasses, so this is the same object."""
    event = _UnsequencedData.__new__(_UnsequencedData)
    event.payload = payload
    record = _Received.__new__(_Received)
    record.at = at
    record.peer = peer
    record.username = username
    record.event = event
    return record


# -- orders -------------------------------------------------------------------------------------


@cython.final
@cython.no_gc  # holds str and a tuple of two str: no cycle can go through it
cdef class RestingOrder:
    """An order on the book (or being matched): read-only outside the book that owns it.

    Arguments are checked (``TypeError``/``ValueError`` naming the argument): text fields are
    ASCII str no longer than their OUCH field, ``shares`` and ``price`` fit 32 bits, ``reference``
    64 bits. Orders compare by identity.
    """

    cdef str _username, _token, _stock
    # The book and user this order lives in, borrowed: the exchange keeps both for its lifetime and
    # only its own methods follow these (NULL for an order built by the constructor). Owned
    # references would make a cycle (book -> level -> order -> book) that refcounting never frees.
    cdef PyObject* _in_book
    cdef PyObject* _holder
    cdef uint32_t _shares, _price
    cdef uint64_t _reference
    cdef unsigned char _side, _capacity, _cross_type
    cdef unsigned char _token_raw[14]  # the wire bytes, space-padded
    cdef unsigned char _stock_raw[8]
    cdef unsigned char _firm_raw[4]

    def __init__(self, username, token, side, shares, stock, price, reference, firm="", capacity="A",
                 cross_type="N"):
        values = check_order(username, token, side, shares, stock, price, reference, firm, capacity, cross_type)
        self._username, self._token = values[0], values[1]
        self._side = ord(values[2])
        self._shares = values[3]
        self._stock = values[4]
        self._price = values[5]
        self._reference = values[6]
        self._capacity = ord(values[8])
        self._cross_type = ord(values[9])
        _pad(self._token_raw, self._token, 14)
        _pad(self._stock_raw, self._stock, 8)
        _pad(self._firm_raw, values[7], 4)

    @property
    def username(self):
        """The user (login name) the order belongs to."""
        return self._username

    @property
    def token(self):
        """The user's order token (a replace with priority kept gives the order its new token)."""
        return self._token

    @property
    def side(self):
        """``"B"`` or a sell (``"S"``, ``"T"``, ``"E"``)."""
        return _char(self._side)

    @property
    def shares(self):
        """Shares still open (0 once filled, canceled or replaced away)."""
        return self._shares

    @property
    def stock(self):
        """The symbol, without padding."""
        return self._stock

    @property
    def price(self):
        """The limit price, 4 implied decimals."""
        return self._price

    @property
    def reference(self):
        """The exchange's order reference number (Accepted's ``order_reference_number``)."""
        return self._reference

    @property
    def firm(self):
        """The firm (MPID), without padding."""
        return _text(self._firm_raw, 4)

    @property
    def capacity(self):
        """Capacity: ``"A"`` agency, ``"P"`` principal, ``"R"`` riskless, ``"O"`` other."""
        return _char(self._capacity)

    @property
    def cross_type(self):
        """Cross type (``"N"`` none...)."""
        return _char(self._cross_type)

    def __repr__(self):
        return (f"RestingOrder(username={self._username!r}, token={self._token!r}, side={self.side!r}, "
                f"shares={self._shares!r}, stock={self._stock!r}, price={self._price!r}, "
                f"reference={self._reference!r}, firm={self.firm!r}, capacity={self.capacity!r}, "
                f"cross_type={self.cross_type!r})")


# -- one side of one stock's book -----------------------------------------------------------------


@cython.final
cdef class _Side:
    """Price levels sorted worst to best (the best is last: found, drained and removed at O(1)).

    ``keys`` holds the price for bids and ``0xFFFFFFFF - price`` for offers so that both sort
    ascending; ``queues[i]`` is an owned reference to the ``deque`` of level ``i``.
    """

    cdef uint32_t* keys
    cdef PyObject** queues
    cdef Py_ssize_t count, capacity
    cdef bint buy

    def __cinit__(self, bint buy):
        self.buy = buy
        self.capacity = 8
        self.keys = <uint32_t*>malloc(self.capacity * sizeof(uint32_t))
        self.queues = <PyObject**>malloc(self.capacity * sizeof(PyObject*))
        if self.keys is NULL or self.queues is NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.queues is not NULL:
            for i in range(self.count):
                Py_DECREF(<object>self.queues[i])
        free(self.keys)
        free(self.queues)

    cdef inline uint32_t key(self, uint32_t price) noexcept:
        return price if self.buy else 0xFFFFFFFFu - price

    cdef inline uint32_t price_at(self, Py_ssize_t i) noexcept:
        return self.keys[i] if self.buy else 0xFFFFFFFFu - self.keys[i]

    cdef Py_ssize_t find(self, uint32_t price) noexcept:
        """The index of ``price``'s level, or ``-1 - where`` it would go."""
        cdef uint32_t key = self.key(price)
        cdef Py_ssize_t low = 0, high = self.count, middle
        while low < high:
            middle = (low + high) >> 1
            if self.keys[middle] < key:
                low = middle + 1
            elif self.keys[middle] > key:
                high = middle
            else:
                return middle
        return -1 - low

    cdef object queue(self, uint32_t price, bint create):
        """The level's deque at ``price``; None when there is none and not ``create``."""
        cdef Py_ssize_t i = self.find(price), where
        cdef object level
        if i >= 0:
            return <object>self.queues[i]
        if not create:
            return None
        where = -1 - i
        if self.count == self.capacity:
            self._grow()
        level = _deque()
        memmove(&self.keys[where + 1], &self.keys[where], (self.count - where) * sizeof(uint32_t))
        memmove(&self.queues[where + 1], &self.queues[where], (self.count - where) * sizeof(PyObject*))
        self.keys[where] = self.key(price)
        Py_INCREF(level)
        self.queues[where] = <PyObject*>level
        self.count += 1
        return level

    cdef void _grow(self) except *:
        cdef Py_ssize_t capacity = self.capacity * 2
        cdef uint32_t* keys = <uint32_t*>realloc(self.keys, capacity * sizeof(uint32_t))
        if keys is NULL:
            raise MemoryError()
        self.keys = keys
        cdef PyObject** queues = <PyObject**>realloc(self.queues, capacity * sizeof(PyObject*))
        if queues is NULL:
            raise MemoryError()
        self.queues = queues
        self.capacity = capacity

    cdef void drop(self, uint32_t price) noexcept:
        """Remove ``price``'s level (the caller emptied it)."""
        cdef Py_ssize_t i = self.find(price)
        cdef PyObject* level
        if i < 0:
            return
        level = self.queues[i]
        memmove(&self.keys[i], &self.keys[i + 1], (self.count - i - 1) * sizeof(uint32_t))
        memmove(&self.queues[i], &self.queues[i + 1], (self.count - i - 1) * sizeof(PyObject*))
        self.count -= 1
        Py_DECREF(<object>level)

    cdef dict snapshot(self):
        cdef Py_ssize_t i
        return {self.price_at(i): tuple(<object>self.queues[i]) for i in range(self.count - 1, -1, -1)}



@cython.final
cdef class _Book:
    cdef _Side bids, offers

    def __cinit__(self):
        self.bids = _Side(True)
        self.offers = _Side(False)


@cython.final
@cython.no_gc  # str keys, and orders that hold str: no cycle can go through it
cdef class _User:
    """One user's tokens (every one ever used) and live orders, keyed by the token alone: one str
    lookup per message, no ``(username, token)`` tuple to build and hash."""

    cdef set tokens
    cdef dict orders

    def __cinit__(self):
        self.tokens = set()
        self.orders = {}


# -- the exchange ---------------------------------------------------------------------------------


@cython.final
cdef class OuchExchange:
    """A price-time book per stock behind the OUCH protocol; the rules are in :mod:`lowlat.venue.rules`.

    ``stocks`` (None: any) limits the symbols accepted, ``max_shares`` the size of one order.
    Called from the simulator's one thread; not thread-safe by itself.
    """

    cdef object _stocks           # frozenset or None
    cdef uint32_t _max_shares
    cdef dict _users              # username -> _User
    cdef str _last_name           # the last username seen (its object) and its _User
    cdef _User _last_user
    cdef unsigned char _last_stock_raw[8]  # the last stock seen, its str and its _Book (None until accepted)
    cdef str _last_stock
    cdef _Book _last_book
    cdef dict _books              # stock -> _Book
    cdef uint64_t _references, _matches
    cdef list _answers            # serve's answers to one message, reused
    cdef unsigned char* _in       # serve's read buffer, READ_SIZE bytes
    cdef unsigned char* _out      # serve's write buffer
    cdef Py_ssize_t _out_capacity
    cdef bint _busy               # inside on_message or serve: refuse re-entry

    def __cinit__(self, *args, **kwargs):
        self._in = <unsigned char*>malloc(READ_SIZE)
        self._out_capacity = 4096
        self._out = <unsigned char*>malloc(self._out_capacity)
        if self._in is NULL or self._out is NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self._in)
        free(self._out)

    def __init__(self, *, stocks=None, max_shares=1_000_000):
        self._stocks, self._max_shares = check_exchange(stocks, max_shares)
        self._users = {}
        self._books = {}
        self._answers = []

    @property
    def stocks(self):
        """The symbols accepted (a frozenset), or None for any."""
        return self._stocks

    @property
    def max_shares(self):
        """The largest order accepted, in shares."""
        return self._max_shares

    @property
    def orders(self):
        """A snapshot ``{(username, token): RestingOrder}`` of the orders on the book. O(orders)."""
        cdef _User user
        return {(name, token): order for name, user in self._users.items() for token, order in user.orders.items()}

    cdef _User _user(self, str username):
        if username is self._last_name:  # one connection's orders come with the same str object
            return self._last_user
        cdef _User user = self._users.get(username)
        if user is None:
            user = _User()
            self._users[username] = user
        self._last_name, self._last_user = username, user
        return user

    cdef str _stock(self, const unsigned char* raw):
        """The stock at ``raw`` as a str: the last one's object when the bytes are the same."""
        if self._last_stock is not None and memcmp(raw, self._last_stock_raw, 8) == 0:
            return self._last_stock
        self._last_stock = _text(raw, 8)
        memcpy(self._last_stock_raw, raw, 8)
        self._last_book = None
        return self._last_stock

    @property
    def books(self):
        """A snapshot ``{stock: {"B": {price: (order, ...)}, "S": {...}}}``: every stock that has had a
        book, each side's levels best first, each level in time priority. O(orders)."""
        cdef _Book book
        out = {}
        for stock, book in self._books.items():
            out[stock] = {"B": book.bids.snapshot(), "S": book.offers.snapshot()}
        return out

    def best(self, stock, buy):
        """Best price on one side of ``stock`` (highest bid / lowest offer), None when empty."""
        cdef _Book book = self._books.get(stock)
        if book is None:
            return None
        cdef _Side side = book.bids if buy else book.offers
        if side.count == 0:
            return None
        return side.price_at(side.count - 1)

    # -- answers, written straight into their bytes ------------------------------------------------

    cdef bytes _rejected(self, const unsigned char* token_raw, unsigned char reason):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, J_LEN)
        cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
        p[0] = 74  # "J"
        _store_u64(p + J_STAMP, _timestamp())
        memcpy(p + J_TOKEN, token_raw, 14)
        p[J_REASON] = reason
        return out

    cdef bytes _canceled(self, RestingOrder order, uint32_t decrement, unsigned char reason):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, C_LEN)
        cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
        p[0] = 67  # "C"
        _store_u64(p + C_STAMP, _timestamp())
        memcpy(p + C_TOKEN, order._token_raw, 14)
        _store_u32(p + C_DECREMENT, decrement)
        p[C_REASON] = reason
        return out

    cdef bytes _executed(self, RestingOrder order, uint64_t stamp, uint32_t shares, uint32_t price,
                         unsigned char liquidity, uint64_t match):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, E_LEN)
        cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
        p[0] = 69  # "E"
        _store_u64(p + E_STAMP, stamp)
        memcpy(p + E_TOKEN, order._token_raw, 14)
        _store_u32(p + E_SHARES, shares)
        _store_u32(p + E_PRICE, price)
        p[E_LIQUIDITY] = liquidity
        _store_u64(p + E_MATCH, match)
        return out

    cdef bytes _modified(self, RestingOrder order):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, M_LEN)
        cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
        p[0] = 77  # "M"
        _store_u64(p + MM_STAMP, _timestamp())
        memcpy(p + MM_TOKEN, order._token_raw, 14)
        p[MM_SIDE] = order._side
        _store_u32(p + MM_SHARES, order._shares)
        return out

    cdef bytes _accepted(self, RestingOrder order, uint32_t tif, unsigned char display, unsigned char sweep,
                         uint32_t minimum, const unsigned char* previous_raw):
        """Accepted for a new order, Replaced (``previous_raw``: the replaced token) for a replacement."""
        cdef int* at = &A_AT[0]
        if previous_raw is not NULL:
            at = &R_AT[0]
        cdef int length = A_LEN if previous_raw is NULL else R_LEN
        cdef bytes out = PyBytes_FromStringAndSize(NULL, length)
        cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
        p[0] = 65 if previous_raw is NULL else 85  # "A" / "U"
        _store_u64(p + at[F_STAMP], _timestamp())
        memcpy(p + at[F_TOKEN], order._token_raw, 14)
        p[at[F_SIDE]] = order._side
        _store_u32(p + at[F_SHARES], order._shares)
        memcpy(p + at[F_STOCK], order._stock_raw, 8)
        _store_u32(p + at[F_PRICE], order._price)
        _store_u32(p + at[F_TIF], tif)
        memcpy(p + at[F_FIRM], order._firm_raw, 4)
        p[at[F_DISPLAY]] = display
        _store_u64(p + at[F_REFERENCE], order._reference)
        p[at[F_CAPACITY]] = order._capacity
        p[at[F_ISE]] = sweep
        _store_u32(p + at[F_MINQ], minimum)
        p[at[F_CROSS]] = order._cross_type
        p[at[F_STATE]] = 76 if order._shares else 68  # "L" / "D"
        p[at[F_BBO]] = 32
        if previous_raw is not NULL:
            memcpy(p + R_PREVIOUS, previous_raw, 14)
        return out

    # -- the book ------------------------------------------------------------------------------------

    cdef _Book _book(self, str stock):
        if stock is self._last_stock and self._last_book is not None:
            return self._last_book
        cdef _Book book = self._books.get(stock)
        if book is None:
            book = _Book()
            self._books[stock] = book
        if stock is self._last_stock:
            self._last_book = book
        return book

    cdef int _rest(self, RestingOrder order) except -1:
        cdef _Book book = <_Book>order._in_book
        cdef _Side side = book.bids if order._side == 66 else book.offers  # 66: "B"
        side.queue(order._price, True).append(order)
        (<_User>order._holder).orders[order._token] = order
        return 0

    cdef int _unrest(self, RestingOrder order) except -1:
        cdef _Book book = <_Book>order._in_book
        cdef _Side side = book.bids if order._side == 66 else book.offers
        level = side.queue(order._price, False)
        if level is not None:
            try:
                level.remove(order)
            except ValueError:
                pass
            if not level:
                side.drop(order._price)
        (<_User>order._holder).orders.pop(order._token, None)
        return 0

    cdef int _match(self, RestingOrder order, list out) except -1:
        cdef bint buy = order._side == 66
        cdef _Book book = <_Book>order._in_book
        cdef _Side opposite = book.offers if buy else book.bids
        cdef uint32_t price, shares
        cdef uint64_t stamp
        cdef RestingOrder resting
        while order._shares and opposite.count:
            price = opposite.price_at(opposite.count - 1)
            if (buy and price > order._price) or (not buy and price < order._price):
                break
            level = <object>opposite.queues[opposite.count - 1]
            while order._shares and level:
                resting = level[0]
                shares = order._shares if order._shares < resting._shares else resting._shares
                self._matches += 1
                stamp = _timestamp()
                order._shares -= shares
                out.append((order._username, self._executed(order, stamp, shares, price, 82, self._matches)))  # "R"
                resting._shares -= shares
                out.append((resting._username, self._executed(resting, stamp, shares, price, 65, self._matches)))  # "A"
                if not resting._shares:
                    level.popleft()
                    (<_User>resting._holder).orders.pop(resting._token, None)
            if not level:
                opposite.drop(price)
        return 0

    cdef int _rest_or_cancel(self, RestingOrder order, uint32_t tif, list out) except -1:
        if not order._shares:
            return 0
        if tif == C_TIF_IOC:
            out.append((order._username, self._canceled(order, order._shares, 73)))  # "I"
            order._shares = 0
            return 0
        return self._rest(order)

    cdef unsigned char _reject_reason(self, uint32_t shares, uint32_t price, str stock, const unsigned char* stock_raw,
                                      unsigned char display, uint32_t minimum, int side) except 255:
        """The reject reason (a letter), 0 when none; ``stock``/``side`` < 0 absent for a replace."""
        if shares == 0 or shares > self._max_shares:
            return 90  # "Z"
        if price == 0 or price > C_MAX_PRICE:
            return 88  # "X"
        if stock_raw is not NULL and (not stock or (self._stocks is not None and stock not in self._stocks)):
            return 83  # "S"
        if not _is_display[display]:
            return 68  # "D"
        if minimum > shares:
            return 78  # "N"
        if side >= 0 and not _is_side[side]:
            return 79  # "O"
        return 0

    cdef RestingOrder _order(self, _User user, _Book book, str username, str token, uint32_t shares, uint32_t price,
                             unsigned char side, str stock,
                             const unsigned char* stock_raw, const unsigned char* token_raw,
                             const unsigned char* firm_raw, unsigned char capacity, unsigned char cross_type):
        cdef RestingOrder order = RestingOrder.__new__(RestingOrder)
        order._username = username
        order._token = token
        order._holder = <PyObject*>user
        order._in_book = <PyObject*>book
        order._side = side
        order._shares = shares
        order._price = price
        order._stock = stock
        self._references += 1
        order._reference = self._references
        order._capacity = capacity
        order._cross_type = cross_type
        memcpy(order._token_raw, token_raw, 14)
        memcpy(order._stock_raw, stock_raw, 8)
        memcpy(order._firm_raw, firm_raw, 4)
        return order

    cdef int _enter(self, str username, const unsigned char* m, list out) except -1:
        cdef str token = _text(m + O_TOKEN, 14)
        cdef _User user = self._user(username)
        if token in user.tokens:
            return 0  # duplicate token: ignored, as the spec says
        user.tokens.add(token)
        cdef uint32_t shares = _load_u32(m + O_SHARES), price = _load_u32(m + O_PRICE)
        cdef str stock = self._stock(m + O_STOCK)
        cdef unsigned char reason = self._reject_reason(shares, price, stock, m + O_STOCK, m[O_DISPLAY],
                                                        _load_u32(m + O_MINQ), m[O_SIDE])
        if reason:
            out.append((username, self._rejected(m + O_TOKEN, reason)))
            return 0
        cdef RestingOrder order = self._order(user, self._book(stock), username, token, shares, price, m[O_SIDE], stock,
                                              m + O_STOCK, m + O_TOKEN, m + O_FIRM, m[O_CAPACITY], m[O_CROSS])
        out.append((username, self._accepted(order, _load_u32(m + O_TIF), m[O_DISPLAY], m[O_ISE],
                                             _load_u32(m + O_MINQ), NULL)))
        self._match(order, out)
        return self._rest_or_cancel(order, _load_u32(m + O_TIF), out)

    cdef int _cancel(self, str username, const unsigned char* m, list out) except -1:
        cdef RestingOrder order = self._user(username).orders.get(_text(m + X_TOKEN, 14))
        cdef uint32_t shares = _load_u32(m + X_SHARES), decrement
        if order is None or shares >= order._shares:
            return 0  # unknown or already dead token, or not a decrease: ignored
        decrement = order._shares - shares
        order._shares = shares
        if not shares:
            self._unrest(order)
        out.append((username, self._canceled(order, decrement, 85)))  # "U"
        return 0

    cdef int _modify(self, str username, const unsigned char* m, list out) except -1:
        cdef RestingOrder order = self._user(username).orders.get(_text(m + M_TOKEN, 14))
        cdef unsigned char side = m[M_SIDE]
        cdef uint32_t shares = _load_u32(m + M_SHARES)
        if order is None or shares > order._shares:
            return 0  # unknown or dead token, or an increase: ignored, as the spec says
        if side != order._side and (not _is_sell[side] or not _is_sell[order._side]):
            return 0  # only Sell / Sell Short / Sell Short Exempt may change into each other: ignored
        order._side = side  # same book side, same price: the order keeps its place in the queue
        order._shares = shares
        if not shares:
            self._unrest(order)
        out.append((username, self._modified(order)))
        return 0

    cdef int _replace(self, str username, const unsigned char* m, list out) except -1:
        cdef _User user = self._user(username)
        cdef RestingOrder order = user.orders.get(_text(m + U_EXISTING, 14))
        cdef str token = _text(m + U_REPLACEMENT, 14)
        if order is None or token in user.tokens:
            return 0  # the spec ignores a replace of a dead order or with a used token
        user.tokens.add(token)
        cdef uint32_t shares = _load_u32(m + U_SHARES), price = _load_u32(m + U_PRICE)
        cdef uint32_t tif = _load_u32(m + U_TIF), minimum = _load_u32(m + U_MINQ)
        cdef unsigned char reason = self._reject_reason(shares, price, None, NULL, m[U_DISPLAY], minimum, -1)
        if reason:
            out.append((username, self._rejected(m + U_REPLACEMENT, reason)))
            return 0
        if price == order._price and shares <= order._shares:  # keeps its priority
            del user.orders[order._token]
            order._token = token
            memcpy(order._token_raw, m + U_REPLACEMENT, 14)
            order._shares = shares
            user.orders[token] = order
            out.append((username, self._accepted(order, tif, m[U_DISPLAY], m[U_ISE], minimum, m + U_EXISTING)))
            if not order._shares:
                self._unrest(order)
            return 0
        self._unrest(order)
        cdef RestingOrder replacement = self._order(user, <_Book>order._in_book, username, token, shares, price,
                                                    order._side, order._stock, order._stock_raw, m + U_REPLACEMENT,
                                                    order._firm_raw, order._capacity, order._cross_type)
        out.append((username, self._accepted(replacement, tif, m[U_DISPLAY], m[U_ISE], minimum, m + U_EXISTING)))
        self._match(replacement, out)
        return self._rest_or_cancel(replacement, tif, out)

    cdef int _handle(self, str username, const unsigned char* m, Py_ssize_t length, list out) except -1:
        """Answer one message of ``length`` bytes at ``m`` into ``out``; nothing for what is not OUCH."""
        if length <= 0 or _client_length[m[0]] != length or not _all_ascii(m):
            return 0
        if m[0] == 79:  # "O"
            return self._enter(username, m, out)
        if m[0] == 88:  # "X"
            return self._cancel(username, m, out)
        if m[0] == 85:  # "U"
            return self._replace(username, m, out)
        return self._modify(username, m, out)  # "M": the only other client message

    def on_message(self, username, payload):
        """Handle one OUCH message from ``username``; return the sequenced answers to send.

        ``payload`` is the message's bytes (any bytes-like); answers are ``(username, bytes)``
        pairs in the order they are to be sent, a fill's counterparty included. A message the
        rules do not answer gives ``[]``.
        """
        cdef Py_buffer view
        cdef unsigned char message[SCRATCH]
        cdef Py_ssize_t length
        if type(username) is not str:  # a str subclass could run code inside the book's dicts
            raise TypeError(f"username must be str, got {type(username).__name__}")
        if _get_buffer(payload, &view, PyBUF_SIMPLE) != 0:
            PyErr_Clear()
            raise TypeError("payload must be a contiguous buffer")
        length = view.len
        if 0 < length <= SCRATCH:
            memcpy(message, view.buf, length)  # the book never reads a caller's buffer while Python runs
        PyBuffer_Release(&view)
        out = []
        if not 0 < length <= SCRATCH:
            return out
        self._enter_book()
        try:
            self._handle(username, message, length, out)
        finally:
            self._busy = False
        return out

    cdef inline int _enter_book(self) except -1:
        if self._busy:
            raise RuntimeError("OuchExchange is not re-entrant: called again while it was answering")
        self._busy = True
        return 0

    # -- the simulator's read ------------------------------------------------------------------------

    def serve(self, sock, session, username, peer, received, deliver):
        """Serve one readable SoupBinTCP connection of ``username`` in one call (the simulator's fast path).

        Reads once from ``sock`` (non-blocking). When the session (a ``SoupServer``) is active with
        no partial packet buffered and the bytes are whole Unsequenced Data packets only, each is
        answered by :meth:`on_message`: answers for ``username`` are sent in one write (blocking up
        to 2 s for the rest if the socket takes only part), answers for another user go to
        ``deliver(username, payload, now)``. Each message is logged in ``received`` (a ``Received``
        with an ``UnsequencedData``, as the simulator's general path logs it) and the answers for
        ``username`` are appended to the session's log before any other Python thread can run
        after the write (the compiled half does that bookkeeping after the write, keeping the GIL). Returns None when the read was handled (nothing read counts), else the bytes read
        for the caller's general path to parse, ``b""`` when the peer closed, the read failed or
        the write failed (the caller closes the connection). ``now`` is ``time.monotonic()``.
        """
        return self._serve(sock, session, username, peer, received, deliver)

    def serve_ready(self, poller, timeout, keys, client_type, received, deliver, simulator, spin=False):
        """Wait on ``poller`` and :meth:`serve` every ready OUCH connection: the simulator's loop, one call a wake-up.

        ``poller`` is a ``select.epoll`` with each descriptor registered for reading; ``timeout``
        is in seconds (negative: until something is ready). ``spin`` waits by polling without a
        timeout, over and over, until something is ready or ``timeout`` passed. ``keys`` maps
        each descriptor to its key, whose ``data`` is a ``client_type`` (with ``sock``,
        ``session``, ``username``, ``peer`` and ``fix``) for a connection; such a connection, not
        FIX, is served while ``simulator._misbehaving`` is false. Waits and serves again until
        something is left to the caller, ``timeout`` passed or ``simulator._misbehaving`` is set.
        Returns the ready keys left to the caller, in order, as ``(key, data)``: ``data`` is what
        ``serve`` returned when not None, else None (the key was not served: another kind of
        descriptor, FIX, or a misbehaviour); ``[]`` when the time is up. A wait interrupted by a
        signal returns ``[]`` once the handlers ran.
        """
        cdef epoll_event events[MAX_EVENTS]
        cdef int epfd = poller.fileno()
        cdef int count, ms
        cdef double limit = timeout
        cdef double until, remaining
        cdef bint spinning = spin
        cdef list left
        if type(keys) is not dict:
            raise TypeError(f"keys must be a dict, got {type(keys).__name__}")
        until = _monotonic() + limit if limit >= 0 else 1e300
        while True:  # until something is left for the caller, the time is up, or a misbehaviour
            if spinning:
                left = self._spin(epfd, until, <dict>keys, client_type, received, deliver, simulator)
            else:
                if limit < 0:
                    ms = -1
                else:
                    remaining = until - _monotonic()
                    if remaining <= 0:
                        ms = 0
                    elif remaining * 1000.0 >= 2147483647.0:
                        ms = 2147483647
                    else:
                        ms = <int>ceil(remaining * 1000.0)  # rounded up, as select.epoll.poll does
                with nogil:
                    count = epoll_wait(epfd, events, MAX_EVENTS, ms)
                if count < 0:
                    if errno == EINTR:
                        PyErr_CheckSignals()  # a handler's exception propagates from here
                        return []
                    raise OSError(errno, "epoll_wait failed")
                left = self._served(events, count, <dict>keys, client_type, received, deliver, simulator)
            if left or _monotonic() >= until or simulator._misbehaving:
                return left

    cdef list _served(self, epoll_event *events, int count, dict keys, client_type, received, deliver, simulator):
        """serve every ready OUCH connection of ``events``; the rest, as serve_ready returns them."""
        cdef int i
        left = []
        for i in range(count):
            key = keys.get(events[i].data.fd)
            if key is None:
                continue
            client = key.data
            if type(client) is client_type and not client.fix and not simulator._misbehaving:
                data = self._serve(client.sock, client.session, client.username, client.peer, received, deliver)
                if data is not None:
                    left.append((key, data))
            else:
                left.append((key, None))
        return left

    cdef list _spin(self, int epfd, double until, dict keys, client_type, received, deliver, simulator):
        """serve_ready's spin: ``recv`` on each OUCH connection in turn (the read that finds bytes
        is the one that returns them), ``epoll_wait(0)`` every SPIN_EPOLL turns for the rest."""
        cdef epoll_event events[MAX_EVENTS]
        cdef int fds[MAX_SPIN]
        cdef int count = 0, nfds = 0, found = -1, i, turn = 0, failure = 0
        cdef Py_ssize_t size = -1
        spun = []
        for fd, key in keys.items():
            client = key.data
            if type(client) is client_type and not client.fix and nfds < MAX_SPIN:
                fds[nfds] = fd
                nfds += 1
                spun.append(key)
        self._enter_book()  # _in is written with the GIL released: no other call may use it meanwhile
        try:
            with nogil:
                while True:
                    for i in range(nfds):
                        size = c_recv(fds[i], self._in, READ_SIZE, MSG_DONTWAIT)
                        if size >= 0:
                            found = i
                            break
                        if errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR:
                            found = i
                            failure = 1
                            break
                    if found >= 0:
                        break
                    turn += 1
                    if nfds == 0 or turn % SPIN_EPOLL == 0:
                        count = epoll_wait(epfd, events, MAX_EVENTS, 0)
                        if count != 0:
                            break
                    if _monotonic() >= until:
                        break
        finally:
            self._busy = False
        if found >= 0:
            key = spun[found]
            if failure or size == 0:
                return [(key, b"")]  # closed, or the read failed: the caller closes the connection
            client = key.data
            if simulator._misbehaving:  # read, not the fast path's: the general path parses it
                return [(key, PyBytes_FromStringAndSize(<char*>self._in, size))]
            data = self._serve(client.sock, client.session, client.username, client.peer, received, deliver, size)
            return [] if data is None else [(key, data)]
        if count < 0:
            if errno == EINTR:
                PyErr_CheckSignals()
                return []
            raise OSError(errno, "epoll_wait failed")
        return self._served(events, count, keys, client_type, received, deliver, simulator)

    cdef object _serve(self, sock, session, username, peer, received, deliver, Py_ssize_t read=-1):
        """serve; ``read`` >= 0: that many bytes were read into ``_in`` already (serve_ready's spin)."""
        cdef int fd
        cdef Py_ssize_t size, position, length, framed, answer_length
        cdef ssize_t sent
        cdef double now
        cdef list answers
        if type(username) is not str:
            raise TypeError(f"username must be str, got {type(username).__name__}")
        fd = sock.fileno()
        if fd < 0:
            return b""
        self._enter_book()
        try:
            if read >= 0:
                size = read
            else:
                size = c_recv(fd, self._in, READ_SIZE, 0)
                if size < 0:
                    return None if errno in (EAGAIN, EWOULDBLOCK, EINTR) else b""
            if size == 0:
                return b""
            if session.state is not _ACTIVE or session._reader._buffer or not _whole_unsequenced(self._in, size):
                return PyBytes_FromStringAndSize(<char*>self._in, size)
            now = _monotonic()
            at = now
            answers = self._answers
            mine = []  # the answers to this user, kept for a replay once they left
            framed = 0
            position = 0
            while position < size:
                length = (<Py_ssize_t>self._in[position] << 8) | self._in[position + 1]
                del answers[:]
                if length - 1 <= SCRATCH:
                    self._handle(username, self._in + position + 3, length - 1, answers)
                position += 2 + length
                for user, answer in answers:
                    if user is username or user == username:
                        mine.append(answer)
                        answer_length = len(<bytes>answer)
                        if framed + 3 + answer_length > self._out_capacity:
                            self._grow_out(framed + 3 + answer_length)
                        self._out[framed] = <unsigned char>((answer_length + 1) >> 8)
                        self._out[framed + 1] = <unsigned char>(answer_length + 1)
                        self._out[framed + 2] = 83  # "S": Sequenced Data
                        memcpy(self._out + framed + 3, PyBytes_AS_STRING(answer), answer_length)
                        framed += 3 + answer_length
                    else:
                        deliver(user, answer, at)
            del answers[:]
            sent = framed
            if framed:
                session.last_sent = at
                sent = c_send(fd, self._out, framed, MSG_NOSIGNAL)
                if sent < 0 and errno in (EAGAIN, EWOULDBLOCK, EINTR):
                    sent = 0
            # The bookkeeping, once the answer is on its way: what was received, in order (still in
            # _in: nothing read since), and this user's answers in its log. Nothing from here to the
            # return lets go of the GIL, so no Python thread sees the answer sent and the log behind.
            session.last_received = at
            position = 0
            while position < size:
                length = (<Py_ssize_t>self._in[position] << 8) | self._in[position + 1]
                received.append(_received(at, peer, username,
                                          PyBytes_FromStringAndSize(<char*>self._in + position + 3, length - 1)))
                position += 2 + length
            log = session.log
            # SessionLog.append is messages.append (its return value unused here): the list's own
            # append saves a Python frame per answer. Any other log class gets its own append.
            log_append = log.messages.append if type(log) is _SessionLog else log.append
            for answer in mine:
                log_append(answer)
            if sent == framed:
                return None
            if sent < 0:
                return b""
            rest = PyBytes_FromStringAndSize(<char*>self._out + sent, framed - sent)
        finally:
            self._busy = False
        try:  # rare: the client's receive window is full
            sock.settimeout(2.0)
            sock.sendall(rest)
            sock.setblocking(False)
        except OSError:
            return b""
        return None

    cdef void _grow_out(self, Py_ssize_t needed) except *:
        cdef Py_ssize_t capacity = self._out_capacity
        while capacity < needed:
            capacity *= 2
        cdef unsigned char* grown = <unsigned char*>realloc(self._out, capacity)
        if grown is NULL:
            raise MemoryError()
        self._out = grown
        self._out_capacity = capacity
