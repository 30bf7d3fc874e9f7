"""Pure-Python pre-trade risk engine: the twin of :mod:`lowlat.risk._c` (same names, signatures, errors)."""

from __future__ import annotations

from time import perf_counter_ns as _clock

from .._twins import Final as _Final
from .config import (
    DUPLICATE_MEMORY,
    ENGINE_LIMITS,
    INSTRUMENT_LIMITS,
    MAX_VALUE,
    NOTIONAL_CEILING,
    Reason,
    check_engine_limits,
    check_instrument_id,
    check_limit,
    check_price,
    effective_burst,
)

__all__ = ["RiskEngine"]

_ONE = 1_000_000_000  # one order in the token buckets' units (order-nanoseconds per second)
_ACCEPTED = int(Reason.ACCEPTED)
_KILL_SWITCH = int(Reason.KILL_SWITCH)
_INVALID_ORDER = int(Reason.INVALID_ORDER)
_UNKNOWN_INSTRUMENT = int(Reason.UNKNOWN_INSTRUMENT)
_RESTRICTED = int(Reason.RESTRICTED)
_MAX_ORDER_QUANTITY = int(Reason.MAX_ORDER_QUANTITY)
_MAX_ORDER_NOTIONAL = int(Reason.MAX_ORDER_NOTIONAL)
_NO_REFERENCE_PRICE = int(Reason.NO_REFERENCE_PRICE)
_PRICE_COLLAR = int(Reason.PRICE_COLLAR)
_POSITION_LIMIT = int(Reason.POSITION_LIMIT)
_GROSS_EXPOSURE = int(Reason.GROSS_EXPOSURE)
_DUPLICATE_ORDER = int(Reason.DUPLICATE_ORDER)
_INSTRUMENT_THROTTLE = int(Reason.INSTRUMENT_THROTTLE)
_THROTTLE = int(Reason.THROTTLE)


class _Instrument:
    __slots__ = ("position", "open_buy", "open_sell", "reference_price", "collar_bps", "max_position",
                 "restricted", "tokens", "last_ns", "recent_keys", "recent_times")

    def __init__(self, reference_price, collar_bps, max_position, restricted, tokens):
        self.position = 0
        self.open_buy = 0
        self.open_sell = 0
        self.reference_price = reference_price
        self.collar_bps = collar_bps      # -1: the engine's
        self.max_position = max_position  # -1: the engine's
        self.restricted = restricted
        self.tokens = tokens
        self.last_ns = 0
        self.recent_keys = []             # (side, quantity, price) of the last accepted orders, oldest first
        self.recent_times = []            # and when each was accepted


class RiskEngine(_Final):
    """Pre-trade risk checks (SEC 15c3-5, MiFID II RTS 6) over any number of instruments.

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

    # Slots: every attribute read in check stays a specialised slot load (a dict this size would not).
    __slots__ = ("_capacity", "_collar_bps", "_filled_notional", "_instrument_capacity", "_instrument_rate",
                 "_instruments", "_killed", "_last_ns", "_limits", "_max_exposure", "_max_notional", "_max_position",
                 "_max_quantity", "_open_notional", "_rate", "_tokens", "_window", "_full_after",
                 "_instrument_full_after")

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
        self._instruments = {}
        self._killed = False
        self._open_notional = 0
        self._filled_notional = 0
        self._apply_limits()
        self._tokens = self._capacity
        self._last_ns = 0

    def _apply_limits(self):
        limits = self._limits
        self._max_quantity = limits["max_order_quantity"]
        self._max_notional = limits["max_order_notional"]
        self._collar_bps = limits["price_collar_bps"]
        self._max_position = limits["max_position"]
        self._max_exposure = limits["max_gross_exposure"]
        self._rate = limits["throttle_rate"]
        self._capacity = effective_burst(self._rate, limits["throttle_burst"]) * _ONE
        self._instrument_rate = limits["instrument_throttle_rate"]
        self._instrument_capacity = effective_burst(self._instrument_rate, limits["instrument_throttle_burst"]) * _ONE
        self._window = limits["duplicate_window_ns"]
        # After this many ns without an order a bucket is full (also keeps elapsed * rate small).
        self._full_after = self._capacity // self._rate + 1 if self._rate > 0 else 0
        self._instrument_full_after = (self._instrument_capacity // self._instrument_rate + 1
                                       if self._instrument_rate > 0 else 0)

    def check(self, instrument_id, side, quantity, price, now_ns=-1):
        """Return 0 when the order passes every enabled check, else the first failing reason code.

        An accepted order is counted as open from here on (position, exposure, duplicates, rate).
        Never raises for int arguments that fit in 64 bits; a rejected order changes nothing. O(1).
        """
        return self._evaluate(instrument_id, side, quantity, price, now_ns, True)

    def preview(self, instrument_id, side, quantity, price, now_ns=-1):
        """Return what ``check`` would return for this order now, changing nothing (a what-if check).

        The same code as ``check`` up to the point where an accepted order would be counted as open;
        running it keeps that code and the instrument's data in cache (see ``lowlat.pipeline``).
        """
        return self._evaluate(instrument_id, side, quantity, price, now_ns, False)

    def _evaluate(self, instrument_id, side, quantity, price, now_ns, commit):
        if self._killed:
            return _KILL_SWITCH
        if (side != 1 and side != -1) or not 0 < quantity <= MAX_VALUE or not 0 < price <= MAX_VALUE:
            return _INVALID_ORDER
        instrument = self._instruments.get(instrument_id)
        if instrument is None:
            return _UNKNOWN_INSTRUMENT
        if instrument.restricted:
            return _RESTRICTED
        limit = self._max_quantity
        if limit >= 0 and quantity > limit:
            return _MAX_ORDER_QUANTITY
        notional = quantity * price
        limit = self._max_notional
        if limit >= 0 and notional > limit:
            return _MAX_ORDER_NOTIONAL
        limit = instrument.collar_bps
        if limit < 0:
            limit = self._collar_bps
        if limit >= 0:
            reference = instrument.reference_price
            if reference == 0:
                return _NO_REFERENCE_PRICE
            if abs(price - reference) * 10_000 > limit * reference:
                return _PRICE_COLLAR
        limit = instrument.max_position
        if limit < 0:
            limit = self._max_position
        if limit >= 0:
            if side == 1:
                if instrument.position + instrument.open_buy + quantity > limit:
                    return _POSITION_LIMIT
            elif instrument.open_sell + quantity - instrument.position > limit:
                return _POSITION_LIMIT
        limit = self._max_exposure
        if limit >= 0 and self._open_notional + self._filled_notional > limit - notional:
            return _GROSS_EXPOSURE
        if now_ns == -1:
            now_ns = _clock()
        key = (side, quantity, price)
        keys = instrument.recent_keys
        window = self._window
        if window >= 0 and key in keys:
            times = instrument.recent_times
            for k in range(len(keys)):
                if keys[k] == key and now_ns - times[k] < window:
                    return _DUPLICATE_ORDER
        rate = self._instrument_rate
        if rate >= 0:
            # The bucket's tokens at now_ns: refilled at rate per ns since the last order, capped.
            capacity = self._instrument_capacity
            instrument_tokens = instrument.tokens
            elapsed = now_ns - instrument.last_ns
            if elapsed > 0:
                if elapsed > self._instrument_full_after:
                    instrument_tokens = capacity
                else:
                    instrument_tokens += elapsed * rate
                    if instrument_tokens > capacity:
                        instrument_tokens = capacity
            if instrument_tokens < _ONE:
                return _INSTRUMENT_THROTTLE
        rate = self._rate
        if rate >= 0:
            capacity = self._capacity
            tokens = self._tokens
            elapsed = now_ns - self._last_ns
            if elapsed > 0:
                if elapsed > self._full_after:
                    tokens = capacity
                else:
                    tokens += elapsed * rate
                    if tokens > capacity:
                        tokens = capacity
            if tokens < _ONE:
                return _THROTTLE
        if not commit:
            return _ACCEPTED
        # Accepted from here on: the order is open.
        if rate >= 0:
            self._tokens = tokens - _ONE
            if now_ns > self._last_ns:
                self._last_ns = now_ns
        if self._instrument_rate >= 0:
            instrument.tokens = instrument_tokens - _ONE
            if now_ns > instrument.last_ns:
                instrument.last_ns = now_ns
        if side == 1:
            instrument.open_buy += quantity
        else:
            instrument.open_sell += quantity
        total = self._open_notional + notional
        self._open_notional = total if total < NOTIONAL_CEILING else NOTIONAL_CEILING
        keys.append(key)
        instrument.recent_times.append(now_ns)
        if len(keys) > DUPLICATE_MEMORY:
            del keys[0], instrument.recent_times[0]
        return _ACCEPTED

    # -- state changes ---------------------------------------------------------------------------

    def _instrument(self, instrument_id):
        check_instrument_id(instrument_id)
        instrument = self._instruments.get(instrument_id)
        if instrument is None:
            raise ValueError(f"instrument_id {instrument_id} was never added")
        return instrument

    @staticmethod
    def _order(side, quantity, price):
        if isinstance(side, bool) or not isinstance(side, int):
            raise TypeError(f"side must be an int, got {type(side).__name__}")
        if side != 1 and side != -1:
            raise ValueError(f"side must be BUY (1) or SELL (-1), got {side}")
        check_price("quantity", quantity, allow_zero=False)
        check_price("price", price, allow_zero=False)

    def _close(self, instrument, side, quantity, price):
        if side == 1:
            instrument.open_buy = max(0, instrument.open_buy - quantity)
        else:
            instrument.open_sell = max(0, instrument.open_sell - quantity)
        self._open_notional = max(0, self._open_notional - quantity * price)

    def add_instrument(self, instrument_id, reference_price=0, *, price_collar_bps=None, max_position=None,
                       restricted=False):
        """Add (or re-configure) instrument ``instrument_id``, an int in ``[0, 2**20)``.

        ``reference_price`` 0 means none yet (the collar then rejects with NO_REFERENCE_PRICE).
        ``price_collar_bps`` and ``max_position`` override the engine's (None: use the engine's).
        Re-adding keeps the instrument's position and open orders. Grows the tables: call it
        before trading, not between checks that must not allocate.
        """
        check_instrument_id(instrument_id)
        check_price("reference_price", reference_price, allow_zero=True)
        collar = check_limit("price_collar_bps", price_collar_bps)
        position_limit = check_limit("max_position", max_position)
        instrument = self._instruments.get(instrument_id)
        if instrument is None:
            self._instruments[instrument_id] = _Instrument(reference_price, collar, position_limit, bool(restricted),
                                                           self._instrument_capacity)
        else:
            instrument.reference_price = reference_price
            instrument.collar_bps = collar
            instrument.max_position = position_limit
            instrument.restricted = bool(restricted)

    def on_fill(self, instrument_id, side, quantity, price):
        """Record a fill of ``quantity`` of an open order placed at ``price``: open -> position.

        The open quantity on ``side`` and the open notional shrink (never below 0), the position
        moves by ``side * quantity`` and ``quantity * price`` joins the filled notional.
        ``ValueError`` for an instrument never added or a bad side, quantity or price.
        """
        instrument = self._instrument(instrument_id)
        self._order(side, quantity, price)
        self._close(instrument, side, quantity, price)
        instrument.position += side * quantity
        self._filled_notional = min(self._filled_notional + quantity * price, NOTIONAL_CEILING)

    def on_cancel(self, instrument_id, side, quantity, price):
        """Record that ``quantity`` of an open order placed at ``price`` was canceled: it is no longer open."""
        instrument = self._instrument(instrument_id)
        self._order(side, quantity, price)
        self._close(instrument, side, quantity, price)

    def on_reject(self, instrument_id, side, quantity, price):
        """Record that the exchange rejected an order this engine accepted: it is no longer open."""
        instrument = self._instrument(instrument_id)
        self._order(side, quantity, price)
        self._close(instrument, side, quantity, price)

    def set_reference_price(self, instrument_id, price):
        """Set the instrument's reference price for the collar (0: none)."""
        instrument = self._instrument(instrument_id)
        instrument.reference_price = check_price("price", price, allow_zero=True)

    def set_restricted(self, instrument_id, restricted=True):
        """Put the instrument on the restricted list (or take it off with ``restricted=False``)."""
        self._instrument(instrument_id).restricted = bool(restricted)

    def set_limit(self, name, value):
        """Change one engine limit while running (None switches its check off); checked like the constructor's.

        Changing a rate or burst refills that bucket.
        """
        stored = check_limit(name, value)
        self._limits[name] = stored
        self._apply_limits()
        if name in ("throttle_rate", "throttle_burst"):
            self._tokens, self._last_ns = self._capacity, 0
        elif name in ("instrument_throttle_rate", "instrument_throttle_burst"):
            for instrument in self._instruments.values():
                instrument.tokens, instrument.last_ns = self._instrument_capacity, 0

    def set_instrument_limit(self, instrument_id, name, value):
        """Override ``price_collar_bps`` or ``max_position`` for one instrument (None: use the engine's)."""
        instrument = self._instrument(instrument_id)
        if name not in INSTRUMENT_LIMITS:
            raise ValueError(f"unknown instrument limit {name!r}; instrument limits are {', '.join(INSTRUMENT_LIMITS)}")
        stored = check_limit(name, value)
        if name == "price_collar_bps":
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
        instrument = self._instrument(instrument_id)
        if side == 1:
            return instrument.open_buy
        if side == -1:
            return instrument.open_sell
        raise ValueError(f"side must be BUY (1) or SELL (-1), got {side!r}")

    @property
    def instrument_count(self):
        """How many instruments were added."""
        return len(self._instruments)
