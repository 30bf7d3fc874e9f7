# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: cdivision=True
"""Compiled pre-trade risk engine: the twin of :mod:`lowlat.risk._py` (same names, signatures, errors).

All state is in C: one struct per instrument in an array indexed by instrument id, grown only by
``add_instrument``, so ``check`` touches one struct and a few engine fields and allocates nothing.
Configuration and its errors come from :mod:`lowlat.risk.config`, shared with the pure twin.
Bounds checking stays on (module default) except where an index was just checked against the
table size.
"""

cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t

from lowlat._clock cimport monotonic_ns as _now
from libc.stdlib cimport free, realloc
from libc.string cimport memset

from lowlat.risk.config import (
    DUPLICATE_MEMORY,
    ENGINE_LIMITS,
    INSTRUMENT_LIMITS,
    MAX_INSTRUMENTS,
    Reason,
    check_engine_limits,
    check_instrument_id,
    check_limit,
    check_price,
    effective_burst,
)

from lowlat.risk import config as _config

__all__ = ["RiskEngine"]

cdef enum:
    MEMORY = 8                 # config.DUPLICATE_MEMORY, checked at import
    ONE = 1000000000           # one order in the token buckets' units
    MAX_VALUE = 2147483647     # config.MAX_VALUE, checked at import
cdef int64_t CEILING = 4611686018427387903LL  # config.NOTIONAL_CEILING: each counter <= 2**62-1, so their sum fits

assert DUPLICATE_MEMORY == MEMORY and MAX_VALUE == _config.MAX_VALUE and CEILING == _config.NOTIONAL_CEILING

cdef enum:
    ACCEPTED = 0
    KILL_SWITCH = 1
    INVALID_ORDER = 2
    UNKNOWN_INSTRUMENT = 3
    RESTRICTED = 4
    MAX_ORDER_QUANTITY = 5
    MAX_ORDER_NOTIONAL = 6
    NO_REFERENCE_PRICE = 7
    PRICE_COLLAR = 8
    POSITION_LIMIT = 9
    GROSS_EXPOSURE = 10
    DUPLICATE_ORDER = 11
    INSTRUMENT_THROTTLE = 12
    THROTTLE = 13

for _name, _code in (("ACCEPTED", ACCEPTED), ("KILL_SWITCH", KILL_SWITCH), ("INVALID_ORDER", INVALID_ORDER),
                     ("UNKNOWN_INSTRUMENT", UNKNOWN_INSTRUMENT), ("RESTRICTED", RESTRICTED),
                     ("MAX_ORDER_QUANTITY", MAX_ORDER_QUANTITY), ("MAX_ORDER_NOTIONAL", MAX_ORDER_NOTIONAL),
                     ("NO_REFERENCE_PRICE", NO_REFERENCE_PRICE), ("PRICE_COLLAR", PRICE_COLLAR),
                     ("POSITION_LIMIT", POSITION_LIMIT), ("GROSS_EXPOSURE", GROSS_EXPOSURE),
                     ("DUPLICATE_ORDER", DUPLICATE_ORDER), ("INSTRUMENT_THROTTLE", INSTRUMENT_THROTTLE),
                     ("THROTTLE", THROTTLE)):
    assert Reason[_name] == _code, _name  # the C codes are config.Reason's


ctypedef struct Instrument:
    int64_t position
    int64_t open_buy
    int64_t open_sell
    int64_t reference_price
    int64_t collar_bps          # -1: the engine's
    int64_t max_position        # -1: the engine's
    int64_t tokens
    int64_t last_ns
    int64_t recent_time[MEMORY]   # the last accepted orders, a ring: slot (head + k) % MEMORY
    int32_t recent_quantity[MEMORY]
    int32_t recent_price[MEMORY]
    int8_t recent_side[MEMORY]
    int32_t recent_count
    int32_t recent_head
    int8_t added
    int8_t restricted


cdef inline int64_t _saturated(int64_t total) noexcept nogil:
    return CEILING if total > CEILING else total


cdef inline int64_t _available(int64_t tokens, int64_t last, int64_t now, int64_t rate, int64_t capacity,
                               int64_t full_after) noexcept nogil:
    """Tokens in a bucket at ``now``: refilled at ``rate`` per ns since ``last``, never above ``capacity``."""
    cdef int64_t elapsed = now - last
    if elapsed <= 0:
        return tokens
    if elapsed > full_after:  # capacity // rate + 1: also keeps elapsed * rate from overflowing
        return capacity
    tokens += elapsed * rate
    return capacity if tokens > capacity else tokens


@cython.final
cdef class RiskEngine:
    """RiskEngine(*, max_order_quantity=None, max_order_notional=None, price_collar_bps=None, max_position=None, max_gross_exposure=None, throttle_rate=None, throttle_burst=None, instrument_throttle_rate=None, instrument_throttle_burst=None, duplicate_window_ns=None)
--

Pre-trade risk checks (SEC 15c3-5, MiFID II RTS 6) over any number of instruments.

    ``check(instrument_id, side, quantity, price, now_ns)`` runs every enabled check in the order
    of :class:`~lowlat.risk.config.Reason` and returns the first failing reason code, 0 when the
    order passes; it never raises for 64-bit int arguments and (compiled) allocates nothing. An accepted
    order counts as open: it adds to its side's open quantity, to the open notional, to the
    duplicate memory and takes a token from each bucket. ``on_fill``, ``on_cancel`` and
    ``on_reject`` move that state on; ``set_reference_price`` moves the collar.

    Every limit is a positive int or None (off); a value that cannot work raises ``ValueError``
    naming the field (``TypeError`` for a non-int), at construction and in ``set_limit``. Each
    check passes *at* its limit and fails one unit above it: quantity <= max_order_quantity,
    quantity * price <= max_order_notional, |price - reference| * 10000 <= collar_bps * reference,
    position + open orders + quantity <= max_position (per side, shares), open + filled notional
    <= max_gross_exposure, a burst of ``throttle_burst`` orders at one instant passes and one
    more fails (buckets refill at ``*_rate`` orders per second and start full). An order equal
    in instrument, side, quantity and price to one of the last 8 accepted on its instrument is a
    duplicate while ``now_ns - then < duplicate_window_ns``.

    ``now_ns`` is the clock for the throttles and the duplicate window: pass it (tests, replay)
    or leave -1 to read CLOCK_MONOTONIC (the clock of ``time.perf_counter_ns()``). Single-threaded:
    one thread calls every method.
    """

    cdef Instrument* _table
    cdef Py_ssize_t _size          # entries in _table (largest id added + 1, rounded up)
    cdef Py_ssize_t _count         # instruments added
    cdef dict _limits              # name -> stored value (-1 off), as config.check_limit returns
    cdef bint _killed
    cdef int64_t _open_notional
    cdef int64_t _filled_notional
    cdef int64_t _max_quantity
    cdef int64_t _max_notional
    cdef int64_t _collar_bps
    cdef int64_t _max_position
    cdef int64_t _max_exposure
    cdef int64_t _rate
    cdef int64_t _capacity
    cdef int64_t _tokens
    cdef int64_t _last_ns
    cdef int64_t _instrument_rate
    cdef int64_t _instrument_capacity
    cdef int64_t _window
    cdef int64_t _full_after             # ns after which the overall bucket is full
    cdef int64_t _instrument_full_after  # the same for the instrument buckets

    def __cinit__(self):
        self._table = NULL
        self._size = 0

    def __dealloc__(self):
        free(self._table)

    def __init__(self, *, max_order_quantity=None, max_order_notional=None, price_collar_bps=None,
                 max_position=None, max_gross_exposure=None, throttle_rate=None, throttle_burst=None,
                 instrument_throttle_rate=None, instrument_throttle_burst=None, duplicate_window_ns=None):
        limits = check_engine_limits(dict(
            max_order_quantity=max_order_quantity, max_order_notional=max_order_notional,
            price_collar_bps=price_collar_bps, max_position=max_position, max_gross_exposure=max_gross_exposure,
            throttle_rate=throttle_rate, throttle_burst=throttle_burst,
            instrument_throttle_rate=instrument_throttle_rate, instrument_throttle_burst=instrument_throttle_burst,
            duplicate_window_ns=duplicate_window_ns))
        self._limits = limits
        self._killed = False
        self._open_notional = 0
        self._filled_notional = 0
        self._apply_limits()
        self._tokens = self._capacity
        self._last_ns = 0

    cdef void _apply_limits(self):
        limits = self._limits
        self._max_quantity = limits["max_order_quantity"]
        self._max_notional = limits["max_order_notional"]
        self._collar_bps = limits["price_collar_bps"]
        self._max_position = limits["max_position"]
        self._max_exposure = limits["max_gross_exposure"]
        self._rate = limits["throttle_rate"]
        self._capacity = effective_burst(self._rate, limits["throttle_burst"]) * ONE
        self._instrument_rate = limits["instrument_throttle_rate"]
        self._instrument_capacity = effective_burst(self._instrument_rate, limits["instrument_throttle_burst"]) * ONE
        self._window = limits["duplicate_window_ns"]
        self._full_after = self._capacity // self._rate + 1 if self._rate > 0 else 0
        self._instrument_full_after = (self._instrument_capacity // self._instrument_rate + 1
                                       if self._instrument_rate > 0 else 0)

    def check(self, int64_t instrument_id, int64_t side, int64_t quantity, int64_t price, int64_t now_ns=-1):
        """Return 0 when the order passes every enabled check, else the first failing reason code.

        An accepted order is counted as open from here on (position, exposure, duplicates, rate).
        Never raises for int arguments that fit in 64 bits; a rejected order changes nothing. O(1).
        """
        return self._evaluate(instrument_id, side, quantity, price, now_ns, True)

    def preview(self, int64_t instrument_id, int64_t side, int64_t quantity, int64_t price, int64_t now_ns=-1):
        """Return what ``check`` would return for this order now, changing nothing (a what-if check).

        The same code as ``check`` up to the point where an accepted order would be counted as open;
        running it keeps that code and the instrument's data in cache (see ``lowlat.pipeline``).
        """
        return self._evaluate(instrument_id, side, quantity, price, now_ns, False)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef int _evaluate(self, int64_t instrument_id, int64_t side, int64_t quantity, int64_t price, int64_t now_ns,
                       bint commit) noexcept:
        cdef Instrument* instrument
        cdef int64_t notional, collar, reference, difference, limit, worst
        cdef int64_t instrument_tokens = 0, tokens = 0
        cdef int k, slot
        if self._killed:
            return KILL_SWITCH
        if (side != 1 and side != -1) or not (0 < quantity <= MAX_VALUE) or not (0 < price <= MAX_VALUE):
            return INVALID_ORDER
        if instrument_id < 0 or instrument_id >= self._size or not self._table[instrument_id].added:
            return UNKNOWN_INSTRUMENT
        instrument = &self._table[instrument_id]
        if instrument.restricted:
            return RESTRICTED
        if self._max_quantity >= 0 and quantity > self._max_quantity:
            return MAX_ORDER_QUANTITY
        notional = quantity * price
        if self._max_notional >= 0 and notional > self._max_notional:
            return MAX_ORDER_NOTIONAL
        collar = instrument.collar_bps if instrument.collar_bps >= 0 else self._collar_bps
        if collar >= 0:
            reference = instrument.reference_price
            if reference == 0:
                return NO_REFERENCE_PRICE
            difference = price - reference
            if difference < 0:
                difference = -difference
            if difference * 10000 > collar * reference:
                return PRICE_COLLAR
        limit = instrument.max_position if instrument.max_position >= 0 else self._max_position
        if limit >= 0:
            if side == 1:
                worst = instrument.position + instrument.open_buy + quantity
            else:
                worst = instrument.open_sell + quantity - instrument.position
            if worst > limit:
                return POSITION_LIMIT
        if self._max_exposure >= 0 and self._open_notional + self._filled_notional > self._max_exposure - notional:
            return GROSS_EXPOSURE
        if now_ns == -1:
            now_ns = _now()
        if self._window >= 0:
            for k in range(instrument.recent_count):
                if (instrument.recent_side[k] == side and instrument.recent_quantity[k] == quantity
                        and instrument.recent_price[k] == price and now_ns - instrument.recent_time[k] < self._window):
                    return DUPLICATE_ORDER
        if self._instrument_rate >= 0:
            instrument_tokens = _available(instrument.tokens, instrument.last_ns, now_ns, self._instrument_rate,
                                           self._instrument_capacity, self._instrument_full_after)
            if instrument_tokens < ONE:
                return INSTRUMENT_THROTTLE
        if self._rate >= 0:
            tokens = _available(self._tokens, self._last_ns, now_ns, self._rate, self._capacity, self._full_after)
            if tokens < ONE:
                return THROTTLE
        if not commit:
            return ACCEPTED
        # Accepted: the order is open from now on.
        if self._instrument_rate >= 0:
            instrument.tokens = instrument_tokens - ONE
            if now_ns > instrument.last_ns:
                instrument.last_ns = now_ns
        if self._rate >= 0:
            self._tokens = tokens - ONE
            if now_ns > self._last_ns:
                self._last_ns = now_ns
        if side == 1:
            instrument.open_buy += quantity
        else:
            instrument.open_sell += quantity
        self._open_notional = _saturated(self._open_notional + notional)
        # The duplicate memory is a ring: once full, the oldest slot is overwritten.
        if instrument.recent_count < MEMORY:
            slot = instrument.recent_count
            instrument.recent_count += 1
        else:
            slot = instrument.recent_head
            instrument.recent_head = (instrument.recent_head + 1) % MEMORY
        instrument.recent_side[slot] = <int8_t>side
        instrument.recent_quantity[slot] = <int32_t>quantity
        instrument.recent_price[slot] = <int32_t>price
        instrument.recent_time[slot] = now_ns
        return ACCEPTED

    # -- state changes ---------------------------------------------------------------------------

    cdef Instrument* _instrument(self, object instrument_id) except NULL:
        cdef Py_ssize_t i = check_instrument_id(instrument_id)
        if i >= self._size or not self._table[i].added:
            raise ValueError(f"instrument_id {instrument_id} was never added")
        return &self._table[i]

    cdef tuple _checked_order(self, object instrument_id, object side, object quantity, object price):
        """Check an instrument and an order the way the pure twin does; return ``(side, quantity, price)``.

        These checks can run Python code (comparisons of int subclasses), so callers take their
        instrument pointer only afterwards.
        """
        self._instrument(instrument_id)
        if isinstance(side, bool) or not isinstance(side, int):
            raise TypeError(f"side must be an int, got {type(side).__name__}")
        if side != 1 and side != -1:
            raise ValueError(f"side must be BUY (1) or SELL (-1), got {side}")
        return (1 if side == 1 else -1, check_price("quantity", quantity, allow_zero=False),
                check_price("price", price, allow_zero=False))

    cdef void _close(self, Instrument* instrument, int64_t side, int64_t quantity, int64_t price) noexcept:
        if side == 1:
            instrument.open_buy = instrument.open_buy - quantity if instrument.open_buy > quantity else 0
        else:
            instrument.open_sell = instrument.open_sell - quantity if instrument.open_sell > quantity else 0
        self._open_notional = self._open_notional - quantity * price if self._open_notional > quantity * price else 0

    cdef int _grow(self, Py_ssize_t needed) except -1:
        cdef Py_ssize_t size = self._size if self._size > 0 else 16
        cdef Instrument* table
        while size < needed:
            size *= 2
        if size > MAX_INSTRUMENTS:
            size = MAX_INSTRUMENTS
        table = <Instrument*>realloc(self._table, size * sizeof(Instrument))
        if table == NULL:
            raise MemoryError(f"cannot grow the risk table to {size} instruments")
        memset(table + self._size, 0, (size - self._size) * sizeof(Instrument))
        self._table = table
        self._size = size
        return 0

    def add_instrument(self, instrument_id, reference_price=0, *, price_collar_bps=None, max_position=None,
                       restricted=False):
        """Add (or re-configure) instrument ``instrument_id``, an int in ``[0, 2**20)``.

        ``reference_price`` 0 means none yet (the collar then rejects with NO_REFERENCE_PRICE).
        ``price_collar_bps`` and ``max_position`` override the engine's (None: use the engine's).
        Re-adding keeps the instrument's position and open orders. Grows the tables: call it
        before trading, not between checks that must not allocate.
        """
        cdef Py_ssize_t i = check_instrument_id(instrument_id)
        cdef Instrument* instrument
        check_price("reference_price", reference_price, allow_zero=True)
        collar = check_limit("price_collar_bps", price_collar_bps)
        position_limit = check_limit("max_position", max_position)
        restricted_flag = bool(restricted)
        if i >= self._size:
            self._grow(i + 1)
        instrument = &self._table[i]
        if not instrument.added:
            memset(instrument, 0, sizeof(Instrument))
            instrument.tokens = self._instrument_capacity
            instrument.added = 1
            self._count += 1
        instrument.reference_price = reference_price
        instrument.collar_bps = collar
        instrument.max_position = position_limit
        instrument.restricted = restricted_flag

    def on_fill(self, instrument_id, side, quantity, price):
        """Record a fill of ``quantity`` of an open order placed at ``price``: open -> position.

        The open quantity on ``side`` and the open notional shrink (never below 0), the position
        moves by ``side * quantity`` and ``quantity * price`` joins the filled notional.
        ``ValueError`` for an instrument never added or a bad side, quantity or price.
        """
        cdef Instrument* instrument
        cdef int64_t s, q, p
        s, q, p = self._checked_order(instrument_id, side, quantity, price)
        instrument = self._instrument(instrument_id)  # after every check: Python code may have moved the table
        self._close(instrument, s, q, p)
        instrument.position += s * q
        self._filled_notional = _saturated(self._filled_notional + q * p)

    def on_cancel(self, instrument_id, side, quantity, price):
        """Record that ``quantity`` of an open order placed at ``price`` was canceled: it is no longer open."""
        cdef int64_t s, q, p
        s, q, p = self._checked_order(instrument_id, side, quantity, price)
        self._close(self._instrument(instrument_id), s, q, p)

    def on_reject(self, instrument_id, side, quantity, price):
        """Record that the exchange rejected an order this engine accepted: it is no longer open."""
        cdef int64_t s, q, p
        s, q, p = self._checked_order(instrument_id, side, quantity, price)
        self._close(self._instrument(instrument_id), s, q, p)

    def set_reference_price(self, instrument_id, price):
        """Set the instrument's reference price for the collar (0: none)."""
        cdef int64_t value
        self._instrument(instrument_id)
        value = check_price("price", price, allow_zero=True)
        self._instrument(instrument_id).reference_price = value  # re-read after the checks ran Python code

    def set_restricted(self, instrument_id, restricted=True):
        """Put the instrument on the restricted list (or take it off with ``restricted=False``)."""
        cdef bint flag
        self._instrument(instrument_id)
        flag = bool(restricted)
        self._instrument(instrument_id).restricted = flag  # re-read after bool() ran Python code

    def set_limit(self, name, value):
        """Change one engine limit while running (None switches its check off); checked like the constructor's.

        Changing a rate or burst refills that bucket.
        """
        cdef Py_ssize_t i
        stored = check_limit(name, value)
        self._limits[name] = stored
        self._apply_limits()
        if name in ("throttle_rate", "throttle_burst"):
            self._tokens, self._last_ns = self._capacity, 0
        elif name in ("instrument_throttle_rate", "instrument_throttle_burst"):
            for i in range(self._size):
                self._table[i].tokens = self._instrument_capacity
                self._table[i].last_ns = 0

    def set_instrument_limit(self, instrument_id, name, value):
        """Override ``price_collar_bps`` or ``max_position`` for one instrument (None: use the engine's)."""
        cdef Instrument* instrument
        cdef int64_t stored
        cdef bint collar
        self._instrument(instrument_id)
        if name not in INSTRUMENT_LIMITS:
            raise ValueError(f"unknown instrument limit {name!r}; instrument limits are {', '.join(INSTRUMENT_LIMITS)}")
        stored = check_limit(name, value)
        collar = name == "price_collar_bps"
        instrument = self._instrument(instrument_id)  # re-read after the checks ran Python code
        if collar:
            instrument.collar_bps = stored
        else:
            instrument.max_position = stored

    def kill(self):
        """Turn the kill switch on: every ``check`` returns KILL_SWITCH until ``reset_kill_switch``."""
        self._killed = True

    def reset_kill_switch(self):
        """Turn the kill switch off."""
        self._killed = False

    @property
    def killed(self):
        """Whether the kill switch is on."""
        return self._killed

    @property
    def limits(self):
        """The engine limits as ``{name: value or None}``."""
        return {name: (None if self._limits[name] == -1 else self._limits[name]) for name in ENGINE_LIMITS}

    @property
    def gross_exposure(self):
        """Open plus filled notional over all instruments."""
        return self._open_notional + self._filled_notional

    def position(self, instrument_id):
        """Return the instrument's filled position in shares (long > 0)."""
        return self._instrument(instrument_id).position

    def open_quantity(self, instrument_id, side):
        """Return the shares open on ``side`` (BUY or SELL) of the instrument."""
        cdef int which
        self._instrument(instrument_id)
        if side == 1:
            which = 1
        elif side == -1:
            which = -1
        else:
            raise ValueError(f"side must be BUY (1) or SELL (-1), got {side!r}")
        return self._instrument(instrument_id).open_buy if which == 1 else self._instrument(instrument_id).open_sell

    @property
    def instrument_count(self):
        """How many instruments were added."""
        return self._count
