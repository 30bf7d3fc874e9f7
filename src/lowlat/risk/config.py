"""Pre-trade risk: reason codes, sides and the configuration checks both backends share.

The checks follow SEC Rule 15c3-5 (market access: credit and capital thresholds, erroneous-order
price and size checks, restricted securities) and MiFID II RTS 6 article 15 (price collars,
maximum order value and volume, maximum messages, duplicate orders, the kill switch of
article 12). Every check is configured by one limit; a limit of ``None`` switches it off.

Units: quantities are shares; prices are integers in the instrument's price unit (OUCH uses
1/10000 of a dollar); notionals are ``quantity * price`` in that unit; the collar is in basis
points of the reference price; rates are orders per second; times are nanoseconds.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "BUY", "SELL", "Reason", "REASONS", "reason_name", "reason_message", "ENGINE_LIMITS",
    "INSTRUMENT_LIMITS", "MAX_INSTRUMENTS", "MAX_VALUE", "MAX_EXPOSURE", "NOTIONAL_CEILING", "DUPLICATE_MEMORY",
    "check_limit", "check_engine_limits", "effective_burst", "check_instrument_id", "check_price",
]

#: Sides: the sign of the position change a fill causes.
BUY = 1
SELL = -1


class Reason(IntEnum):
    """What ``RiskEngine.check`` returns: 0 accepts, anything else names the first check that failed."""

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


#: ``{code: (name, message)}`` for every reason, in the order the checks run.
REASONS: dict[int, tuple[str, str]] = {
    Reason.ACCEPTED: ("ACCEPTED", "order accepted"),
    Reason.KILL_SWITCH: ("KILL_SWITCH", "the kill switch is on: every order is blocked until reset"),
    Reason.INVALID_ORDER: ("INVALID_ORDER", "side must be BUY (1) or SELL (-1), quantity and price in [1, 2**31-1]"),
    Reason.UNKNOWN_INSTRUMENT: ("UNKNOWN_INSTRUMENT", "the instrument was never added"),
    Reason.RESTRICTED: ("RESTRICTED", "the instrument is on the restricted list"),
    Reason.MAX_ORDER_QUANTITY: ("MAX_ORDER_QUANTITY", "quantity above the maximum order quantity"),
    Reason.MAX_ORDER_NOTIONAL: ("MAX_ORDER_NOTIONAL", "quantity * price above the maximum order notional"),
    Reason.NO_REFERENCE_PRICE: ("NO_REFERENCE_PRICE", "the price collar is on and the instrument has no reference price"),
    Reason.PRICE_COLLAR: ("PRICE_COLLAR", "price further from the reference price than the collar allows"),
    Reason.POSITION_LIMIT: ("POSITION_LIMIT", "position plus open orders on this side would pass the position limit"),
    Reason.GROSS_EXPOSURE: ("GROSS_EXPOSURE", "open plus filled notional would pass the gross exposure (credit) limit"),
    Reason.DUPLICATE_ORDER: ("DUPLICATE_ORDER", "same instrument, side, quantity and price as a recent order"),
    Reason.INSTRUMENT_THROTTLE: ("INSTRUMENT_THROTTLE", "the instrument's order rate limit is used up"),
    Reason.THROTTLE: ("THROTTLE", "the overall order rate limit is used up"),
}


def reason_name(code: int) -> str:
    """Return the name of reason ``code`` (``"PRICE_COLLAR"``); ``ValueError`` for an unknown code."""
    try:
        return REASONS[code][0]
    except KeyError:
        raise ValueError(f"unknown risk reason code {code!r}") from None


def reason_message(code: int) -> str:
    """Return the human message of reason ``code``; ``ValueError`` for an unknown code."""
    try:
        return REASONS[code][1]
    except KeyError:
        raise ValueError(f"unknown risk reason code {code!r}") from None


#: The largest quantity, price, rate, burst or collar a limit or an order may carry: products of
#: two stay below 2**62, so every sum the engine keeps fits a signed 64-bit integer.
MAX_VALUE = 2**31 - 1
#: The largest notional limit (order notional, gross exposure).
MAX_EXPOSURE = 2**62
#: The open and filled notional counters saturate here, so their sum fits a signed 64-bit integer.
NOTIONAL_CEILING = 2**62 - 1
#: The largest instrument id plus one (the compiled engine sizes its tables by the largest id added).
MAX_INSTRUMENTS = 1 << 20
#: How many recent accepted orders per instrument the duplicate check remembers.
DUPLICATE_MEMORY = 8

# name -> (largest value, what it limits). Every one is a positive int or None (off).
_LIMITS: dict[str, tuple[int, str]] = {
    "max_order_quantity": (MAX_VALUE, "shares per order"),
    "max_order_notional": (MAX_EXPOSURE, "quantity * price per order"),
    "price_collar_bps": (MAX_VALUE, "basis points from the reference price (default for every instrument)"),
    "max_position": (MAX_VALUE, "shares long or short per instrument, open orders included (default for every instrument)"),
    "max_gross_exposure": (MAX_EXPOSURE, "open plus filled notional over all instruments"),
    "throttle_rate": (MAX_VALUE, "orders per second over all instruments"),
    "throttle_burst": (MAX_VALUE, "orders at once over all instruments (default: throttle_rate)"),
    "instrument_throttle_rate": (MAX_VALUE, "orders per second per instrument"),
    "instrument_throttle_burst": (MAX_VALUE, "orders at once per instrument (default: instrument_throttle_rate)"),
    "duplicate_window_ns": (2**62, "how long an identical order counts as a duplicate"),
}
#: The engine-wide limits, in the order ``RiskEngine``'s keyword arguments take them.
ENGINE_LIMITS: tuple[str, ...] = tuple(_LIMITS)
#: The limits an instrument can override (``None`` there means: use the engine's).
INSTRUMENT_LIMITS: tuple[str, ...] = ("price_collar_bps", "max_position")


def check_limit(name: str, value) -> int:
    """Return ``value`` as the engine stores it (-1 for None/off); raise naming the field otherwise.

    ``TypeError`` when it is not an int or None; ``ValueError`` when it cannot work: zero or
    negative (a collar of 0 would reject every order), or above the largest value the field takes.
    """
    if name not in _LIMITS:
        raise ValueError(f"unknown risk limit {name!r}; limits are {', '.join(ENGINE_LIMITS)}")
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    largest, _ = _LIMITS[name]
    if value <= 0:
        raise ValueError(f"{name} must be positive or None (off), got {value}")
    if value > largest:
        raise ValueError(f"{name} must be at most {largest}, got {value}")
    return value


def check_engine_limits(limits: dict) -> dict:
    """Check every engine limit (a burst without its rate is ignored); return ``{name: stored value}``."""
    return {name: check_limit(name, limits.get(name)) for name in ENGINE_LIMITS}


def effective_burst(rate: int, burst: int) -> int:
    """Return the bucket size: ``burst``, or ``rate`` when the burst is left as None (-1)."""
    return rate if burst == -1 else burst


def check_instrument_id(instrument_id) -> int:
    """Return ``instrument_id`` when it is an int in ``[0, MAX_INSTRUMENTS)``; raise naming it otherwise."""
    if isinstance(instrument_id, bool) or not isinstance(instrument_id, int):
        raise TypeError(f"instrument_id must be an int, got {type(instrument_id).__name__}")
    if not 0 <= instrument_id < MAX_INSTRUMENTS:
        raise ValueError(f"instrument_id must be in [0, {MAX_INSTRUMENTS}), got {instrument_id}")
    return instrument_id


def check_price(name: str, value, *, allow_zero: bool) -> int:
    """Return ``value`` when it is an int in ``[0 or 1, MAX_VALUE]``; raise naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    lowest = 0 if allow_zero else 1
    if not lowest <= value <= MAX_VALUE:
        raise ValueError(f"{name} must be in [{lowest}, {MAX_VALUE}], got {value}")
    return value
