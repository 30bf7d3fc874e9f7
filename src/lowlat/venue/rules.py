"""The simulator's OUCH 4.2 book rules, the values it accepts and the argument checks both halves share.

Both halves of :mod:`lowlat.venue` read these; nothing here is per message.

* Enter Order is rejected (OUCH reject reason) for: shares 0 or above ``max_shares`` (``Z``),
  price 0 or above $199,999.9900 (``X``), a stock outside ``stocks`` when that is given (``S``),
  an unknown side or display (``D`` for display, ``O`` other), minimum quantity above shares
  (``N``). A token already used by the same user is ignored, as the spec says.
* An accepted order trades at once against the other side's best prices (price-time priority,
  the resting order's price), each fill an Executed to both users (liquidity ``R`` to the
  aggressor, ``A`` to the resting order) with one match number. The rest rests, except an IOC
  (time in force 0) order, whose rest is canceled with reason ``I``.
* Cancel Order sets the order's shares to the given number (0: all): Canceled with the decrement,
  reason ``U``; unknown tokens and increases are ignored.
* Replace Order keeps priority when only the size goes down and the price is the same, otherwise
  goes to the back of its new level (and may trade at once); Replaced carries both tokens.
* Modify Order changes a sell's side among Sell / Sell Short / Sell Short Exempt (``S``, ``T``,
  ``E``) and/or sets the order's open shares to the given number, which may not be more than it
  has (0: cancel the rest). The order keeps its priority; Order Modified echoes the token, the
  new side and the shares now open. An increase, a buy<->sell change, an unknown side or an
  unknown or dead token is ignored (no answer), as the spec says of requests it does not allow.
* A message that is not one of those four (unknown type, wrong length), or whose text fields
  (tokens, stock, firm, the one-letter fields) hold a byte that is not ASCII, is not OUCH order
  entry: no answer and nothing changes (OUCH alpha fields are ASCII; an answer could not echo it).
"""

from __future__ import annotations

import operator

__all__ = ["SIDES", "SELL_SIDES", "DISPLAYS", "MAX_PRICE", "TIF_IOC", "U32_MAX", "U64_MAX", "check_exchange",
           "check_order"]

#: Values the simulator accepts (OUCH 4.2): sides, and display types.
SIDES = frozenset("BSTE")
#: Modify Order may move an order between these, never to or from "B".
SELL_SIDES = frozenset("STE")
DISPLAYS = frozenset("YNAPIMWLOTQ")
#: $199,999.9900: OUCH 4.2's largest price.
MAX_PRICE = 1_999_999_900
#: Time in force 0: immediate or cancel.
TIF_IOC = 0
U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF


def _integer(value: object, name: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if not 0 <= value <= top:
        raise ValueError(f"{name} must be in [0, {top}], got {value}")
    return value


def _text(value: object, name: str, width: int, *, exact: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, got {type(value).__name__}")
    if not value.isascii():
        raise ValueError(f"{name} must be ASCII, got {value!r}")
    if (len(value) != width) if exact else (len(value) > width):
        raise ValueError(f"{name} must be {'exactly' if exact else 'at most'} {width} characters, got {value!r}")
    return value


def check_exchange(stocks: object, max_shares: object) -> tuple[frozenset[str] | None, int]:
    """Return ``(stocks, max_shares)`` checked: None or an iterable of str of at most 8 ASCII
    characters (a frozenset), and an int in [0, 2**32-1]; ``TypeError``/``ValueError`` naming it."""
    checked: frozenset[str] | None = None
    if stocks is not None:
        if isinstance(stocks, (str, bytes)):
            raise TypeError("stocks must be None or an iterable of str, got a single string")
        try:
            checked = frozenset(stocks)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(f"stocks must be None or an iterable of str, got {type(stocks).__name__}") from None
        for stock in checked:
            _text(stock, "stocks", 8)
    return checked, _integer(max_shares, "max_shares", U32_MAX)


def check_order(username: object, token: object, side: object, shares: object, stock: object, price: object,
                reference: object, firm: object, capacity: object, cross_type: object) -> tuple:
    """Return a :class:`RestingOrder`'s fields checked, in constructor order; ``TypeError`` or
    ``ValueError`` naming the first bad one."""
    if not isinstance(username, str):
        raise TypeError(f"username must be str, got {type(username).__name__}")
    return (username, _text(token, "token", 14), _text(side, "side", 1, exact=True),
            _integer(shares, "shares", U32_MAX), _text(stock, "stock", 8), _integer(price, "price", U32_MAX),
            _integer(reference, "reference", U64_MAX), _text(firm, "firm", 4),
            _text(capacity, "capacity", 1, exact=True), _text(cross_type, "cross_type", 1, exact=True))
